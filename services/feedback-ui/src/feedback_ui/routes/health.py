"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from feedback_ui.outbox import status_counts

router = APIRouter()


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


# --8<-- [start:ready]
@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    """Ready when the database answers and the outbox loop runs. MLflow being down is not unready:
    feedback is still accepted and kept; the outbox state says how much is waiting."""
    state = request.app.state
    try:
        counts = await state.db.run(status_counts)
    except SQLAlchemyError as error:
        return JSONResponse({"status": "unavailable", "problem": f"database: {type(error).__name__}"}, 503)
    task = state.outbox_task
    if task is None or task.done():
        return JSONResponse({"status": "unavailable", "problem": "the outbox loop is not running"}, 503)
    outbox = state.outbox
    return JSONResponse({
        "status": "degraded" if outbox.mlflow_failures else "ready",
        "outbox": {"pending": counts.get("pending", 0), "delivered": counts.get("delivered", 0),
                   "failed": counts.get("failed", 0), "mlflow_failures_in_a_row": outbox.mlflow_failures,
                   "last_error": outbox.last_error},
    })  # fmt: skip


# --8<-- [end:ready]


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
