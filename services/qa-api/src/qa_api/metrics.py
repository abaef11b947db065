"""Prometheus metrics, labelled by variant where it makes sense, and the DSPy callback that times LM calls."""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from dspy.utils.callback import BaseCallback
from prometheus_client import Counter, Gauge, Histogram

# The variant serving the current request, for metrics recorded deep inside DSPy.
current_variant: ContextVar[str] = ContextVar("current_variant", default="none")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)

# --8<-- [start:metrics]
REQUESTS = Counter("qa_requests_total", "Questions answered, by endpoint, variant and outcome.",
                   ["endpoint", "variant", "status"])  # fmt: skip
REQUEST_LATENCY = Histogram("qa_request_duration_seconds", "Time to answer one question.",
                            ["endpoint", "variant"], buckets=LATENCY_BUCKETS)  # fmt: skip
INFLIGHT = Gauge("qa_inflight_requests", "Questions being answered now.")
INFLIGHT_LIMIT = Gauge("qa_inflight_limit", "Questions allowed in progress at once.")
LM_LATENCY = Histogram("qa_lm_call_duration_seconds", "Duration of one LM call.", ["variant"],
                       buckets=LATENCY_BUCKETS)  # fmt: skip
LM_TOKENS = Counter("qa_lm_tokens_total", "LM tokens, by variant and kind (prompt, completion).",
                    ["variant", "kind"])  # fmt: skip
ERRORS = Counter("qa_errors_total", "Failed questions, by error kind.", ["kind"])
PROGRAM_INFO = Gauge("qa_program_version_info", "The program version serving each variant (value 1).",
                     ["variant", "version"])  # fmt: skip
CHALLENGER_SHARE = Gauge("qa_challenger_share", "Share of sessions assigned to the challenger.")
REGISTRY_DEGRADED = Gauge("qa_registry_degraded", "1 while MLflow cannot be read and the last programs serve.")
# --8<-- [end:metrics]


class LMCallMetrics(BaseCallback):
    """Times every LM call DSPy makes and attributes it to the request's variant."""

    def __init__(self) -> None:
        self._started: dict[str, tuple[float, str]] = {}

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._started[call_id] = (time.perf_counter(), current_variant.get())

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        started = self._started.pop(call_id, None)
        if started is not None:
            LM_LATENCY.labels(started[1]).observe(time.perf_counter() - started[0])


def record_usage(variant: str, usage: dict[str, dict[str, Any]]) -> None:
    """Add a prediction's token usage (`Prediction.get_lm_usage()`) to the token counters."""
    for per_model in usage.values():
        LM_TOKENS.labels(variant, "prompt").inc(per_model.get("prompt_tokens") or 0)
        LM_TOKENS.labels(variant, "completion").inc(per_model.get("completion_tokens") or 0)
