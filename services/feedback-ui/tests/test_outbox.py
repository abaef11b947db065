"""The outbox against real failures: MLflow stopped while people rate, and feedback-ui killed mid-delivery.

Everything is real: the feedback-ui process, PostgreSQL, the MLflow server process (stopped and started
again on the same port with the same data). The test writes its figures to
test-artifacts/feedback-ui/outbox-figures.json; the chapter quotes them.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import mlflow
import pytest
from sqlalchemy import func, select

from feedback_ui.db import session_scope
from feedback_ui.models import OutboxItem
from qa_core import contracts
from tests.support import processes

pytestmark = pytest.mark.slow
RATINGS = 200
ARTIFACTS = Path(__file__).parents[3] / "test-artifacts" / "feedback-ui"


def pending(ui: processes.ManagedProcess) -> int:
    return httpx.get(f"{ui.url}/health/ready", timeout=10).json()["checks"]["outbox"]["pending"]


# --8<-- [start:outbox-test]
def test_ratings_given_while_mlflow_is_down_arrive_exactly_once_even_across_a_crash(deployment, mlflow_server) -> None:
    trace_ids = deployment.many_traces(RATINGS)
    env = {**deployment.env, "OUTBOX_BACKOFF_BASE_S": "0.5", "OUTBOX_BACKOFF_MAX_S": "4", "OUTBOX_LEASE_S": "5",
           "OUTBOX_CONCURRENCY": "4", "MLFLOW_TIMEOUT_S": "5"}  # fmt: skip
    ratings = {trace_id: i % 3 != 0 for i, trace_id in enumerate(trace_ids)}  # two thirds ✓
    keys = {trace_id: f"rating-{uuid.uuid4().hex}" for trace_id in trace_ids}
    figures: dict[str, float | int] = {"ratings": RATINGS}
    with (
        processes.feedback_ui(env) as ui,
        httpx.Client(base_url=ui.url, headers=deployment.bearer(), timeout=30) as http,
    ):

        def rate(trace_id: str) -> httpx.Response:
            body = {"trace_id": trace_id, "rating": "up" if ratings[trace_id] else "down",
                    "reason": f"checked {trace_id[-6:]}", "idempotency_key": keys[trace_id]}  # fmt: skip
            return http.post("/api/feedback", json=body)

        mlflow_server.stop()
        try:
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                accepted = list(pool.map(rate, trace_ids))
            figures["submit_s"] = round(time.monotonic() - started, 2)
            replays = [rate(trace_id) for trace_id in trace_ids[:10]]  # a client retrying: stored once
            assert [r.status_code for r in accepted] == [202] * RATINGS
            assert [r.status_code for r in replays] == [200] * 10
            time.sleep(3)  # the outbox keeps trying meanwhile
            assert pending(ui) == RATINGS  # all kept, none delivered, none lost
            health = httpx.get(f"{ui.url}/health/ready").json()
            assert health["status"] == "degraded"
        finally:
            restart = time.monotonic()
            mlflow_server.start()
        figures["mlflow_restart_s"] = round(time.monotonic() - restart, 1)

        # Halfway through delivering, kill feedback-ui outright, and start it again.
        drain_started = time.monotonic()
        deployment.wait_until(lambda: pending(ui) <= RATINGS // 2, timeout_s=120, what="half delivered")
        figures["half_delivered_s"] = round(time.monotonic() - drain_started, 1)
        figures["pending_at_kill"] = pending(ui)
        ui.stop(signal.SIGKILL)
        restarted = time.monotonic()
        ui.start()
        figures["ui_restart_s"] = round(time.monotonic() - restarted, 1)
        deployment.wait_until(lambda: pending(ui) == 0, timeout_s=180, what="outbox drained")
        figures["drain_s"] = round(time.monotonic() - drain_started, 1)

    with session_scope(deployment.settings.database_url) as session:
        statuses = dict(session.execute(select(OutboxItem.status, func.count()).group_by(OutboxItem.status)).all())
        figures["failed_attempts"] = session.scalar(select(func.sum(OutboxItem.attempts)))
        figures["most_attempts_one_rating"] = session.scalar(select(func.max(OutboxItem.attempts)))
    assert statuses == {"delivered": RATINGS}

    mlflow.set_tracking_uri(mlflow_server.url)
    experiment = mlflow.get_experiment_by_name(deployment.env["MLFLOW_EXPERIMENT_NAME"])
    traces = mlflow.search_traces(locations=[experiment.experiment_id], max_results=RATINGS + 50,
                                  include_spans=False, return_type="list")  # fmt: skip
    found = {t.info.trace_id: [a for a in t.info.assessments or [] if a.name == contracts.ASSESSMENT_USER_RATING]
             for t in traces}  # fmt: skip
    per_trace = Counter(len(found[trace_id]) for trace_id in trace_ids)
    assert per_trace == Counter({1: RATINGS})  # exactly once: none missing, none twice
    for trace_id in trace_ids:
        [assessment] = found[trace_id]
        assert assessment.value is ratings[trace_id]
        assert (assessment.source.source_type, assessment.source.source_id) == ("HUMAN", "robot")
        assert assessment.rationale == f"checked {trace_id[-6:]}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "outbox-figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("outbox figures:", figures)


# --8<-- [end:outbox-test]
