"""A/B routing, hot swaps and tracing against a real MLflow server."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import mlflow
import pytest

from qa_core import contracts, registry
from qa_core.settings import CoreSettings
from tests.support.processes import lm_simulator
from tests.support.programs import register_program
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

QUESTION = {"question": "Which port does the MLflow tracking server listen on?"}


@pytest.fixture
def model(mlflow_server):
    """A fresh registered model name and a client on the session's MLflow server."""
    client = registry.configure_mlflow(CoreSettings(_env_file=None, mlflow_tracking_uri=mlflow_server.url))
    name = f"qa-program-{uuid.uuid4().hex[:8]}"
    yield client, name
    client.delete_registered_model(name)


def registry_settings(mlflow_server, name: str) -> dict:
    return {
        "use_registry": True,
        "mlflow_tracking_uri": mlflow_server.url,
        "registered_model_name": name,
        "mlflow_experiment_name": f"{name}-traces",
        "registry_poll_s": 0.3,
    }


# --8<-- [start:split-test]
async def test_the_split_follows_the_share_and_assignment_is_sticky(qa_client, mlflow_server, model) -> None:
    client, name = model
    champion, challenger = register_program(client, name, 2), register_program(client, name, 1)
    client.set_registered_model_alias(name, contracts.CHAMPION_ALIAS, champion)
    client.set_registered_model_alias(name, contracts.CHALLENGER_ALIAS, challenger)
    registry.set_challenger_share(client, name, 0.3)

    settings = registry_settings(mlflow_server, name)
    async with qa_client(**settings, trace_sampling_ratio=0.0, max_inflight=1000) as api:
        sessions = [f"user-{i}" for i in range(400)]
        first = await asyncio.gather(*(api.post("/v1/answer", json={**QUESTION, "session_id": s}) for s in sessions))
        again = await asyncio.gather(
            *(api.post("/v1/answer", json={**QUESTION, "session_id": s}) for s in sessions[:50])
        )

    assert {r.status_code for r in first + again} == {200}
    variants = Counter(r.json()["variant"] for r in first)
    # 400 draws at p = 0.3: mean 120, sd 9.2; four sd either side.
    assert 83 <= variants["challenger"] <= 157, variants
    versions = {r.json()["variant"]: r.json()["model_version"] for r in first}
    assert versions == {"champion": champion, "challenger": challenger}
    for before, after in zip(first[:50], again, strict=True):
        assert before.json()["variant"] == after.json()["variant"]


# --8<-- [end:split-test]


async def test_moving_an_alias_under_load_drops_no_request_and_never_mixes_versions(
    qa_client, mlflow_server, model
) -> None:
    client, name = model
    old, new = register_program(client, name, 2), register_program(client, name, 1)
    client.set_registered_model_alias(name, contracts.CHAMPION_ALIAS, old)

    # A paced LM (150 ms a call) keeps the trace rate within what a one-worker SQLite MLflow ingests.
    with lm_simulator(latency_ms=150) as paced:
        async with qa_client(paced, **registry_settings(mlflow_server, name)) as api:
            responses = []
            stop = asyncio.Event()

            async def user(i: int) -> None:
                while not stop.is_set():
                    responses.append(await api.post("/v1/answer", json={**QUESTION, "session_id": f"load-{i}"}))

            users = [asyncio.create_task(user(i)) for i in range(4)]
            await asyncio.sleep(1.0)
            client.set_registered_model_alias(name, contracts.CHAMPION_ALIAS, new)
            await eventually(lambda: _serves(api, new), timeout_s=15)
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*users)

    assert responses
    assert [r.status_code for r in responses if r.status_code != 200] == []
    served = Counter(r.json()["model_version"] for r in responses)
    assert served.keys() == {old, new}, served
    for response in responses[:: max(1, len(responses) // 40)]:
        body = response.json()
        trace = mlflow.get_trace(body["trace_id"])
        assert trace.info.tags[contracts.TRACE_TAG_MODEL_VERSION] == body["model_version"]


async def _serves(api, version: str) -> bool:
    return (await api.get("/health/ready")).json()["checks"]["program"]["champion"] == version


async def test_every_answer_is_a_trace_with_its_tags_and_its_retrieval_and_lm_spans(
    qa_client, mlflow_server, model
) -> None:
    client, name = model
    version = register_program(client, name, 2)
    client.set_registered_model_alias(name, contracts.CHAMPION_ALIAS, version)
    async with qa_client(**registry_settings(mlflow_server, name)) as api:
        response = await api.post(
            "/v1/answer", json={**QUESTION, "session_id": "s-42"}, headers={"X-Request-Id": "r-1"}
        )
    body = response.json()  # the app has stopped: its recorder sent the queued traces on the way out
    trace = mlflow.get_trace(body["trace_id"])
    assert trace.info.trace_id == body["trace_id"]
    tags = trace.info.tags
    assert tags[contracts.TRACE_TAG_VARIANT] == "champion"
    assert tags[contracts.TRACE_TAG_MODEL_VERSION] == version
    assert tags[contracts.TRACE_TAG_REQUEST_ID] == "r-1"
    assert tags[contracts.TRACE_TAG_SESSION_ID] == "s-42"
    assert tags[contracts.TRACE_TAG_SYNTHETIC] == "false"
    assert trace.info.state == "OK"
    assert trace.info.trace_metadata["mlflow.trace.session"] == "s-42"
    by_type = {span.span_type: span for span in trace.data.spans}
    root = next(span for span in trace.data.spans if span.parent_id is None)
    assert root.name == "qa-api answer"
    assert root.inputs == {"question": QUESTION["question"]}
    assert root.outputs["answer"] == body["answer"]
    assert {span.parent_id for span in trace.data.spans if span is not root} == {root.span_id}
    retrieve, lm = by_type["RETRIEVER"], by_type["LLM"]
    assert len(trace.data.spans) == 3  # one LM call: the grammar needs no grounding retry
    assert retrieve.inputs == {"query": QUESTION["question"]}
    assert {c["id"] for c in body["citations"]} <= {p["id"] for p in retrieve.outputs}
    assert lm.inputs["messages"][-1]["role"] == "user"
    assert QUESTION["question"] in lm.inputs["messages"][-1]["content"]
    assert lm.outputs  # the completions the LM returned
    assert root.start_time_ns <= retrieve.start_time_ns <= retrieve.end_time_ns <= lm.start_time_ns
    assert lm.end_time_ns <= root.end_time_ns

    # A rating attaches to it, as feedback-ui's outbox sends it.
    mlflow.log_feedback(trace_id=body["trace_id"], name=contracts.ASSESSMENT_USER_RATING, value=True)
    [rating] = mlflow.get_trace(body["trace_id"]).info.assessments
    assert rating.value is True
    found = mlflow.search_traces(
        locations=[trace.info.experiment_id],
        filter_string=f"tags.`{contracts.TRACE_TAG_REQUEST_ID}` = 'r-1'",
        return_type="list",
    )
    assert [t.info.trace_id for t in found] == [body["trace_id"]]


async def test_a_sampling_ratio_of_zero_traces_only_forced_requests(qa_client, mlflow_server, model) -> None:
    client, name = model
    client.set_registered_model_alias(name, contracts.CHAMPION_ALIAS, register_program(client, name, 1))
    async with qa_client(**registry_settings(mlflow_server, name), trace_sampling_ratio=0.0) as api:
        plain = await api.post("/v1/answer", json=QUESTION)
        forced = await api.post("/v1/answer", json=QUESTION, headers={"X-Force-Trace": "1"})
    assert plain.json()["trace_id"] is None
    assert forced.json()["trace_id"] is not None
