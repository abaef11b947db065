"""Enqueue a job by itself once enough new human ratings arrived since the last job (off when N is 0)."""

from __future__ import annotations

import logging

from celery import Celery

from optimizer_worker import trainset
from optimizer_worker.jobs import JobStore
from optimizer_worker.queue import enqueue
from optimizer_worker.settings import Settings
from qa_core import contracts, registry

log = logging.getLogger(__name__)


# --8<-- [start:auto-trigger]
def new_feedback_count(settings: Settings, since_ms: int | None) -> tuple[int, int]:
    """Rated or corrected traces newer than `since_ms`, and the newest one's time."""
    registry.configure_mlflow(settings)
    items, _ = trainset.read_feedback(settings.mlflow_experiment_name, settings.feedback_max_traces)
    fresh = [item.at_ms for item in items if since_ms is None or item.at_ms > since_ms]
    return len(fresh), max(fresh, default=0)


def maybe_trigger(app: Celery, store: JobStore, settings: Settings) -> str | None:
    """The id of the job it enqueued, if any. One job at a time: nothing while a job is queued or running."""
    threshold = settings.auto_trigger_min_ratings
    if threshold <= 0 or store.active_count() > 0:
        return None
    last = store.last_created_at()
    count, newest_ms = new_feedback_count(settings, int(last.timestamp() * 1000) if last else None)
    if count < threshold:
        return None
    request = contracts.JobCreate(
        optimizer=settings.auto_trigger_optimizer,
        budget=settings.auto_trigger_budget,
        # The newest rating names the job: two workers ticking at once create it once.
        idempotency_key=f"auto-{newest_ms}",
    )
    job, created = store.create(request, trigger="auto")
    if created:
        log.info("auto-trigger: %d new rated traces since the last job; enqueued job %s", count, job.id)
        enqueue(app, store, job.id)
    return job.id if created else None


# --8<-- [end:auto-trigger]
