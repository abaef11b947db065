"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter()


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


# --8<-- [start:ready]
@router.get("/health/ready")
async def ready(request: Request) -> JSONResponse:
    """Ready once a program is loaded. Degraded (still 200) while MLflow cannot be read."""
    state = request.app.state.programs.state
    if state is None:
        return JSONResponse({"status": "starting", "ready": False}, status_code=503)
    return JSONResponse(
        {
            "status": "degraded" if state.degraded else "ready",
            "ready": True,
            "degraded": state.degraded,
            "problem": state.problem,
            "source": state.source,
            "champion": state.champion.version,
            "challenger": state.challenger.version if state.challenger else None,
            "challenger_share": state.experiment.challenger_share,
        }
    )


# --8<-- [end:ready]


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
