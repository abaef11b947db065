"""Prometheus metrics, read from the jobs table at scrape time.

The table is the truth shared by the API and every worker, so a scrape of any API replica sees every
job, and a worker needs no metrics port of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from optimizer_worker.jobs import JobStore

DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, float("inf"))


# --8<-- [start:collector]
class JobsCollector(Collector):
    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily | HistogramMetricFamily]:
        jobs = GaugeMetricFamily(
            "optimizer_jobs", "Jobs in the table, by state and optimizer.", labels=["state", "optimizer"]
        )
        for (state, optimizer), count in sorted(self.store.counts_by_state().items()):
            jobs.add_metric([state, optimizer], count)
        yield jobs

        finished = self.store.finished()
        durations = HistogramMetricFamily(
            "optimizer_job_duration_seconds",
            "Wall time of the last 1000 finished jobs, from start to end, by optimizer and final state.",
            labels=["optimizer", "state"],
        )
        grouped: dict[tuple[str, str], list[float]] = {}
        for job in finished:
            if job.started_at and job.finished_at:
                seconds = (job.finished_at - job.started_at).total_seconds()
                grouped.setdefault((job.optimizer, job.state), []).append(seconds)
        for labels, values in sorted(grouped.items()):
            buckets = [(str(b), sum(1 for v in values if v <= b)) for b in DURATION_BUCKETS]
            durations.add_metric(list(labels), buckets, sum(values))
        yield durations

        scores = GaugeMetricFamily(
            "optimizer_last_dev_score", "Dev score of the latest finished job, by program.", labels=["program"]
        )
        latest = next((job for job in finished if job.state == "succeeded" and job.scores), None)
        if latest is not None:
            for key in ("candidate_dev", "champion_dev"):
                if key in latest.scores:
                    scores.add_metric([key.removesuffix("_dev")], float(latest.scores[key]))
        yield scores


# --8<-- [end:collector]


class ApiMetrics:
    """The API's own counters, in a registry of their own (tests create many apps in one process)."""

    def __init__(self, store: JobStore) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(JobsCollector(store))
        self.requests = Counter(
            "optimizer_api_requests", "HTTP requests, by route and status.", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "optimizer_api_request_seconds", "HTTP request latency, by route.", ["route"], registry=self.registry
        )
        self.submitted = Counter(
            "optimizer_jobs_submitted",
            "Jobs created through the API, by optimizer.",
            ["optimizer"],
            registry=self.registry,
        )
