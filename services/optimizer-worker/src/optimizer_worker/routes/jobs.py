"""`/v1/jobs`: submit, list, read and cancel optimization jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from optimizer_worker import service
from qa_core import contracts

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


# --8<-- [start:routes]
@router.post("", status_code=201, response_model=contracts.JobView)
async def submit_job(body: contracts.JobCreate, request: Request, response: Response) -> contracts.JobView:
    view, created = await service.submit(request.app.state.ctx, body)
    if not created:
        response.status_code = 200  # the idempotency key named an existing job
    return view


@router.get("", response_model=contracts.JobList)
async def list_jobs(
    request: Request,
    state: Annotated[contracts.JobState | None, Query(description="Only jobs in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> contracts.JobList:
    return await service.list_jobs(request.app.state.ctx, state, limit)


@router.get("/{job_id}", response_model=contracts.JobView)
async def get_job(job_id: str, request: Request) -> contracts.JobView:
    return await service.get_job(request.app.state.ctx, job_id)


@router.post("/{job_id}/cancel", response_model=contracts.JobView)
async def cancel_job(job_id: str, request: Request) -> contracts.JobView:
    return await service.cancel_job(request.app.state.ctx, job_id)


# --8<-- [end:routes]
