"""Answers people see: ask qa-api, and remember what was shown so a rating can refer to it by trace id."""

from __future__ import annotations

from sqlalchemy.orm import Session

from feedback_ui.db import Database
from feedback_ui.models import Answer
from feedback_ui.qa_client import QaClient
from feedback_ui.traces import TraceView
from qa_core.contracts import AnswerResponse, Variant
from qa_core.web.errors import UpstreamUnavailable


def remember(session: Session, answer: Answer) -> None:
    session.merge(answer)


def from_response(response: AnswerResponse, question: str, session_id: str, origin: str) -> Answer:
    if response.trace_id is None:
        raise UpstreamUnavailable(
            "qa-api answered but could not trace the answer (MLflow is unavailable to it), so it cannot be "
            "rated. Try again in a minute."
        )
    return Answer(
        trace_id=response.trace_id, question=question, answer=response.answer,
        citations=[c.model_dump() for c in response.citations], variant=response.variant,
        model_version=response.model_version, request_id=response.request_id, session_id=session_id, origin=origin,
    )  # fmt: skip


def from_trace(view: TraceView) -> Answer:
    return Answer(
        trace_id=view.trace_id, question=view.question, answer=view.answer, citations=view.citations,
        variant=view.variant, model_version=view.model_version, session_id=view.session_id, origin="review",
    )  # fmt: skip


# --8<-- [start:ask]
async def ask(qa: QaClient, db: Database, question: str, session_id: str, variant: Variant | None = None) -> Answer:
    """Ask qa-api (traced, sticky by session) and store what was shown before the page shows it."""
    response = await qa.ask(question, session_id, variant)
    answer = from_response(response, question, session_id, "ask" if variant is None else "compare")
    await db.run(lambda s: remember(s, answer))
    return answer


# --8<-- [end:ask]
