"""What the jobs API does, without HTTP: validate, store, enqueue, read. Blocking calls run in a bounded thread pool."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from celery import Celery
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from optimizer_worker.db import engine_for
from optimizer_worker.errors import DatasetUnavailable, QueueUnavailable
from optimizer_worker.jobs import JobStore, to_view
from optimizer_worker.metrics import ApiMetrics
from optimizer_worker.optimizers import validate_budget
from optimizer_worker.queue import enqueue
from optimizer_worker.settings import Settings
from qa_core import contracts
from qa_core.dataset import DatasetError, read_pairs
from qa_core.web.health import CheckResult, ReadinessCheck

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ApiContext:
    settings: Settings
    store: JobStore
    celery: Celery
    metrics: ApiMetrics
    # Database and broker calls are blocking; this bounds how many threads they may hold at once.
    blocking_slots: anyio.CapacityLimiter


async def in_thread(ctx: ApiContext, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=ctx.blocking_slots)


# --8<-- [start:submit]
def check_dataset(settings: Settings, include_feedback: bool) -> None:
    """Refuse a job that cannot start: the dev split must be readable, and so must train unless feedback may fill it."""
    try:
        read_pairs(settings.dataset_dir / "dev.jsonl")
    except DatasetError as exc:
        raise DatasetUnavailable(f"dataset: the dev split is unusable: {exc}") from exc
    if not include_feedback:
        try:
            read_pairs(settings.dataset_dir / "train.jsonl")
        except DatasetError as exc:
            raise DatasetUnavailable(f"dataset: the train split is unusable and feedback is off: {exc}") from exc


def _submit(ctx: ApiContext, body: contracts.JobCreate) -> tuple[contracts.JobView, bool]:
    validate_budget(ctx.settings, body.optimizer, body.budget)
    check_dataset(ctx.settings, body.dataset.include_feedback)
    job, created = ctx.store.create(body)
    if job.state == "queued" and job.enqueued_at is None:
        # New, or an earlier request stored it but died before sending the message.
        try:
            enqueue(ctx.celery, ctx.store, job.id)
        except BrokerError as exc:
            ctx.store.fail_unclaimed(job.id, f"queue_unavailable: could not enqueue: {exc}")
            raise QueueUnavailable(f"the job queue is unreachable: {exc}") from exc
    if created:
        ctx.metrics.submitted.labels(body.optimizer).inc()
    return to_view(ctx.store.get(job.id), ctx.settings.run_link_base), created


async def submit(ctx: ApiContext, body: contracts.JobCreate) -> tuple[contracts.JobView, bool]:
    return await in_thread(ctx, _submit, ctx, body)


# --8<-- [end:submit]


async def list_jobs(ctx: ApiContext, state: str | None, limit: int) -> contracts.JobList:
    jobs = await in_thread(ctx, ctx.store.list, state, limit)
    return contracts.JobList(jobs=[to_view(job, ctx.settings.run_link_base) for job in jobs])


async def get_job(ctx: ApiContext, job_id: str) -> contracts.JobView:
    return to_view(await in_thread(ctx, ctx.store.get, job_id), ctx.settings.run_link_base)


async def cancel_job(ctx: ApiContext, job_id: str) -> contracts.JobView:
    return to_view(await in_thread(ctx, ctx.store.cancel, job_id), ctx.settings.run_link_base)


def _check_database(url: str) -> CheckResult:
    try:
        with engine_for(url).connect() as connection:
            connection.execute(text("SELECT count(*) FROM jobs"))
        return CheckResult(True, "the jobs table answers")
    except OperationalError as exc:
        return CheckResult(False, f"unavailable: {str(exc).splitlines()[0][:200]}")


def _check_broker(app: Celery) -> CheckResult:
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return CheckResult(True, "the broker answers")
    except (BrokerError, OSError) as exc:
        return CheckResult(False, f"unavailable: {exc}")


def readiness_checks(context: Callable[[], ApiContext]) -> list[ReadinessCheck]:
    """The jobs table and the broker; `context` gives the API's context once its lifespan built it."""

    async def database() -> CheckResult:
        ctx = context()
        return await in_thread(ctx, _check_database, ctx.settings.database_url)

    async def queue() -> CheckResult:
        ctx = context()
        return await in_thread(ctx, _check_broker, ctx.celery)

    return [ReadinessCheck("database", database), ReadinessCheck("queue", queue)]
