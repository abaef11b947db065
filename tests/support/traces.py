"""Write traces shaped like qa-api's into a real MLflow server, for tests of what reads them."""

from __future__ import annotations

import uuid

import mlflow

from qa_core import contracts


def log_qa_trace(
    experiment_name: str,
    question: str,
    answer: str,
    *,
    variant: str = contracts.CHAMPION_ALIAS,
    version: str = "1",
    synthetic: bool = False,
    session_id: str = "session-1",
    citations: list[dict] | None = None,
) -> str:
    """One trace like qa-api's: a root span with the question in and the answer and citations out, and its tags.

    Uses the fluent API and the process's tracking URI (set it first). Export is asynchronous: call
    `mlflow.flush_trace_async_logging()` before reading the trace back.
    """
    mlflow.set_experiment(experiment_name)
    with mlflow.start_span(name="qa-api answer") as span:
        span.set_inputs({"question": question})
        span.set_outputs({"answer": answer, "citations": citations or [], "model_version": version})
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
    return trace_id
