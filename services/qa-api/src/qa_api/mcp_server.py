"""qa-api as an MCP server: other agents call the QA program as a tool over the Model Context Protocol.

The tools go through the same `Answerer` as the HTTP endpoints, so an agent's question gets the same
limits, the same A/B routing and the same MLflow trace as a person's.
"""

from __future__ import annotations

import uuid
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

from qa_api.routes.answer import TRUE
from qa_api.serving import AnswerContext, Answerer
from qa_core import contracts
from qa_core.contracts import AnswerResponse
from qa_core.web.errors import ServiceError


def _http_request(ctx: Context) -> Any:
    """The HTTP request that carried this tool call (None over stdio)."""
    try:
        return ctx.request_context.request
    except ValueError:  # no request context: called outside a session
        return None


class DocumentationPassage(BaseModel):
    id: str
    title: str
    section: str
    text: str


class SearchResults(BaseModel):
    passages: list[DocumentationPassage]


# --8<-- [start:mcp-tools]
def build_mcp_server(answerer: Answerer) -> MCPServer:
    server = MCPServer(
        "dspy-qa",
        instructions="Answers questions about the DSPy QA reference system, citing its documentation.",
    )

    @server.tool()
    async def answer_question(question: str, ctx: Context, session_id: str | None = None) -> AnswerResponse:
        """Answer a question about the DSPy QA reference system; the answer cites documentation passages."""
        if not 0 < len(question) <= answerer.settings.max_question_chars:
            raise ToolError(f"question must be 1 to {answerer.settings.max_question_chars} characters")
        # Over HTTP the request id is the one RequestIdMiddleware gave this POST (the client's X-Request-Id
        # when it sent one), and X-Synthetic marks load-test traffic, exactly as on /v1/answer.
        http = _http_request(ctx)
        request_id = getattr(getattr(http, "state", None), "request_id", None) or f"mcp-{uuid.uuid4().hex[:16]}"
        synthetic = http is not None and http.headers.get(contracts.HEADER_SYNTHETIC, "").lower() in TRUE
        call = AnswerContext(
            question=question, request_id=request_id, endpoint="mcp", session_id=session_id, synthetic=synthetic
        )
        try:
            return await answerer.answer(call)
        except ServiceError as error:  # the agent sees the same meaning an HTTP client would
            raise ToolError(f"{error.code}: {error.message}") from error

    @server.tool()
    async def search_documentation(query: str, k: int = 3) -> SearchResults:
        """Return the k documentation passages that best match the query, without answering."""
        if not 1 <= k <= 10:
            raise ToolError("k must be between 1 and 10")
        state = answerer.programs.state
        if state is None:
            raise ToolError("not_ready: no program is loaded yet")
        passages = state.champion.program.index.search(query, k)
        return SearchResults(
            passages=[DocumentationPassage(id=p.id, title=p.title, section=p.section, text=p.text) for p in passages]
        )

    return server


# --8<-- [end:mcp-tools]
