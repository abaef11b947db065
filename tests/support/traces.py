"""Write traces shaped like qa-api's into a real MLflow server, for tests of what reads them."""

from __future__ import annotations

import uuid

import mlflow
from mlflow.entities import AssessmentSource, AssessmentSourceType

from qa_core import contracts


def log_qa_trace(
    experiment_name: str,
    question: str,
    answer: str,
    citations: list[str] | None = None,
    *,
    variant: str = contracts.CHAMPION_ALIAS,
    version: str = "1",
    synthetic: bool = False,
    session_id: str = "session-1",
    ratings: list[bool] | None = None,
    correction: str | None = None,
) -> str:
    """One trace like qa-api's: a root span with the question in and the answer and citations out, and its tags.

    `citations` are passage ids; the span gets them as qa-api writes them (`Citation` objects). `ratings` and
    `correction` are logged on the trace the way the feedback UI delivers them (HUMAN assessments), after the
    trace is exported. Uses the fluent API and the process's tracking URI (set it first). Without feedback the
    export stays asynchronous: call `mlflow.flush_trace_async_logging()` before reading the trace back.
    """
    mlflow.set_experiment(experiment_name)
    with mlflow.start_span(name="qa-api answer") as span:
        span.set_inputs({"question": question})
        cited = [{"id": c, "doc_id": c.split("#", 1)[0], "title": "", "text": ""} for c in citations or []]
        span.set_outputs({"answer": answer, "citations": cited, "model_version": version})
        mlflow.update_current_trace(
            tags={
                contracts.TRACE_TAG_ENDPOINT: "answer",
                contracts.TRACE_TAG_VARIANT: variant,
                contracts.TRACE_TAG_MODEL_VERSION: version,
                contracts.TRACE_TAG_REQUEST_ID: uuid.uuid4().hex,
                contracts.TRACE_TAG_SESSION_ID: session_id,
                contracts.TRACE_TAG_SYNTHETIC: "true" if synthetic else "false",
            },
            session_id=session_id,
        )
        trace_id = span.trace_id
    if ratings or correction is not None:
        mlflow.flush_trace_async_logging()
    for number, rating in enumerate(ratings or []):
        source = AssessmentSource(AssessmentSourceType.HUMAN, f"user-{number}")
        mlflow.log_feedback(trace_id=trace_id, name=contracts.ASSESSMENT_USER_RATING, value=rating, source=source)
    if correction is not None:
        source = AssessmentSource(AssessmentSourceType.HUMAN, "annotator")
        mlflow.log_expectation(
            trace_id=trace_id, name=contracts.ASSESSMENT_CORRECTED_ANSWER, value=correction, source=source
        )
    return trace_id
