"""The JSON API for clients that are not the web page. Same checks and same path as the forms."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from feedback_ui.feedback import FeedbackIn, PreferenceIn, SubmissionView, Submitted
from feedback_ui.outbox import oldest_pending, status_counts
from feedback_ui.routes.deps import Admin, Annotator, AnnotatorWrite
from qa_core.database import utcnow

router = APIRouter(prefix="/api", tags=["api"])


def _respond(response: Response, submitted: Submitted) -> SubmissionView:
    # 202: stored and queued for MLflow; 200: this idempotency key was seen before, nothing new stored.
    response.status_code = 202 if submitted.created else 200
    return submitted.view


# --8<-- [start:api-feedback]
@router.post("/feedback", response_model=SubmissionView, status_code=202)
async def post_feedback(body: FeedbackIn, user: AnnotatorWrite, request: Request, response: Response) -> SubmissionView:
    return _respond(response, await request.app.state.feedback.submit_feedback(user.username, body))


# --8<-- [end:api-feedback]


@router.post("/preferences", response_model=SubmissionView, status_code=202)
async def post_preference(
    body: PreferenceIn, user: AnnotatorWrite, request: Request, response: Response
) -> SubmissionView:
    return _respond(response, await request.app.state.feedback.submit_preference(user.username, body))


@router.get("/feedback/{submission_id}", response_model=SubmissionView)
@router.get("/preferences/{submission_id}", response_model=SubmissionView)
async def get_submission(submission_id: str, user: Annotator, request: Request) -> SubmissionView:
    """A submission and its delivery state; your own, or anyone's for an admin."""
    return await request.app.state.feedback.view(submission_id, None if user.can("admin") else user.username)


@router.get("/outbox")
async def outbox_state(user: Admin, request: Request) -> dict:
    """How much feedback is waiting for MLflow, and why."""
    state = request.app.state
    counts = await state.db.run(status_counts)
    oldest = await state.db.run(oldest_pending)
    return {
        "pending": counts.get("pending", 0),
        "delivered": counts.get("delivered", 0),
        "failed": counts.get("failed", 0),
        "oldest_pending_age_s": (utcnow() - oldest).total_seconds() if oldest else None,
        "mlflow_failures_in_a_row": state.outbox.mlflow_failures,
        "last_error": state.outbox.last_error,
    }
