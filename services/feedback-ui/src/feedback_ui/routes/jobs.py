"""The Jobs page: start an optimization, watch it, read its result. Everything goes to the worker's API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, field_validator

from feedback_ui.feedback import KEY_RULES
from feedback_ui.routes.deps import AdminWrite, Annotator
from feedback_ui.templating import is_htmx, render
from qa_core.contracts import DatasetOptions, JobCreate, OptimizerName
from qa_core.web.errors import UpstreamUnavailable

router = APIRouter(prefix="/jobs")
FINISHED = {"succeeded", "failed", "cancelled"}
STOP_POLLING = 286  # htmx stops an `every 2s` trigger when the response has this status


class JobForm(BaseModel):
    optimizer: OptimizerName
    budget: int = Field(ge=1, le=1000)
    include_feedback: bool = False  # an unticked checkbox is simply absent from the form
    train_limit: int | None = Field(None, ge=1, le=10_000)
    dev_limit: int | None = Field(None, ge=1, le=1_000)
    idempotency_key: str = Field(**KEY_RULES)

    @field_validator("train_limit", "dev_limit", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return None if value == "" else value

    def job(self) -> JobCreate:
        dataset = DatasetOptions(
            include_feedback=self.include_feedback, train_limit=self.train_limit, dev_limit=self.dev_limit
        )
        return JobCreate(optimizer=self.optimizer, budget=self.budget, dataset=dataset,
                         idempotency_key=self.idempotency_key)  # fmt: skip


@router.get("", response_class=HTMLResponse)
async def jobs_page(request: Request, user: Annotator) -> Response:
    try:
        jobs, problem = await request.app.state.jobs.list(20), None
    except UpstreamUnavailable as error:
        jobs, problem = [], error.message
    return render(request, "jobs.html", jobs=jobs, problem=problem)


# --8<-- [start:job-routes]
@router.post("")
async def start_job(request: Request, user: AdminWrite, form: Annotated[JobForm, Form()]) -> Response:
    job = await request.app.state.jobs.create(form.job())
    request.session["flash"] = f"Job {job.id[:8]} queued: {job.optimizer}, budget {job.budget}."
    return RedirectResponse("/jobs", status_code=303)


@router.get("/{job_id}/row", response_class=HTMLResponse)
async def job_row(request: Request, user: Annotator, job_id: str) -> Response:
    """The live part of the page: htmx polls it every 2 s until the job has finished."""
    job = await request.app.state.jobs.get(job_id)
    status = STOP_POLLING if job.state in FINISHED and is_htmx(request) else 200
    return render(request, "_job.html", job=job, status_code=status)


# --8<-- [end:job-routes]


@router.post("/{job_id}/cancel")
async def cancel_job(request: Request, user: AdminWrite, job_id: str) -> Response:
    job = await request.app.state.jobs.cancel(job_id)
    request.session["flash"] = f"Job {job.id[:8]} is {job.state}."
    return RedirectResponse("/jobs", status_code=303)
