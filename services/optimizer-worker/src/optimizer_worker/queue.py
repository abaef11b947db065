"""The Celery app: one task, `run_job`, delivered at least once and acknowledged only after it ends.

Broker: Redis in compose; kombu's SQLAlchemy transport on a SQLite file in embedded mode. The jobs
table, not the broker, says whether a job may run (see `jobs.JobStore.claim`), so a message that
arrives twice is harmless.
"""

from __future__ import annotations

import logging
import os
import socket
from functools import lru_cache
from typing import Any

from celery import Celery, bootsteps, signals
from kombu import Queue

from optimizer_worker.jobs import JobStore
from optimizer_worker.settings import Settings

log = logging.getLogger(__name__)
TASK_NAME = "optimizer_worker.run_job"


# --8<-- [start:celery-app]
def create_celery(settings: Settings) -> Celery:
    app = Celery("optimizer_worker", broker=settings.broker_url)
    transport_options: dict[str, Any] = {}
    if settings.broker_url.startswith(("redis://", "rediss://")):
        transport_options["visibility_timeout"] = settings.broker_visibility_timeout_s
    app.conf.update(
        task_acks_late=True,  # acknowledge after the job ends, so a dead worker's job is delivered again
        task_reject_on_worker_lost=True,  # a killed child puts its message back instead of acking it
        worker_prefetch_multiplier=1,  # a long job must not hold other jobs hostage in its prefetch buffer
        worker_max_tasks_per_child=1,  # one compile per process: MLflow's DSPy callback keeps per-compile state
        worker_concurrency=1,
        task_ignore_result=True,  # results live in the jobs table
        task_default_queue=settings.queue_name,
        task_queues=[Queue(settings.queue_name)],
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_polling_interval=1.0,  # SQLAlchemy transport: how often an idle worker looks for a message
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    app.conf.optimizer_settings = settings
    app.steps["worker"].add(Maintenance)
    return app


# --8<-- [end:celery-app]


@lru_cache(maxsize=1)
def celery_app() -> Celery:
    """The app of this process, built from the environment (`celery -A optimizer_worker.queue:app`)."""
    app = create_celery(Settings())
    register_tasks(app)
    return app


def settings_of(app: Celery) -> Settings:
    return app.conf.optimizer_settings


# --8<-- [start:enqueue]
def enqueue(app: Celery, store: JobStore, job_id: str) -> None:
    """Send the job's message; the jobs table already holds the job, so sending twice is safe."""
    app.send_task(TASK_NAME, args=[job_id], queue=settings_of(app).queue_name)
    store.mark_enqueued(job_id)


# --8<-- [end:enqueue]


# --8<-- [start:task]
def run_job(app: Celery, job_id: str) -> str:
    """The task body, in a fresh child process. Returns what happened, for the worker log."""
    from optimizer_worker import pipeline

    settings = settings_of(app)
    store = JobStore(settings.database_url)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    job = store.claim(job_id, owner, settings.lease_timeout_s, settings.max_attempts)
    if job is None:
        # Finished, cancelled, alive in another worker, or out of attempts: a duplicate; ack and drop it.
        return "skipped"
    pipeline.prepare_process(settings)
    return pipeline.execute(settings, store, job, owner)


# --8<-- [end:task]


def register_tasks(app: Celery) -> None:
    @app.task(name=TASK_NAME, bind=True)
    def _run_job(task: Any, job_id: str) -> str:
        return run_job(task.app, job_id)


# --8<-- [start:maintenance]
class Maintenance(bootsteps.StartStopStep):
    """A timer in the worker's main process: recover jobs of dead workers, and run the auto-trigger.

    It runs once as the worker starts, so a worker that replaces a killed one picks up its job.
    """

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        self.timer_ref = None

    def start(self, worker: Any) -> None:
        settings = settings_of(worker.app)
        self.tick(worker.app)
        self.timer_ref = worker.timer.call_repeatedly(settings.recovery_interval_s, self.tick, (worker.app,))

    def stop(self, worker: Any) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()

    def tick(self, app: Celery) -> None:
        from optimizer_worker import autotrigger, recovery

        settings = settings_of(app)
        store = JobStore(settings.database_url)
        try:
            recovery.recover(app, store, settings)
            autotrigger.maybe_trigger(app, store, settings)
        except Exception:
            # The next tick tries again; a database or MLflow outage must not stop the consumer.
            log.exception("maintenance tick failed")


# --8<-- [end:maintenance]


@signals.worker_process_init.connect
def _quiet_child(**_: Any) -> None:
    # Each child is one job; its logs go to the worker's log through the inherited handlers.
    logging.getLogger("LiteLLM").setLevel(logging.WARNING)


def __getattr__(name: str) -> Any:
    # `celery -A optimizer_worker.queue:app` finds the app here; importing the module alone reads no settings.
    if name == "app":
        return celery_app()
    raise AttributeError(name)
