"""feedback-ui: the app factory, its lifespan, and the console entry point."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from feedback_ui import metrics
from feedback_ui.auth import Authenticator, hash_password, token_digest
from feedback_ui.db import Database
from feedback_ui.experiment import Experiment
from feedback_ui.feedback import FeedbackService
from feedback_ui.handlers import DATABASE_DOWN, respond
from feedback_ui.jobs_client import JobsClient
from feedback_ui.outbox import Outbox
from feedback_ui.qa_client import QaClient
from feedback_ui.readiness import readiness_checks
from feedback_ui.review import ReviewQueue
from feedback_ui.routes import api, auth, experiment, jobs, pages
from feedback_ui.settings import Settings
from feedback_ui.traces import TraceStore
from qa_core.registry import configure_mlflow
from qa_core.web import server
from qa_core.web.handlers import install_error_handlers
from qa_core.web.health import health_router
from qa_core.web.metrics import metrics_router
from qa_core.web.stack import add_kit_middleware
from qa_core.web.upstream import propagate_request_id

logger = logging.getLogger("feedback_ui")
STATIC = Path(__file__).parent / "static"
OUTBOX_STOP_S = 20.0  # a round makes at most a few MLflow calls per trace, each bounded by MLFLOW_TIMEOUT_S
# Scripts and styles only from this origin (htmx is vendored), no framing, forms post only here.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


# --8<-- [start:lifespan]
@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = app.state
    state.outbox_task = asyncio.create_task(state.outbox.run_forever(), name="outbox")
    state.outbox_task.add_done_callback(_report_death)
    logger.info(
        "feedback-ui ready: qa-api %s, MLflow %s", state.settings.qa_api_url, state.settings.mlflow_tracking_uri
    )
    try:
        yield
    finally:
        state.outbox.stop()  # let the round in progress record what it delivered
        try:
            await asyncio.wait_for(asyncio.shield(state.outbox_task), OUTBOX_STOP_S)
        except TimeoutError:
            logger.warning("the outbox did not stop within %s s; its claims expire with their lease", OUTBOX_STOP_S)
            state.outbox_task.cancel()
            await asyncio.gather(state.outbox_task, return_exceptions=True)
        await state.http.aclose()


def _report_death(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the outbox loop died; /health/ready now fails", exc_info=task.exception())


# --8<-- [end:lifespan]


# --8<-- [start:create-app]
def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    mlflow_client = configure_mlflow(settings)  # no MLflow-level retries: the outbox does its own
    db = Database(settings.database_url, settings.db_threads)
    traces = TraceStore(settings.mlflow_tracking_uri, settings.mlflow_experiment_name)
    # Every call made while serving a page carries its request id, so qa-api's logs and traces match ours.
    http = httpx.AsyncClient(timeout=10.0, event_hooks={"request": [propagate_request_id]})
    outbox = Outbox(settings, db, traces)

    app = FastAPI(title="feedback-ui", version="0.1.0", lifespan=lifespan, docs_url="/api/docs",
                  openapi_url="/api/openapi.json", redoc_url=None)  # fmt: skip
    state = app.state
    state.settings, state.db, state.http, state.outbox, state.outbox_task = settings, db, http, outbox, None
    state.auth = Authenticator(settings, db)
    state.feedback = FeedbackService(db, traces, outbox.wake, settings.trace_lookup_wait_s)
    state.qa = QaClient(http, settings.qa_api_url, settings.qa_api_timeout_s)
    state.jobs = JobsClient(http, settings.worker_api_url)
    state.review = ReviewQueue(settings, db, traces)
    state.experiment = Experiment(settings, db, mlflow_client, http)

    install_error_handlers(app, respond=respond, database_message=DATABASE_DOWN)
    for module in (auth, pages, experiment, jobs, api):
        app.include_router(module.router)
    app.include_router(health_router(readiness_checks(app)))
    app.include_router(metrics_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.session_secret.get_secret_value(),  # type: ignore[union-attr]
        session_cookie="feedback_ui_session",
        max_age=settings.session_max_age_s,
        same_site=settings.cookie_samesite,
        https_only=bool(settings.cookie_secure),
    )  # signed (itsdangerous), always HttpOnly
    add_kit_middleware(app, csp=CSP, request_metrics=(metrics.REQUESTS, metrics.LATENCY))
    return app


# --8<-- [end:create-app]


def main(argv: list[str] | None = None) -> None:
    """Console entry point: `feedback-ui` serves; `feedback-ui hash-password` and `feedback-ui new-token`
    make the values USERS and API_TOKENS expect."""
    parser = argparse.ArgumentParser(prog="feedback-ui", description="The human feedback web app.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the web app (the default)")
    commands.add_parser("hash-password", help="read a password (stdin or prompt), print its argon2 hash")
    token = commands.add_parser("new-token", help="make an API token; print it once, and its USERS-style entry")
    token.add_argument("name")
    token.add_argument("--role", choices=["annotator", "admin"], default="annotator")
    args = parser.parse_args(argv)
    if args.command == "hash-password":
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("Password: ")
        if not password:
            parser.error("an empty password is not a password")
        print(hash_password(password))
    elif args.command == "new-token":
        value = secrets.token_urlsafe(32)
        print(f"token (give it to the client, it is not stored): {value}")
        entry = {"name": args.name, "token_sha256": token_digest(value), "role": args.role}
        print(f"API_TOKENS entry: {json.dumps(entry)}")
    else:
        settings = Settings()
        server.serve(create_app, settings, host=settings.host, port=settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
