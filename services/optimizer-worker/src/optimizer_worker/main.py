"""The jobs API: `create_app()` wires settings, the jobs table, the queue and the routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from optimizer_worker.jobs import JobStore
from optimizer_worker.metrics import ApiMetrics
from optimizer_worker.queue import create_celery, register_tasks
from optimizer_worker.routes import jobs
from optimizer_worker.service import ApiContext, readiness_checks
from optimizer_worker.settings import Settings
from qa_core.web import server
from qa_core.web.handlers import install_error_handlers
from qa_core.web.health import health_router
from qa_core.web.metrics import metrics_router
from qa_core.web.security import API_CSP
from qa_core.web.stack import add_kit_middleware

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    store = JobStore(settings.database_url)
    metrics = ApiMetrics(store)
    # Database and broker calls are blocking; this bounds the threads they hold, scrapes of /metrics included.
    blocking_slots = anyio.CapacityLimiter(settings.api_db_threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        celery = create_celery(settings)
        register_tasks(celery)
        app.state.ctx = ApiContext(settings, store, celery, metrics, blocking_slots)
        log.info(
            "jobs API ready: database %s, broker %s",
            settings.database_url.split("@")[-1],
            settings.broker_url.split("@")[-1],
        )
        yield
        celery.close()

    app = FastAPI(title="optimizer-worker", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(jobs.router)
    app.include_router(health_router(readiness_checks(lambda: app.state.ctx)))
    app.include_router(metrics_router(metrics.registry, blocking_slots))
    add_kit_middleware(app, csp=API_CSP, request_metrics=(metrics.requests, metrics.latency))
    return app


def serve() -> None:
    """`optimizer-worker-api`: the jobs API under uvicorn."""
    settings = Settings()
    server.serve(create_app, settings, host=settings.api_host, port=settings.api_port)
