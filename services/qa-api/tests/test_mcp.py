"""Module 16: qa-api's tools over MCP, used by a real MCP client and by a DSPy ReAct agent."""

from __future__ import annotations

import dspy
import pytest
from dspy.utils import DummyLM
from mcp import Client

from qa_core.mcp_agent import ask_agent, mcp_tools
from tests.support import processes

pytestmark = pytest.mark.slow
QUESTION = "Which port does the MLflow tracking server listen on?"


@pytest.fixture(scope="module")
def qa_api_mcp(simulator_base: str):
    env = {
        "LM_MODEL": "llamacpp/lm-simulator",
        "LM_API_BASE": simulator_base,
        "LM_API_KEY": "sim",
        "USE_REGISTRY": "false",
        "MAX_QUESTION_CHARS": "300",
    }
    with processes.qa_api(env) as api:
        yield f"{api.url}/mcp/"


async def test_an_mcp_client_lists_and_calls_the_qa_tools(qa_api_mcp: str) -> None:
    async with Client(qa_api_mcp) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        answered = await client.call_tool("answer_question", {"question": QUESTION, "session_id": "agent-7"})
        again = await client.call_tool("answer_question", {"question": QUESTION})
        searched = await client.call_tool("search_documentation", {"query": "MLflow tracking server port", "k": 2})
    assert set(tools) == {"answer_question", "search_documentation"}
    assert "question" in tools["answer_question"].input_schema["properties"]
    assert not answered.is_error
    body = answered.structured_content
    assert body["answer"]
    assert body["citations"][0]["doc_id"] == "mlflow-tracking"
    # Each call is its own HTTP POST, with the request id the service's middleware gives every request.
    assert body["request_id"] != again.structured_content["request_id"]
    assert not body["request_id"].startswith("mcp-")  # the stdio fallback is not used over HTTP
    assert body["variant"] == "champion"
    passages = searched.structured_content["passages"]
    assert passages[0]["id"].startswith("mlflow-tracking#")
    assert len(passages) == 2


async def test_bad_tool_input_is_an_error_result_not_a_crash(qa_api_mcp: str) -> None:
    async with Client(qa_api_mcp) as client:
        too_long = await client.call_tool("answer_question", {"question": "x" * 301})
        bad_k = await client.call_tool("search_documentation", {"query": "port", "k": 99})
        still_fine = await client.call_tool("answer_question", {"question": QUESTION})
    assert too_long.is_error
    assert "1 to 300 characters" in too_long.content[0].text
    assert bad_k.is_error
    assert "k must be between 1 and 10" in bad_k.content[0].text
    assert not still_fine.is_error


async def test_mcp_tools_become_dspy_tools(qa_api_mcp: str) -> None:
    async with mcp_tools(qa_api_mcp) as tools:
        by_name = {tool.name: tool for tool in tools}
        result = await by_name["answer_question"].acall(question=QUESTION)
    assert set(by_name) == {"answer_question", "search_documentation"}
    assert "question" in by_name["answer_question"].args
    assert result["citations"][0]["doc_id"] == "mlflow-tracking"


async def test_a_react_agent_answers_through_the_qa_service(qa_api_mcp: str) -> None:
    """The agent's reasoning is scripted (DummyLM); the tool call is a real MCP call to qa-api."""
    lm = DummyLM(
        [
            {
                "next_thought": "Ask the QA service.",
                "next_tool_name": "answer_question",
                "next_tool_args": {"question": QUESTION},
            },
            {"next_thought": "I have the answer.", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "The QA service answered with a citation.", "answer": "See mlflow-tracking#0."},
        ]
    )
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        result = await ask_agent(qa_api_mcp, "What port does MLflow use here?")
    observation = result.trajectory["observation_0"]
    assert observation["citations"][0]["doc_id"] == "mlflow-tracking"
    assert result.trajectory["tool_name_1"] == "finish"
    assert result.answer == "See mlflow-tracking#0."
