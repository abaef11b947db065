"""The jobs API: `create_app()` wires settings, the jobs table, the queue and the routes."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from optimizer_worker.errors import DatabaseUnavailable, WorkerError
from optimizer_worker.jobs import JobStore
from optimizer_worker.metrics import ApiMetrics
from optimizer_worker.queue import create_celery, register_tasks
from optimizer_worker.routes import health, jobs
from optimizer_worker.service import ApiContext
from optimizer_worker.settings import Settings
from qa_core import contracts

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str, request: Request, **extra: object) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    body = {"error": {"code": code, "message": message, "request_id": request_id, **extra}}
    return JSONResponse(body, status_code=status, headers={contracts.HEADER_REQUEST_ID: request_id or ""})


# --8<-- [start:errors]
def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WorkerError)
    async def _domain(request: Request, exc: WorkerError) -> JSONResponse:
        return _error(exc.status, exc.code, str(exc), request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"] if p != "body"), "problem": err["msg"]}
            for err in exc.errors()
        ]
        message = "; ".join(f"{f['field'] or 'body'}: {f['problem']}" for f in fields)
        return _error(422, "validation_error", message, request, fields=fields)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail), request)

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("jobs database unavailable (request %s): %s", getattr(request.state, "request_id", None), exc.orig)
        return _error(503, DatabaseUnavailable.code, "the jobs database is unavailable; try again", request)


# --8<-- [end:errors]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = JobStore(settings.database_url)
        celery = create_celery(settings)
        register_tasks(celery)
        app.state.ctx = ApiContext(
            settings, store, celery, ApiMetrics(store), anyio.CapacityLimiter(settings.api_db_threads)
        )
        log.info(
            "jobs API ready: database %s, broker %s",
            settings.database_url.split("@")[-1],
            settings.broker_url.split("@")[-1],
        )
        yield
        celery.close()

    app = FastAPI(title="optimizer-worker", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)

    @app.middleware("http")
    async def request_context(request: Request, call_next):  # type: ignore[no-untyped-def]
        request.state.request_id = request.headers.get(contracts.HEADER_REQUEST_ID) or uuid.uuid4().hex
        started = time.perf_counter()
        response = await call_next(request)
        response.headers[contracts.HEADER_REQUEST_ID] = request.state.request_id
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics = request.app.state.ctx.metrics
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        return response

    app.include_router(jobs.router)
    app.include_router(health.router)
    return app


def serve() -> None:
    """`optimizer-worker-api`: the jobs API under uvicorn."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")
