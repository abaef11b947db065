"""qa-api: the app factory, its lifespan, and the process entry point."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
import dspy
import mlflow
from fastapi import FastAPI

from qa_api import metrics, tracing
from qa_api.mcp_server import build_mcp_server
from qa_api.readiness import readiness_checks
from qa_api.registry_watch import REGISTRY_ERRORS, ProgramRegistry
from qa_api.routes import answer
from qa_api.serving import Answerer
from qa_api.settings import Settings
from qa_api.trace_recorder import TraceRecorder
from qa_core.lm import build_adapter, build_lm, configure_dspy
from qa_core.registry import configure_mlflow
from qa_core.web import server
from qa_core.web.handlers import install_error_handlers
from qa_core.web.health import health_router
from qa_core.web.metrics import metrics_router
from qa_core.web.security import API_CSP
from qa_core.web.stack import add_kit_middleware

logger = logging.getLogger("qa_api")

# --8<-- [start:process-setup]
# Process-wide set-up happens once, at import, in the main thread: DSPy's global settings. Requests
# never call dspy.configure; they use dspy.context with the app's own LM.
_process_settings = Settings()
mlflow.set_tracking_uri(_process_settings.mlflow_tracking_uri)  # never MLflow's default local database
configure_dspy(_process_settings)
# A server does not need DSPy's per-LM call history (10,000 prompts kept per LM); MLflow traces are the record.
# Usage tracking feeds qa_lm_tokens_total (`Prediction.get_lm_usage()`).
dspy.configure(disable_history=True, track_usage=True)
# --8<-- [end:process-setup]


# --8<-- [start:lifespan]
@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    programs: ProgramRegistry = app.state.programs
    app.state.answerer.sampler.recorder.start()
    # Programs and the trace experiment load side by side, within one start-up deadline.
    deadline = asyncio.get_running_loop().time() + settings.registry_startup_timeout_s
    experiment = asyncio.create_task(keep_experiment_ready(app), name="experiment") if settings.use_registry else None
    await programs.start()
    background = [asyncio.create_task(programs.watch(), name="registry-watch")]
    if experiment is not None:
        left = max(0.0, deadline - asyncio.get_running_loop().time())
        with contextlib.suppress(TimeoutError):  # trace from the first request when MLflow is up
            await asyncio.wait_for(asyncio.shield(experiment), left)
        background.append(experiment)
    publish_state(app)
    background.append(asyncio.create_task(publish_state_forever(app), name="state-metrics"))
    logger.info("serving %s (source %s)", programs.state.champion.version, programs.state.source)
    async with contextlib.AsyncExitStack() as stack:
        if app.state.mcp is not None:  # the MCP transport's task group lives as long as the app
            await stack.enter_async_context(app.state.mcp.session_manager.run())
        try:
            yield
        finally:
            await shutdown(app, background)


async def shutdown(app: FastAPI, background: list[asyncio.Task]) -> None:
    """Stop the background tasks, flush traces, close LM connections."""
    # uvicorn has already waited for in-flight requests (up to --timeout-graceful-shutdown).
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await anyio.to_thread.run_sync(app.state.answerer.sampler.recorder.close)  # send the queued traces
    await app.state.answerer.lm.aclose()


# --8<-- [end:lifespan]


async def keep_experiment_ready(app: FastAPI) -> None:
    """Traces need the experiment; create it when MLflow answers, retrying while it does not."""
    recorder: TraceRecorder = app.state.answerer.sampler.recorder
    while not recorder.ready:
        try:
            name = app.state.settings.mlflow_experiment_name
            recorder.experiment_id = await anyio.to_thread.run_sync(tracing.ensure_experiment, name)
        except REGISTRY_ERRORS as error:
            logger.warning("cannot select the MLflow experiment yet (%s); requests are not traced", error)
            await asyncio.sleep(app.state.settings.registry_poll_s)


def publish_state(app: FastAPI) -> None:
    state = app.state.programs.state
    metrics.PROGRAM_INFO.clear()
    metrics.PROGRAM_INFO.labels("champion", state.champion.version).set(1)
    if state.challenger:
        metrics.PROGRAM_INFO.labels("challenger", state.challenger.version).set(1)
    metrics.CHALLENGER_SHARE.set(state.experiment.challenger_share if state.challenger else 0.0)
    metrics.REGISTRY_DEGRADED.set(1 if state.degraded else 0)


async def publish_state_forever(app: FastAPI) -> None:
    while True:
        await asyncio.sleep(1.0)
        publish_state(app)


# --8<-- [start:create-app]
def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # A few retries: trace export shares MLflow's HTTP settings, and dropping traces is worse than a slow poll.
    client = configure_mlflow(settings, max_retries=2) if settings.use_registry else None
    app = FastAPI(title="qa-api", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.programs = ProgramRegistry(settings, client)
    app.state.answerer = Answerer(
        settings,
        app.state.programs,
        build_lm(settings, metrics.TimedLM),
        build_adapter(settings),
        tracing.TraceSampler(
            settings.trace_sampling_ratio,
            TraceRecorder(settings.mlflow_tracking_uri, settings.trace_queue_max, on_outcome=metrics.count_traces),
        ),
    )
    install_error_handlers(app)
    app.include_router(answer.build_router(settings))
    app.include_router(health_router(readiness_checks(app.state.programs)))
    app.include_router(metrics_router())
    app.state.mcp = build_mcp_server(app.state.answerer) if settings.mcp_enabled else None
    if app.state.mcp is not None:
        app.mount(
            "/mcp",
            app.state.mcp.streamable_http_app(
                streamable_http_path="/", stateless_http=True, json_response=True, host=settings.host
            ),
        )
    tracing.setup_opentelemetry(app)
    add_kit_middleware(app, csp=API_CSP, max_body_bytes=settings.max_body_bytes)
    return app


# --8<-- [end:create-app]


def run() -> None:
    """Console entry point: `qa-api`."""
    settings = Settings()
    server.serve(
        create_app,
        settings,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        shutdown_grace_s=settings.shutdown_grace_s,
    )


if __name__ == "__main__":
    run()
