"""Prometheus metrics, labelled by variant where it makes sense, and the LM wrapper that times LM calls."""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

import dspy
from prometheus_client import Counter, Gauge, Histogram

from qa_api.trace_recorder import current_trace

# The variant serving the current request, for metrics recorded deep inside DSPy.
current_variant: ContextVar[str] = ContextVar("current_variant", default="none")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)

# --8<-- [start:metrics]
# `synthetic` is "true" for load-test traffic (X-Synthetic), so dashboards can leave it out.
REQUESTS = Counter(
    "qa_requests_total",
    "Questions answered, by endpoint, variant and outcome.",
    ["endpoint", "variant", "status", "synthetic"],
)
REQUEST_LATENCY = Histogram(
    "qa_request_duration_seconds",
    "Time to answer one question.",
    ["endpoint", "variant", "synthetic"],
    buckets=LATENCY_BUCKETS,
)
INFLIGHT = Gauge("qa_inflight_requests", "Questions being answered now.")
INFLIGHT_LIMIT = Gauge("qa_inflight_limit", "Questions allowed in progress at once.")
LM_LATENCY = Histogram("qa_lm_call_duration_seconds", "Duration of one LM call.", ["variant"], buckets=LATENCY_BUCKETS)
LM_TOKENS = Counter("qa_lm_tokens_total", "LM tokens, by variant and kind (prompt, completion).", ["variant", "kind"])
ERRORS = Counter("qa_errors_total", "Failed questions, by error kind.", ["kind"])
PROGRAM_INFO = Gauge(
    "qa_program_version_info", "The program version serving each variant (value 1).", ["variant", "version"]
)
CHALLENGER_SHARE = Gauge("qa_challenger_share", "Share of sessions assigned to the challenger.")
REGISTRY_DEGRADED = Gauge("qa_registry_degraded", "1 while MLflow cannot be read and the last programs serve.")
TRACES = Counter(
    "qa_traces_total",
    "Traces of answered questions, by outcome: exported, dropped_queue_full or export_failed.",
    ["outcome"],
)
# --8<-- [end:metrics]


# --8<-- [start:timed-lm]
class TimedLM(dspy.LM):
    """A `dspy.LM` that times its async calls, attributes them to the request's variant, and in a
    traced request records the call (messages in, completions out) as the trace's LM span.

    Not a DSPy callback on purpose: with any callback registered, DSPy inspects the arguments and
    mints an id for every module, adapter and LM call, which costs more CPU than the request's own
    serving work.
    """

    async def acall(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        trace = current_trace.get()
        span = trace.start_span(f"LM {self.model}", "LLM", {"messages": kwargs.get("messages")}) if trace else None
        try:
            outputs = await super().acall(*args, **kwargs)
        except BaseException as error:
            if span is not None:
                span.end(error=error)
            raise
        finally:
            LM_LATENCY.labels(current_variant.get()).observe(time.perf_counter() - started)
        if span is not None:
            span.end(outputs)
        return outputs


# --8<-- [end:timed-lm]


def count_traces(outcome: str, n: int) -> None:
    TRACES.labels(outcome).inc(n)


def observe_request(endpoint: str, variant: str, status: str, synthetic: bool, seconds: float) -> None:
    label = "true" if synthetic else "false"
    REQUESTS.labels(endpoint, variant, status, label).inc()
    REQUEST_LATENCY.labels(endpoint, variant, label).observe(seconds)


def record_usage(variant: str, usage: dict[str, dict[str, Any]]) -> None:
    """Add a prediction's token usage (`Prediction.get_lm_usage()`) to the token counters."""
    for per_model in usage.values():
        LM_TOKENS.labels(variant, "prompt").inc(per_model.get("prompt_tokens") or 0)
        LM_TOKENS.labels(variant, "completion").inc(per_model.get("completion_tokens") or 0)
