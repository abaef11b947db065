"""Tracing: every sampled request is one MLflow trace, with its retrieval and LM spans inside.

MLflow traces carry what a person rating an answer needs (inputs, outputs, variant, version). They are
recorded as plain data and exported in batches by `trace_recorder.TraceRecorder`, off the event loop. HTTP
spans for infrastructure dashboards go to OpenTelemetry, and only when the standard `OTEL_*`
variables ask for it; that switch never moves MLflow's traces elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import time
from collections.abc import Iterator
from typing import Any

import dspy
import mlflow

from qa_api.trace_recorder import PendingTrace, TraceRecorder, current_trace
from qa_core.contracts import TRACE_TAG_ENDPOINT

logger = logging.getLogger(__name__)


# --8<-- [start:sampling]
class TraceSampler:
    """Decides per request whether to trace."""

    def __init__(self, ratio: float, recorder: TraceRecorder, rng: random.Random | None = None) -> None:
        self.ratio, self.recorder = ratio, recorder
        self.rng = rng or random.Random()

    def should_trace(self, forced: bool) -> bool:
        return self.recorder.ready and (forced or self.rng.random() < self.ratio)


# --8<-- [end:sampling]


def ensure_experiment(name: str) -> str:
    """Create or select the experiment traces go to; its id (blocking: run it off the event loop)."""
    return mlflow.set_experiment(name).experiment_id


# --8<-- [start:request-trace]
@contextlib.contextmanager
def request_trace(
    recorder: TraceRecorder, traced: bool, endpoint: str, question: str, tags: dict[str, str], session_id: str | None
) -> Iterator[PendingTrace | None]:
    """The root span of a request; the LM records its span inside (`metrics.TimedLM`).

    Leaving the block queues the trace for export; nothing is encoded or sent on the event loop.
    """
    if not traced:
        yield None
        return
    tags = {TRACE_TAG_ENDPOINT: endpoint, **tags}
    trace = PendingTrace(f"qa-api {endpoint}", {"question": question}, tags, session_id)
    token = current_trace.set(trace)
    try:
        yield trace
    except BaseException as error:
        trace.root.end(error=error)
        raise
    finally:
        current_trace.reset(token)
        if trace.root.end_ns is None:
            trace.root.end()
        recorder.record(trace)


def record_answer(trace: PendingTrace, prediction: dspy.Prediction, outputs: dict[str, Any]) -> None:
    """The retrieval span and the root's outputs, from the prediction the program returned.

    Retrieval runs first in the program, before any LM call, so its span runs from the request's start
    to the first LM call (BM25 and the prompt's formatting) and holds the passages it returned.
    """
    first_lm = min((span.start_ns for span in trace.spans if span.span_type == "LLM"), default=None)
    retrieve = trace.start_span("retrieve", "RETRIEVER", {"query": trace.root.inputs["question"]}, trace.root.start_ns)
    retrieve.outputs = prediction.passages  # encoded in the export thread, off the event loop
    retrieve.end_ns = first_lm or time.time_ns()
    trace.root.outputs = outputs


# --8<-- [end:request-trace]


def setup_opentelemetry(app: Any) -> bool:
    """HTTP spans through OpenTelemetry when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set; off otherwise."""
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "qa-api")}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="/metrics,/health/.*")
    logger.info("OpenTelemetry HTTP spans on; MLflow traces still go to MLflow")
    return True
