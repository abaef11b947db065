"""A DSPy agent that uses the QA service as a tool, over the Model Context Protocol.

This is the client side of module 16: any MCP server's tools become `dspy.Tool`s, and a `dspy.ReAct`
agent decides when to call them. Here the server is qa-api's `/mcp` endpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import dspy


# --8<-- [start:mcp-agent]
@contextlib.asynccontextmanager
async def mcp_tools(url: str) -> AsyncIterator[list[dspy.Tool]]:
    """Connect to an MCP server over streamable HTTP and expose its tools as DSPy tools."""
    from mcp import Client  # optional dependency: pip install qa-core[agent]

    async with Client(url) as client:
        listed = await client.list_tools()
        yield [dspy.Tool.from_mcp_tool(client, tool, result_mode="structured") for tool in listed.tools]


class ResearchAgent(dspy.Signature):
    """Answer the user's question about the DSPy QA system. Use the tools to look things up, and say
    which documentation passages support the answer."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField()


async def ask_agent(url: str, question: str, max_iters: int = 4) -> dspy.Prediction:
    """Run a ReAct agent whose tools live in another service."""
    async with mcp_tools(url) as tools:
        agent = dspy.ReAct(ResearchAgent, tools=tools, max_iters=max_iters)
        return await agent.acall(question=question)


# --8<-- [end:mcp-agent]
