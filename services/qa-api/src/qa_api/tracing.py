"""Tracing: every sampled request is one MLflow trace with DSPy's spans nested inside.

MLflow traces carry what a person rating an answer needs (inputs, outputs, variant, version). HTTP
spans for infrastructure dashboards go to OpenTelemetry, and only when the standard `OTEL_*`
variables ask for it; that switch never moves MLflow's traces elsewhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import random
import sys
from collections.abc import Iterator
from typing import Any

import dspy
import mlflow
from mlflow.dspy.callback import MlflowCallback
from mlflow.entities import SpanType

from qa_core import contracts

logger = logging.getLogger(__name__)


# --8<-- [start:keep-traces]
def keep_mlflow_traces_in_mlflow() -> None:
    """Make the standard OTEL_* variables safe for MLflow's traces.

    With OTEL_EXPORTER_OTLP_ENDPOINT set, MLflow 3.17 sends its traces only to that endpoint unless
    MLFLOW_ENABLE_OTLP_EXPORTER is false. It also exports span metrics there, by default over gRPC;
    without the gRPC exporter installed, that fails inside span end and the trace is lost. We speak
    OTLP over HTTP, so say so.
    """
    os.environ.setdefault("MLFLOW_ENABLE_OTLP_EXPORTER", "false")
    os.environ.setdefault("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")


# --8<-- [end:keep-traces]


def skip_missing_llama_index_imports() -> None:
    """Make MLflow's per-attribute probe for LlamaIndex objects cheap when LlamaIndex is not installed.

    MLflow's trace encoder tries `import llama_index...` for every span attribute it cannot encode
    (DSPy's LM and signature objects, for instance). When the package is missing, each failed import
    searches sys.path again: profiling showed it at about 6% of qa-api's CPU with tracing on. A None
    entry in sys.modules makes the same import fail at once, which is documented Python behaviour.
    """
    if importlib.util.find_spec("llama_index") is None:
        sys.modules.setdefault("llama_index", None)  # type: ignore[arg-type]


def enable_dspy_autolog() -> MlflowCallback:
    """Turn on MLflow's DSPy autologging, then take its callback out of DSPy's global settings.

    Like `dspy.configure`, call it once at import, in the main thread. The callback comes back only
    for the requests that are traced (`TraceSampler.callbacks`): with any callback installed
    globally, DSPy pays per-call bookkeeping on every request, traced or not.
    """
    mlflow.dspy.autolog(log_traces=True, silent=True)
    callback = next(c for c in dspy.settings.callbacks if isinstance(c, MlflowCallback))
    dspy.settings.configure(callbacks=[c for c in dspy.settings.callbacks if c is not callback])
    return callback


# --8<-- [start:sampling]
class TraceSampler:
    """Decides per request whether to trace, and hands DSPy the callbacks that match the decision."""

    def __init__(self, ratio: float, tracer: MlflowCallback, rng: random.Random | None = None) -> None:
        self.ratio, self.tracer = ratio, tracer
        self.rng = rng or random.Random()
        self.experiment_ready = False  # no traces until the experiment exists in MLflow

    def should_trace(self, forced: bool) -> bool:
        return self.experiment_ready and (forced or self.rng.random() < self.ratio)

    def callbacks(self, traced: bool) -> list[Any]:
        """The process's DSPy callbacks, plus MLflow's when this request is traced."""
        return [*dspy.settings.callbacks, self.tracer] if traced else dspy.settings.callbacks


# --8<-- [end:sampling]


def ensure_experiment(name: str) -> None:
    """Create or select the experiment traces go to (blocking: run it off the event loop)."""
    mlflow.set_experiment(name)


# --8<-- [start:request-trace]
@contextlib.contextmanager
def request_trace(
    traced: bool, endpoint: str, question: str, tags: dict[str, str], session_id: str | None
) -> Iterator[Any]:
    """The root span of a request; DSPy's module, predictor and LM spans nest under it."""
    if not traced:
        yield None
        return
    with mlflow.start_span(name=f"qa-api {endpoint}", span_type=SpanType.CHAIN) as span:
        span.set_inputs({"question": question})
        mlflow.update_current_trace(
            tags={contracts.TRACE_TAG_ENDPOINT: endpoint, **tags},
            session_id=session_id,
            client_request_id=tags.get(contracts.TRACE_TAG_REQUEST_ID),
        )
        yield span


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
