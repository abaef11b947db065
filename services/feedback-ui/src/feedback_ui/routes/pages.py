"""The annotators' pages: Ask, Review queue, Compare. Each works as plain HTML forms, and htmx swaps
only the changed part when JavaScript is on."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from feedback_ui import answers, compare
from feedback_ui.feedback import KEY_RULES, FeedbackIn, blank_to_none
from feedback_ui.routes.deps import Annotator, AnnotatorWrite
from feedback_ui.templating import is_htmx, render
from feedback_ui.traces import TRACE_ID_PATTERN, MlflowUnavailable
from qa_core.web.errors import UpstreamUnavailable

router = APIRouter()
Question = Annotated[str, Form(min_length=1, max_length=1000, description="The question, in plain text.")]


def qa_session(request: Request) -> str:
    return request.session.get("qa_session") or f"ui-{request.app.state.auth.current(request).username}"


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/ask", status_code=303)


# --8<-- [start:ask-routes]
@router.get("/ask", response_class=HTMLResponse)
async def ask_page(request: Request, user: Annotator) -> Response:
    return render(request, "ask.html")


@router.post("/ask", response_class=HTMLResponse)
async def ask(request: Request, user: AnnotatorWrite, question: Question) -> Response:
    state = request.app.state
    answer = await answers.ask(state.qa, state.db, question.strip(), qa_session(request))
    template = "_answer.html" if is_htmx(request) else "ask.html"
    return render(request, template, answer=answer, question=question)


@router.post("/feedback", response_class=HTMLResponse)
async def rate(request: Request, user: AnnotatorWrite, body: Annotated[FeedbackIn, Form()]) -> Response:
    submitted = await request.app.state.feedback.submit_feedback(user.username, body)
    template = "_saved.html" if is_htmx(request) else "ask.html"
    return render(request, template, saved=submitted.view, rating=body.rating, corrected=bool(body.correction))


# --8<-- [end:ask-routes]


async def _next_review_item(request: Request, user_id: str, **context: object) -> Response:
    try:
        answer, waiting = await request.app.state.review.next(user_id)
    except MlflowUnavailable as error:
        raise UpstreamUnavailable(
            "MLflow is unavailable, so the review queue cannot be loaded. Ratings already given are safe."
        ) from error
    template = "_review_item.html" if is_htmx(request) else "review.html"
    return render(request, template, answer=answer, waiting=waiting, **context)


@router.get("/review", response_class=HTMLResponse)
async def review_page(request: Request, user: Annotator) -> Response:
    return await _next_review_item(request, user.username)


@router.post("/review/rate", response_class=HTMLResponse)
async def review_rate(request: Request, user: AnnotatorWrite, body: Annotated[FeedbackIn, Form()]) -> Response:
    submitted = await request.app.state.feedback.submit_feedback(user.username, body)
    return await _next_review_item(request, user.username, saved=submitted.view, rating=body.rating)


@router.post("/review/skip", response_class=HTMLResponse)
async def review_skip(
    request: Request, user: AnnotatorWrite, trace_id: Annotated[str, Form(pattern=TRACE_ID_PATTERN)]
) -> Response:
    await request.app.state.review.skip(user.username, trace_id)
    return await _next_review_item(request, user.username, skipped=True)


@router.get("/compare", response_class=HTMLResponse)
async def compare_page(request: Request, user: Annotator) -> Response:
    return render(request, "compare.html")


# --8<-- [start:compare-routes]
@router.post("/compare", response_class=HTMLResponse)
async def compare_start(request: Request, user: AnnotatorWrite, question: Question) -> Response:
    state = request.app.state
    side = await compare.start(state.qa, state.db, user.username, question.strip(), qa_session(request))
    template = "_compare.html" if is_htmx(request) else "compare.html"
    return render(request, template, side=side, question=question)


@router.post("/compare/{comparison_id}/choice", response_class=HTMLResponse)
async def compare_choice(
    request: Request,
    user: AnnotatorWrite,
    comparison_id: str,
    choice: Annotated[Literal["left", "right", "tie"], Form()],
    idempotency_key: Annotated[str, Form(**KEY_RULES)],
    reason: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    state = request.app.state
    submitted = await compare.decide(
        state.feedback, state.db, user.username, comparison_id, choice, blank_to_none(reason), idempotency_key
    )
    side = await compare.load(state.db, user.username, comparison_id)
    template = "_compare.html" if is_htmx(request) else "compare.html"
    return render(request, template, side=side, decided=choice, saved=submitted.view)


# --8<-- [end:compare-routes]
