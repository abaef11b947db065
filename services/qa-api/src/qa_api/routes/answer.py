"""The answer endpoints. Thin: parse and validate, call the Answerer, shape the response.

No `from __future__ import annotations` here: FastAPI must see the real types of models built in build_router.
"""

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, create_model

from qa_api.errors import InvalidItem
from qa_api.serving import AnswerContext, Answerer
from qa_api.settings import Settings
from qa_api.streaming import start_stream
from qa_core.contracts import AnswerRequest, AnswerResponse, Variant
from qa_core.web.errors import ServiceError

TRUE = {"1", "true", "yes"}


class BatchItemResult(BaseModel):
    index: int
    ok: bool
    response: AnswerResponse | None = None
    error: dict[str, str] | None = None


class BatchResponse(BaseModel):
    request_id: str
    results: list[BatchItemResult]


def build_router(settings: Settings) -> APIRouter:
    """Routes whose limits come from settings (the models are built here, with those limits)."""
    router = APIRouter(prefix="/v1")
    limited_question = Annotated[str, Field(min_length=1, max_length=settings.max_question_chars)]
    Question = create_model("Question", __base__=AnswerRequest, question=(limited_question, ...))

    class BatchRequest(BaseModel):
        # Items are checked one by one below, so one bad question does not fail the batch.
        questions: list[str] = Field(min_length=1, max_length=settings.max_batch_size)
        session_id: str | None = Field(None, min_length=1, max_length=128)

    def context(request: Request, question: str, session_id: str | None, endpoint: str, headers: dict) -> AnswerContext:
        return AnswerContext(
            question=question,
            request_id=request.state.request_id,
            endpoint=endpoint,
            session_id=session_id or headers["session"],
            forced_variant=headers["force_variant"],
            force_trace=(headers["force_trace"] or "").lower() in TRUE,
            synthetic=(headers["synthetic"] or "").lower() in TRUE,
        )

    async def answer_headers(
        x_session_id: Annotated[str | None, Header(max_length=128)] = None,
        x_force_variant: Annotated[Variant | None, Header()] = None,
        x_force_trace: Annotated[str | None, Header()] = None,
        x_synthetic: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:  # async: FastAPI would run a plain def in a thread, per request
        return {
            "session": x_session_id,
            "force_variant": x_force_variant,
            "force_trace": x_force_trace,
            "synthetic": x_synthetic,
        }

    Headers = Annotated[dict, Depends(answer_headers)]

    # --8<-- [start:answer-route]
    @router.post("/answer", response_model=AnswerResponse)
    async def answer(request: Request, body: Question, headers: Headers) -> Response:  # type: ignore[valid-type]
        answerer: Answerer = request.app.state.answerer
        response = await answerer.answer(context(request, body.question, body.session_id, "answer", headers))
        # Already a validated model: serialize once, skipping FastAPI's second validation pass.
        return Response(response.model_dump_json(), media_type="application/json")

    # --8<-- [end:answer-route]

    @router.post("/answer/stream", response_class=StreamingResponse)
    async def stream(request: Request, body: Question, headers: Headers) -> StreamingResponse:  # type: ignore[valid-type]
        answerer: Answerer = request.app.state.answerer
        events = start_stream(answerer, context(request, body.question, body.session_id, "stream", headers))
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @router.post("/answer/batch", response_model=BatchResponse)
    async def batch(request: Request, headers: Headers, body: Annotated[BatchRequest, Body()]) -> BatchResponse:
        answerer: Answerer = request.app.state.answerer
        contexts: list[AnswerContext | ServiceError] = []
        for i, question in enumerate(body.questions):
            if not question.strip():
                contexts.append(InvalidItem(f"questions.{i}: the question is empty"))
            elif len(question) > settings.max_question_chars:
                contexts.append(InvalidItem(f"questions.{i}: longer than {settings.max_question_chars} characters"))
            else:
                ctx = context(request, question, body.session_id, "batch", headers)
                contexts.append(dataclasses.replace(ctx, request_id=f"{ctx.request_id}-{i}"))
        results = await answerer.batch(contexts)
        return BatchResponse(
            request_id=request.state.request_id,
            results=[
                BatchItemResult(index=i, ok=True, response=r)
                if isinstance(r, AnswerResponse)
                else BatchItemResult(index=i, ok=False, error={"code": r.code, "message": r.message})
                for i, r in enumerate(results)
            ],
        )

    return router
