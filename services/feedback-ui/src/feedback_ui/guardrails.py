"""Guardrails: per variant, how many requests, how many failed, and the p95 latency.

A challenger that users like but that is slow or fails more often must not be promoted blindly. The
numbers come from Prometheus when PROMETHEUS_URL is set (every qa-api replica, over a window), else
from qa-api's own `/metrics` (one replica, since it started), and the page says which.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from feedback_ui.settings import Settings
from qa_core import contracts

REQUESTS_METRIC = "qa_requests_total"
LATENCY_METRIC = "qa_request_duration_seconds"


@dataclass(frozen=True)
class Traffic:
    """One variant's traffic as the guardrails see it."""

    requests: float
    errors: float
    p95_s: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    limit: float
    ok: bool | None  # None: no data yet


@dataclass
class Guardrails:
    source: str
    traffic: dict[str, Traffic] = field(default_factory=dict)
    problem: str | None = None

    def checks(self, variant: str, settings: Settings) -> list[Check]:
        traffic = self.traffic.get(variant)
        p95 = traffic.p95_s if traffic else None
        rate = traffic.error_rate if traffic else None
        p95_limit, rate_limit = settings.guardrail_p95_s, settings.guardrail_error_rate
        return [
            Check("p95 latency (s)", p95, p95_limit, None if p95 is None else p95 <= p95_limit),
            Check("error rate", rate, rate_limit, None if rate is None else rate <= rate_limit),
        ]


# --8<-- [start:quantile]
def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' `histogram_quantile` on cumulative (upper bound, count) buckets: find the bucket that
    holds the q-th observation and interpolate linearly inside it."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return None


# --8<-- [end:quantile]


# --8<-- [start:from-metrics]
def traffic_from_metrics_text(text: str) -> dict[str, Traffic]:
    """Per variant from qa-api's Prometheus text: every endpoint summed, then p95 and the error share."""
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            variant = sample.labels.get("variant")
            if variant not in contracts.VARIANTS:
                continue
            if sample.name == REQUESTS_METRIC:
                requests[variant] = requests.get(variant, 0.0) + sample.value
                if sample.labels.get("status") != "ok":
                    errors[variant] = errors.get(variant, 0.0) + sample.value
            elif sample.name == f"{LATENCY_METRIC}_bucket":
                bound = float(sample.labels["le"])
                per_variant = buckets.setdefault(variant, {})
                per_variant[bound] = per_variant.get(bound, 0.0) + sample.value
    return {
        variant: Traffic(
            requests=requests.get(variant, 0.0),
            errors=errors.get(variant, 0.0),
            p95_s=histogram_quantile(0.95, list(buckets.get(variant, {}).items())),
        )
        for variant in sorted(set(requests) | set(buckets))
    }


# --8<-- [end:from-metrics]


def prometheus_queries(window: str) -> dict[str, str]:
    return {
        "requests": f"sum by (variant) (increase({REQUESTS_METRIC}[{window}]))",
        "errors": f'sum by (variant) (increase({REQUESTS_METRIC}{{status!="ok"}}[{window}]))',
        "p95": f"histogram_quantile(0.95, sum by (le, variant) (rate({LATENCY_METRIC}_bucket[{window}])))",
    }


def by_variant(response: dict) -> dict[str, float]:
    """`{variant: value}` from a Prometheus instant-vector query response; NaN (no traffic) is left out."""
    if response.get("status") != "success":
        raise ValueError(f"Prometheus query failed: {response.get('error', response)}")
    values = {}
    for series in response["data"]["result"]:
        value = float(series["value"][1])
        if not math.isnan(value):
            values[series["metric"].get("variant", "")] = value
    return values


async def read_guardrails(http: httpx.AsyncClient, settings: Settings) -> Guardrails:
    if settings.prometheus_url:
        source = f"Prometheus, last {settings.prometheus_window}"
        url = f"{settings.prometheus_url.rstrip('/')}/api/v1/query"

        async def query_by_variant(query: str) -> dict[str, float]:
            response = await http.get(url, params={"query": query})
            response.raise_for_status()
            return by_variant(response.json())

        queries = prometheus_queries(settings.prometheus_window)
        try:
            results = dict(zip(queries, await asyncio.gather(*map(query_by_variant, queries.values())), strict=True))
        except (httpx.HTTPError, ValueError, KeyError) as error:
            return Guardrails(source, problem=f"cannot query Prometheus: {error}")
        traffic = {
            variant: Traffic(results["requests"].get(variant, 0.0), results["errors"].get(variant, 0.0),
                             results["p95"].get(variant))
            for variant in contracts.VARIANTS
            if variant in results["requests"] or variant in results["p95"]
        }  # fmt: skip
        return Guardrails(source, traffic)
    source = "qa-api /metrics (this replica, since it started)"
    try:
        response = await http.get(f"{settings.qa_api_url.rstrip('/')}/metrics")
        response.raise_for_status()
    except httpx.HTTPError as error:
        return Guardrails(source, problem=f"cannot read qa-api metrics: {error}")
    return Guardrails(source, traffic_from_metrics_text(response.text))
