from __future__ import annotations

import asyncio
import json

import pytest

from qa_core.web.security import API_CSP
from tests.support.metrics import has_samples, metric_value
from tests.support.processes import free_port, lm_simulator

QUESTION = {"question": "Which port does the MLflow tracking server listen on?"}


def events(body: str) -> list[tuple[str, dict]]:
    parsed = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        parsed.append((lines["event"], json.loads(lines["data"])))
    return parsed


async def test_answer_returns_the_answer_citations_and_where_it_came_from(qa_client) -> None:
    async with qa_client() as client:
        response = await client.post("/v1/answer", json=QUESTION, headers={"X-Request-Id": "req-123"})
    assert response.status_code == 200
    body = response.json()
    assert body["answer"]
    assert body["citations"][0]["id"].startswith("mlflow-tracking#")
    assert body["citations"][0]["text"]
    assert (body["variant"], body["model_version"], body["request_id"]) == ("champion", "baseline", "req-123")
    assert body["trace_id"] is None  # no MLflow in these settings, so nothing is traced (see test_registry_routing)
    assert response.headers["X-Request-Id"] == "req-123"


@pytest.mark.parametrize(
    ("payload", "headers", "field"),
    [
        ({"question": ""}, {}, "question"),
        ({"question": "x" * 201}, {}, "question"),
        ({}, {}, "question"),
        ({"question": 42}, {}, "question"),
        ({**QUESTION, "session_id": ""}, {}, "session_id"),
        (QUESTION, {"X-Force-Variant": "tuesday"}, "x-force-variant"),
    ],
)
async def test_bad_input_gets_a_422_that_names_the_field(qa_client, payload, headers, field) -> None:
    async with qa_client(max_question_chars=200) as client:
        response = await client.post("/v1/answer", json=payload, headers=headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["message"].lower()
    assert error["request_id"]


async def test_a_body_over_the_limit_gets_413_and_malformed_json_a_422(qa_client) -> None:
    async with qa_client(max_body_bytes=2048) as client:
        too_big = await client.post("/v1/answer", json={"question": "x" * 5000})
        broken = await client.post("/v1/answer", content=b'{"question": ', headers={"content-type": "application/json"})
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"
    assert broken.status_code == 422


async def test_forcing_a_challenger_that_does_not_exist_is_a_409(qa_client) -> None:
    async with qa_client() as client:
        response = await client.post("/v1/answer", json=QUESTION, headers={"X-Force-Variant": "challenger"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "variant_unavailable"


async def test_stream_sends_status_tokens_and_a_final_event(qa_client) -> None:
    async with qa_client() as client:
        response = await client.post("/v1/answer/stream", json=QUESTION)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    stream = events(response.text)
    kinds = [kind for kind, _ in stream]
    assert "status" in kinds
    assert kinds.count("token") > 3
    assert kinds[-1] == "final"
    final = stream[-1][1]
    assert "".join(data["text"] for kind, data in stream if kind == "token") == final["answer"]
    assert {"answer", "citations", "variant", "model_version", "trace_id", "request_id"} <= final.keys()


async def test_many_concurrent_streams_each_get_their_own_answer(simulator_base: str, qa_client) -> None:
    questions = [
        "Which port does the MLflow tracking server listen on?",
        "Which header forces a variant?",
        "What does SIMBA stand for?",
        "Which optimizer uses a reflection LM?",
    ] * 3
    with lm_simulator(latency_ms=100, tokens_per_second=200) as paced:
        async with qa_client(api_base=paced) as client:
            responses = await asyncio.gather(
                *(client.post("/v1/answer/stream", json={"question": q}) for q in questions)
            )
    finals = []
    for response in responses:
        stream = events(response.text)
        assert stream[-1][0] == "final", stream[-3:]
        tokens = "".join(data["text"] for kind, data in stream if kind == "token")
        assert tokens == stream[-1][1]["answer"]
        finals.append(stream[-1][1])
    assert len({f["request_id"] for f in finals}) == len(questions)
    # The same question gets the same (deterministic) answer, different questions different ones.
    assert finals[0]["answer"] == finals[4]["answer"]
    assert len({f["answer"] for f in finals[:4]}) == 4


async def test_batch_answers_each_item_and_reports_the_bad_one_in_place(qa_client) -> None:
    payload = {"questions": ["Which port does MLflow listen on?", "   ", "What does SIMBA stand for?"]}
    async with qa_client() as client:
        response = await client.post("/v1/answer/batch", json=payload)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["ok"] for r in results] == [True, False, True]
    assert results[1]["error"]["code"] == "invalid_request"
    assert "questions.1" in results[1]["error"]["message"]
    assert results[0]["response"]["answer"]
    assert results[2]["response"]["answer"]
    assert results[0]["response"]["request_id"] != results[2]["response"]["request_id"]


async def test_a_batch_over_the_limit_is_a_422_naming_the_field(qa_client) -> None:
    async with qa_client(max_batch_size=3) as client:
        response = await client.post("/v1/answer/batch", json={"questions": ["q"] * 4})
    assert response.status_code == 422
    assert "questions" in response.json()["error"]["message"]


async def test_past_the_inflight_limit_requests_get_429_with_retry_after(qa_client) -> None:
    with lm_simulator(latency_ms=400) as slow:
        async with qa_client(api_base=slow, max_inflight=2, retry_after_s=3) as client:
            responses = await asyncio.gather(*(client.post("/v1/answer", json=QUESTION) for _ in range(6)))
            after = await client.post("/v1/answer", json=QUESTION)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 429, 429, 429, 429]
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.headers["Retry-After"] == "3"
    assert rejected.json()["error"]["code"] == "overloaded"
    assert after.status_code == 200  # slots are released


@pytest.mark.parametrize(
    ("simulator_options", "settings", "status", "code"),
    [
        ({"error_rate_500": 1.0}, {}, 502, "lm_bad_response"),
        ({"error_rate_429": 1.0}, {}, 503, "lm_unavailable"),
        ({"latency_ms": 3000}, {"lm_timeout_s": 0.5}, 504, "lm_timeout"),
        ({"latency_ms": 3000}, {"request_timeout_s": 0.5}, 504, "timeout"),
    ],
)
async def test_lm_failures_map_to_clear_gateway_errors(qa_client, simulator_options, settings, status, code) -> None:
    with lm_simulator(**simulator_options) as base:
        async with qa_client(api_base=base, **settings) as client:
            response = await client.post("/v1/answer", json=QUESTION)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if status == 503:
        assert response.headers["Retry-After"]


async def test_an_unreachable_lm_is_a_503(qa_client) -> None:
    async with qa_client(api_base=f"http://127.0.0.1:{free_port()}/v1") as client:
        response = await client.post("/v1/answer", json=QUESTION)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "lm_unavailable"


async def test_a_failure_inside_a_stream_is_an_error_event(qa_client) -> None:
    with lm_simulator(error_rate_500=1.0) as failing:
        async with qa_client(api_base=failing) as client:
            response = await client.post("/v1/answer/stream", json=QUESTION)
    assert response.status_code == 200
    kind, data = events(response.text)[-1]
    assert kind == "error"
    assert data["error"]["code"] == "lm_bad_response"


async def test_health_and_metrics(qa_client) -> None:
    answered = {"endpoint": "answer", "status": "ok", "synthetic": "false", "variant": "champion"}
    async with qa_client() as client:
        assert (await client.get("/health/live")).json() == {"status": "ok"}
        ready = await client.get("/health/ready")
        before = (await client.get("/metrics")).text
        await client.post("/v1/answer", json=QUESTION)
        after = (await client.get("/metrics")).text
    assert ready.status_code == 200
    assert ready.headers["content-security-policy"] == API_CSP
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["program"]["source"] == "baseline"
    assert ready.json()["checks"]["registry"]["ok"] is True
    # The registry is process-global, so earlier tests wrote these too: each must move by this one answer.
    moved = {
        name: metric_value(after, name, **labels) - metric_value(before, name, **labels)
        for name, labels in [
            ("qa_requests_total", answered),
            ("qa_request_duration_seconds_count", {"endpoint": "answer", "variant": "champion", "synthetic": "false"}),
            ("qa_lm_call_duration_seconds_count", {"variant": "champion"}),
        ]
    }
    assert moved == {
        "qa_requests_total": 1.0,
        "qa_request_duration_seconds_count": 1.0,
        "qa_lm_call_duration_seconds_count": 1.0,
    }
    prompt_tokens = {"kind": "prompt", "variant": "champion"}
    assert metric_value(after, "qa_lm_tokens_total", **prompt_tokens) > metric_value(
        before, "qa_lm_tokens_total", **prompt_tokens
    )
    assert metric_value(after, "qa_program_version_info", variant="champion", version="baseline") == 1.0
    assert has_samples(after, "qa_request_duration_seconds")


async def test_request_ids_that_are_unsafe_to_log_are_replaced(qa_client) -> None:
    async with qa_client() as client:
        response = await client.post("/v1/answer", json=QUESTION, headers={"X-Request-Id": "bad id\twith tabs"})
    assert response.status_code == 200
    assert response.headers["X-Request-Id"] != "bad id\twith tabs"
    assert response.json()["request_id"] == response.headers["X-Request-Id"]
