"""The OpenAI-compatible HTTP surface, spoken to with raw httpx."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

SYSTEM = "You answer questions."
USER = (
    "[[ ## passages ## ]]\n"
    '["[a#1] Cats sleep for most of the day.", '
    '"[b#2] The Eiffel Tower is in Paris. It was finished in 1889."]'
    "\n\n[[ ## question ## ]]\nWhen was the Eiffel Tower in Paris finished?"
)
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]

# A pydantic-style schema: nested model through $defs/$ref, enum, nullable, list of objects, numbers, bools.
NESTED_SCHEMA: dict[str, Any] = {
    "$defs": {
        "Source": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "score": {"type": "number", "minimum": 0.5, "maximum": 1},
                "pages": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2},
            },
            "required": ["id", "score", "pages"],
            "additionalProperties": False,
        },
        "Label": {"type": "string", "enum": ["factual", "opinion"]},
    },
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 200},
        "citations": {"type": "array", "items": {"type": "string"}},
        "sources": {"type": "array", "items": {"$ref": "#/$defs/Source"}},
        "primary": {"$ref": "#/$defs/Source"},
        "label": {"$ref": "#/$defs/Label"},
        "confidence": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "note": {"type": ["string", "null"]},
        "verified": {"type": "boolean"},
        "count": {"type": "integer", "exclusiveMinimum": 0},
    },
    "additionalProperties": False,
}
NESTED_SCHEMA["required"] = list(NESTED_SCHEMA["properties"])


def _validate(instance: Any, schema: dict[str, Any]) -> None:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - hand check of the parts this test relies on
        assert set(instance) == set(schema["properties"])
        assert isinstance(instance["primary"]["pages"], list)
        return
    jsonschema.validate(instance, schema)


def _post(api_base: str, body: dict[str, Any] | bytes, **kwargs: Any) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(f"{api_base}/chat/completions", content=body, timeout=10, **kwargs)
    return httpx.post(f"{api_base}/chat/completions", json=body, timeout=10, **kwargs)


def _content(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_health_and_models(api_base: str) -> None:
    assert httpx.get(api_base.removesuffix("/v1") + "/health").status_code == 200
    body = httpx.get(f"{api_base}/models").json()
    assert body["object"] == "list"
    assert body["data"][0]["id"] == "lm-simulator"
    assert body["data"][0]["object"] == "model"


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b'{"model": "x"}', b'{"messages": []}'])
def test_bad_requests_get_openai_errors(api_base: str, payload: bytes) -> None:
    response = _post(api_base, payload)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


def test_completion_shape_and_usage(api_base: str) -> None:
    response = _post(api_base, {"model": "m", "messages": MESSAGES})
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # Not a DSPy prompt (no output fields): a plain extractive answer.
    assert _content(response) == "The Eiffel Tower is in Paris."


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema", "json_schema": {"name": "out", "strict": True, "schema": NESTED_SCHEMA}},
        {"type": "json_object", "schema": NESTED_SCHEMA},  # llama.cpp form
    ],
)
def test_json_schema_response_validates(api_base: str, response_format: dict[str, Any]) -> None:
    content = _content(_post(api_base, {"messages": MESSAGES, "response_format": response_format}))
    value = json.loads(content)
    _validate(value, NESTED_SCHEMA)
    assert value["answer"] == "The Eiffel Tower is in Paris."
    assert value["citations"] == ["b#2"]
    assert value["primary"]["id"] == "b#2"
    assert value["label"] == "factual"


def test_json_object_without_schema_reads_fields_from_prompt(api_base: str) -> None:
    system = "Your output fields are:\n1. `answer` (str): \n2. `year` (int): \n3. `sure` (bool):\n"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": USER}]
    body = {"messages": messages, "response_format": {"type": "json_object"}}
    value = json.loads(_content(_post(api_base, body)))
    assert value == {"answer": "The Eiffel Tower is in Paris.", "year": 0, "sure": True}


def test_stream_sse_format_with_usage(api_base: str) -> None:
    body = {"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{api_base}/chat/completions", json=body, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "The Eiffel Tower is in Paris."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_stream_without_usage_option_has_no_usage_chunk(api_base: str) -> None:
    body = {"messages": MESSAGES, "stream": True}
    with httpx.stream("POST", f"{api_base}/chat/completions", json=body, timeout=10) as response:
        lines = [line for line in response.iter_lines() if line]
    assert not any("usage" in json.loads(line[6:]) for line in lines[:-1])


def test_rate_limit_injection(simulator) -> None:  # type: ignore[no-untyped-def]
    with simulator(error_rate_429=1.0, retry_after_s=7) as base:
        response = _post(base, {"messages": MESSAGES})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_server_error_injection(simulator) -> None:  # type: ignore[no-untyped-def]
    with simulator(error_rate_500=1.0) as base:
        plain = _post(base, {"messages": MESSAGES})
        streamed = _post(base, {"messages": MESSAGES, "stream": True})
    for response in (plain, streamed):
        assert response.status_code == 500
        assert response.json()["error"]["type"] == "server_error"


def test_timeout_injection_drops_the_connection(simulator) -> None:  # type: ignore[no-untyped-def]
    with simulator(timeout_rate=1.0, timeout_hold_s=0.3) as base:
        started = time.perf_counter()
        with pytest.raises(httpx.RemoteProtocolError):
            _post(base, {"messages": MESSAGES})
        assert time.perf_counter() - started >= 0.3
        with pytest.raises(httpx.ReadTimeout):  # a client with a shorter timeout just times out
            httpx.post(f"{base}/chat/completions", json={"messages": MESSAGES}, timeout=0.1)


def test_latency_is_respected(simulator) -> None:  # type: ignore[no-untyped-def]
    with simulator(latency_ms=300) as base:
        for stream in (False, True):
            started = time.perf_counter()
            response = _post(base, {"messages": MESSAGES, "stream": stream})
            assert response.status_code == 200
            assert time.perf_counter() - started >= 0.3


def test_mixed_rates_follow_the_seed(simulator) -> None:  # type: ignore[no-untyped-def]
    def statuses(base: str) -> list[int]:
        return [_post(base, {"messages": MESSAGES}).status_code for _ in range(40)]

    with simulator(error_rate_429=0.3, error_rate_500=0.2, seed=42) as base:
        first = statuses(base)
    with simulator(error_rate_429=0.3, error_rate_500=0.2, seed=42) as base:
        second = statuses(base)
    assert first == second
    assert {200, 429, 500} <= set(first)
