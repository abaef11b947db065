"""Delivery edge cases: a trace that is not exported yet, one that never appears, and the migrations."""

from __future__ import annotations

import uuid

import mlflow
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from mlflow.entities import TraceState
from sqlalchemy import select

from feedback_ui.db import engine_for, migrate, session_scope
from feedback_ui.models import Answer, Base, OutboxItem
from qa_core import contracts

pytestmark = pytest.mark.slow


def test_feedback_on_an_answer_whose_trace_is_not_exported_yet_waits_for_it(deployment) -> None:
    """qa-api exports traces in the background, so a fast annotator can rate an answer MLflow has not seen."""
    mlflow.set_tracking_uri(deployment.env["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment(deployment.env["MLFLOW_EXPERIMENT_NAME"])
    with deployment.app() as client:
        with mlflow.start_span(name="qa-api answer") as span:  # the trace is exported when this span ends
            span.set_inputs({"question": "Is it there yet?"})
            span.set_outputs({"answer": "soon", "citations": []})
            mlflow.update_current_trace(tags={contracts.TRACE_TAG_VARIANT: "champion",
                                              contracts.TRACE_TAG_MODEL_VERSION: "3"})  # fmt: skip
            # The Ask page stores what it showed before the person can rate it.
            with session_scope(deployment.settings.database_url) as session:
                session.add(Answer(trace_id=span.trace_id, question="Is it there yet?", answer="soon", citations=[],
                                   variant="champion", model_version="3", origin="ask"))  # fmt: skip
            response = client.post("/api/feedback", headers=deployment.bearer(), json={
                "trace_id": span.trace_id, "rating": "up", "idempotency_key": uuid.uuid4().hex})  # fmt: skip
            assert response.status_code == 202
            waiting = deployment.wait_until(
                lambda: client.get(f"/api/feedback/{response.json()['id']}", headers=deployment.bearer()).json()[
                    "deliveries"][0]["attempts"] >= 2, what="retries while the trace is missing")  # fmt: skip
            trace_id = span.trace_id
        mlflow.flush_trace_async_logging()
        view = deployment.delivered(client, response.json()["id"], deployment.bearer())
    assert waiting
    assert view["deliveries"][0]["attempts"] >= 2
    assert view["model_version"] == "3"
    [rating] = deployment.assessments(trace_id, contracts.ASSESSMENT_USER_RATING)
    assert (rating.value, rating.source.source_id) == (True, "robot")


def test_a_rating_sent_while_its_trace_is_in_progress_learns_the_variant_when_the_trace_completes(deployment) -> None:
    """MLflow holds a trace IN_PROGRESS, without qa-api's tags, until its spans arrive (seconds, under load). An
    API client that rates at once gets a 202 without a variant; delivery waits for the complete trace, fills in
    the variant and version, and counts the rating for that variant once."""
    mlflow.set_tracking_uri(deployment.env["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment(deployment.env["MLFLOW_EXPERIMENT_NAME"])
    with deployment.app() as client:
        counted_before = deployment.ratings_counted(client)
        with mlflow.start_span(name="qa-api answer") as span:
            span.set_inputs({"question": "Is it finished?"})
            span.set_outputs({"answer": "nearly", "citations": []})
            mlflow.update_current_trace(tags={contracts.TRACE_TAG_VARIANT: "champion",
                                              contracts.TRACE_TAG_MODEL_VERSION: "4"})  # fmt: skip
            assert deployment.traces.get_trace_info(span.trace_id).state == TraceState.IN_PROGRESS
            response = client.post("/api/feedback", headers=deployment.bearer(), json={
                "trace_id": span.trace_id, "rating": "up", "idempotency_key": uuid.uuid4().hex})  # fmt: skip
            assert response.status_code == 202, response.text
            assert (response.json()["variant"], response.json()["model_version"]) == (None, None)
            assert deployment.ratings_counted(client) == counted_before  # not attributable yet
        mlflow.flush_trace_async_logging()
        view = deployment.delivered(client, response.json()["id"], deployment.bearer())
        counted = deployment.ratings_counted(client) - counted_before
    assert (view["variant"], view["model_version"]) == ("champion", "4")
    assert counted == 1
    [rating] = deployment.assessments(span.trace_id, contracts.ASSESSMENT_USER_RATING)
    assert rating.value is True


def test_feedback_for_a_trace_that_never_appears_is_parked_not_dropped(deployment) -> None:
    """Accepted while MLflow was down (so unverified), then MLflow never shows the trace: after the wait it is
    marked failed with the reason, and it stays in the database."""
    missing = "tr-" + uuid.uuid4().hex
    with deployment.app(OUTBOX_TRACE_WAIT_S="1", MLFLOW_TRACKING_URI="http://127.0.0.1:9") as down:
        body = {"trace_id": missing, "rating": "down", "idempotency_key": uuid.uuid4().hex}
        accepted = down.post("/api/feedback", headers=deployment.bearer(), json=body)
    assert accepted.status_code == 202
    assert accepted.json()["variant"] is None  # not known yet: MLflow could not be asked
    with deployment.app(OUTBOX_TRACE_WAIT_S="1") as client:

        def parked() -> dict | None:
            view = client.get(f"/api/feedback/{accepted.json()['id']}", headers=deployment.bearer()).json()
            return view if view["status"] == "failed" else None

        view = deployment.wait_until(parked, timeout_s=20, what="parked")
        ready = client.get("/health/ready").json()
    assert "is not (completely) in MLflow yet" in view["deliveries"][0]["last_error"]
    assert ready["checks"]["outbox"]["failed"] == 1
    with session_scope(deployment.settings.database_url) as session:
        [item] = session.scalars(select(OutboxItem)).all()
        assert (item.trace_id, item.status) == (missing, "failed")


def test_the_migrations_build_exactly_the_models_schema(database_url) -> None:
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    migrate(url)
    migrate(url)  # a second run is a no-op, as compose's one-shot job may run it on every start
    with engine_for(url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
