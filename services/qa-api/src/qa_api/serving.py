"""Answering one question: pick a variant, take an LM slot, run the program under a deadline, trace it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import dspy
from dspy.utils.exceptions import AdapterParseError, LMError

from qa_api import metrics
from qa_api.errors import (
    Overloaded,
    ProgramNotLoaded,
    RequestTimedOut,
    VariantUnavailable,
    from_lm_error,
)
from qa_api.registry_watch import LoadedProgram, ProgramRegistry, ServingState
from qa_api.routing import choose_variant
from qa_api.settings import Settings
from qa_api.trace_recorder import PendingTrace
from qa_api.tracing import TraceSampler, record_answer, request_trace
from qa_core import contracts
from qa_core.contracts import AnswerResponse, Citation, Variant
from qa_core.web.errors import ServiceError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AnswerContext:
    """One question and everything the caller said about it."""

    question: str
    request_id: str
    endpoint: str
    session_id: str | None = None
    forced_variant: Variant | None = None
    force_trace: bool = False
    synthetic: bool = False


# --8<-- [start:limiter]
class InflightLimiter:
    """A hard cap on questions in progress. Past it we refuse at once (429 + Retry-After), because a
    queue in front of a slow LM only turns overload into timeouts."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit, self.retry_after_s, self.inflight = limit, retry_after_s, 0
        metrics.INFLIGHT_LIMIT.set(limit)

    def acquire(self) -> None:
        if self.inflight >= self.limit:
            metrics.ERRORS.labels("overloaded").inc()
            raise Overloaded(f"{self.limit} questions are already in progress; retry shortly.", self.retry_after_s)
        self.inflight += 1
        metrics.INFLIGHT.inc()

    def release(self) -> None:
        self.inflight -= 1
        metrics.INFLIGHT.dec()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


# --8<-- [end:limiter]


class Answerer:
    """The serving core shared by the single, streaming and batch endpoints."""

    def __init__(
        self, settings: Settings, programs: ProgramRegistry, lm: dspy.LM, adapter: dspy.Adapter, sampler: TraceSampler
    ) -> None:
        self.settings, self.programs, self.lm, self.adapter, self.sampler = settings, programs, lm, adapter, sampler
        self.limiter = InflightLimiter(settings.max_inflight, settings.retry_after_s)

    # --8<-- [start:pick]
    def pick(self, ctx: AnswerContext) -> tuple[ServingState, LoadedProgram]:
        """Take one serving state for the whole request, so a swap cannot mix versions inside it."""
        state = self.programs.state
        if state is None:
            raise ProgramNotLoaded("No program is loaded yet.", self.settings.retry_after_s)
        if ctx.forced_variant == contracts.CHALLENGER_ALIAS and state.challenger is None:
            raise VariantUnavailable("No challenger is registered right now.")
        variant = choose_variant(
            ctx.session_id,
            state.experiment.salt,
            state.experiment.challenger_share,
            state.challenger is not None,
            ctx.forced_variant,
        )
        return state, state.program_for(variant)

    # --8<-- [end:pick]

    def trace(
        self, ctx: AnswerContext, loaded: LoadedProgram
    ) -> contextlib.AbstractContextManager[PendingTrace | None]:
        """The request's trace if the sampler picks it (or the caller forces it), else a context of None."""
        traced = self.sampler.should_trace(ctx.force_trace)
        tags = self.trace_tags(ctx, loaded)
        return request_trace(self.sampler.recorder, traced, ctx.endpoint, ctx.question, tags, ctx.session_id)

    def trace_tags(self, ctx: AnswerContext, loaded: LoadedProgram) -> dict[str, str]:
        tags = {
            contracts.TRACE_TAG_VARIANT: loaded.variant,
            contracts.TRACE_TAG_MODEL_VERSION: loaded.version,
            contracts.TRACE_TAG_REQUEST_ID: ctx.request_id,
            contracts.TRACE_TAG_SYNTHETIC: "true" if ctx.synthetic else "false",
        }
        if ctx.session_id:
            tags[contracts.TRACE_TAG_SESSION_ID] = ctx.session_id
        return tags

    # --8<-- [start:answer]
    async def answer(self, ctx: AnswerContext) -> AnswerResponse:
        _, loaded = self.pick(ctx)
        started = time.perf_counter()
        status = "error"
        with self.limiter.slot():
            try:
                with self.trace(ctx, loaded) as trace, dspy.context(lm=self.lm, adapter=self.adapter):
                    metrics.current_variant.set(loaded.variant)
                    prediction = await self.run(loaded, ctx.question)
                    response = self.response(prediction, loaded, ctx, trace.trace_id if trace else None)
                    if trace is not None:
                        outputs = response.model_dump(include={"answer", "citations", "model_version"})
                        record_answer(trace, prediction, outputs)
                status = "ok"
                return response
            finally:
                metrics.observe_request(
                    ctx.endpoint, loaded.variant, status, ctx.synthetic, time.perf_counter() - started
                )

    async def run(self, loaded: LoadedProgram, question: str) -> dspy.Prediction:
        """The program call itself, under the request deadline, with LM failures given a meaning."""
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                prediction = await loaded.program.acall(question=question)
        except TimeoutError:
            metrics.ERRORS.labels("timeout").inc()
            raise RequestTimedOut(f"No answer within {self.settings.request_timeout_s:g} s.") from None
        except (LMError, AdapterParseError) as error:
            mapped = from_lm_error(error, self.settings.retry_after_s)
            metrics.ERRORS.labels(mapped.code).inc()
            raise mapped from error
        metrics.record_usage(loaded.variant, prediction.get_lm_usage() or {})
        return prediction

    # --8<-- [end:answer]

    @staticmethod
    def response(
        prediction: dspy.Prediction, loaded: LoadedProgram, ctx: AnswerContext, trace_id: str | None
    ) -> AnswerResponse:
        by_id = {p.id: p for p in prediction.passages}
        return AnswerResponse(
            answer=prediction.answer,
            citations=[
                Citation(id=c, doc_id=by_id[c].doc_id, title=by_id[c].title, text=by_id[c].text)
                for c in prediction.citations
                if c in by_id
            ],
            variant=loaded.variant,
            model_version=loaded.version,
            trace_id=trace_id,
            request_id=ctx.request_id,
        )

    # --8<-- [start:batch]
    async def batch(self, contexts: list[AnswerContext | ServiceError]) -> list[AnswerResponse | ServiceError]:
        """Answer many questions with bounded concurrency; one failure never fails the others."""
        gate = asyncio.Semaphore(self.settings.batch_concurrency)

        async def one(ctx: AnswerContext | ServiceError) -> AnswerResponse | ServiceError:
            if isinstance(ctx, ServiceError):
                return ctx  # the item was invalid; report it in place
            async with gate:
                try:
                    return await self.answer(ctx)
                except ServiceError as error:
                    return error

        return list(await asyncio.gather(*(one(ctx) for ctx in contexts)))

    # --8<-- [end:batch]
