"""MLflow traces as feedback-ui reads and annotates them. Every call blocks: run it in a thread.

MLflow's fluent helpers (`mlflow.get_trace`) turn every failure into `None`, which would make "MLflow is
down" look like "no such trace". We use the tracing client directly, so the two stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Assessment, Trace, TraceInfo, TraceState
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracing.client import TracingClient

from qa_core import contracts

# The trace ids qa-api hands out: MLflow 3's "tr-" and the 32 hex digits of the OpenTelemetry trace id.
TRACE_ID_PATTERN = r"^tr-[0-9a-f]{32}$"


class MlflowUnavailable(Exception):
    """MLflow did not answer (down, overloaded, or a server error): try again later."""


@dataclass(frozen=True)
class TraceView:
    """What a person needs to judge an answer, read from a trace's root span and qa-api's tags."""

    trace_id: str
    question: str
    answer: str
    citations: list[dict[str, Any]]
    variant: str | None
    model_version: str | None
    session_id: str | None
    synthetic: bool
    timestamp_ms: int
    assessments: list[Assessment] = field(default_factory=list)


def is_complete(info: TraceInfo) -> bool:
    """MLflow creates a trace IN_PROGRESS, without qa-api's tags, and completes it when the spans arrive
    (seconds later under load). Until then its variant and version are unknown, and it is not ready for
    assessments."""
    return info.state != TraceState.IN_PROGRESS


def variant_and_version(info: TraceInfo) -> tuple[str | None, str | None]:
    return info.tags.get(contracts.TRACE_TAG_VARIANT), info.tags.get(contracts.TRACE_TAG_MODEL_VERSION)


def is_synthetic(info: TraceInfo) -> bool:
    return info.tags.get(contracts.TRACE_TAG_SYNTHETIC, "").lower() == "true"


def has_human_verdict(info: TraceInfo) -> bool:
    """Rated or corrected already (by anyone, through any client): it does not belong in the review queue."""
    names = {contracts.ASSESSMENT_USER_RATING, contracts.ASSESSMENT_CORRECTED_ANSWER}
    return any(a.name in names and a.valid is not False for a in info.assessments or [])


def view_of(trace: Trace) -> TraceView | None:
    """The question, answer and citations of a qa-api trace; None for a trace of another shape."""
    root = trace.data.spans[0] if trace.data and trace.data.spans else None
    inputs = (root.inputs if root else None) or {}
    outputs = (root.outputs if root else None) or {}
    question = str(inputs.get("question") or "").strip() if isinstance(inputs, dict) else ""
    if not question or not isinstance(outputs, dict):
        return None
    citations = [c for c in outputs.get("citations") or [] if isinstance(c, dict)]
    variant, version = variant_and_version(trace.info)
    return TraceView(
        trace_id=trace.info.trace_id,
        question=question,
        answer=str(outputs.get("answer") or ""),
        citations=citations,
        variant=variant,
        model_version=version,
        session_id=trace.info.tags.get(contracts.TRACE_TAG_SESSION_ID),
        synthetic=is_synthetic(trace.info),
        timestamp_ms=trace.info.timestamp_ms,
        assessments=list(trace.info.assessments or []),
    )


class TraceStore:
    """The few MLflow calls feedback-ui makes, with "not found" and "unavailable" told apart."""

    def __init__(self, tracking_uri: str, experiment_name: str) -> None:
        self.client = TracingClient(tracking_uri)
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self._experiment_id: str | None = None

    def info(self, trace_id: str) -> TraceInfo | None:
        """The trace's info with its assessments; None when MLflow has no such trace (yet)."""
        try:
            return self.client.get_trace_info(trace_id)
        except MlflowException as error:
            if _not_found(error):
                return None
            raise MlflowUnavailable(_short(error)) from error

    def trace(self, trace_id: str) -> Trace | None:
        try:
            return self.client.get_trace(trace_id)
        except MlflowException as error:
            if _not_found(error):
                return None
            raise MlflowUnavailable(_short(error)) from error

    def log(self, trace_id: str, assessment: Assessment) -> Assessment:
        try:
            return self.client.log_assessment(trace_id, assessment)
        except MlflowException as error:
            raise MlflowUnavailable(_short(error)) from error

    def experiment_id(self) -> str | None:
        if self._experiment_id is None:
            from mlflow import MlflowClient

            try:
                experiment = MlflowClient(self.tracking_uri).get_experiment_by_name(self.experiment_name)
            except MlflowException as error:
                raise MlflowUnavailable(_short(error)) from error
            self._experiment_id = experiment.experiment_id if experiment else None
        return self._experiment_id

    def recent(self, limit: int) -> list[TraceInfo]:
        """The newest traces of the QA experiment, without their spans (cheap), synthetic ones filtered out."""
        experiment_id = self.experiment_id()
        if experiment_id is None:
            return []
        try:
            traces = self.client.search_traces(
                locations=[experiment_id],
                filter_string=f"tags.`{contracts.TRACE_TAG_SYNTHETIC}` != 'true'",
                max_results=limit,
                order_by=["timestamp_ms DESC"],
                include_spans=False,
            )
        except MlflowException as error:
            raise MlflowUnavailable(_short(error)) from error
        return [t.info for t in traces]


def _not_found(error: MlflowException) -> bool:
    return isinstance(error, RestException) and error.error_code == "RESOURCE_DOES_NOT_EXIST"


def _short(error: MlflowException) -> str:
    return str(error.message if hasattr(error, "message") else error)[:300]
