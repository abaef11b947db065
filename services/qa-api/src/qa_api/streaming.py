"""Server-Sent Events for one question: status events, the answer token by token, then a final event.

Each request builds its own `dspy.streamify` wrapper and `StreamListener`: a listener keeps state
for one stream, so sharing one across requests would interleave their tokens.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import dspy
from dspy.adapters import JSONAdapter
from dspy.streaming import StatusMessage, StatusMessageProvider, StreamListener, StreamResponse
from dspy.utils.exceptions import AdapterParseError, LMError

from qa_api import metrics
from qa_api.errors import from_lm_error
from qa_api.json_tokens import JsonStringTokens, PlainTokens
from qa_api.registry_watch import LoadedProgram
from qa_api.serving import AnswerContext, Answerer
from qa_api.tracing import record_answer
from qa_core.web.errors import ServiceError, error_body


class QAStatus(StatusMessageProvider):
    """Status events a person waiting for an answer can read."""

    def module_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        return "Searching the documentation..." if type(instance).__name__ == "GroundedQA" else None

    def lm_start_status_message(self, instance: Any, inputs: dict[str, Any]) -> str | None:
        return "Writing the answer..."

    def module_end_status_message(self, outputs: Any) -> str | None:
        return None


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# --8<-- [start:stream]
def start_stream(answerer: Answerer, ctx: AnswerContext) -> AsyncIterator[bytes]:
    """Pick the program and take an LM slot now, so overload and bad variants are plain HTTP errors.

    The program runs in its own task and hands events over a queue: the task owns the slot (it is
    released even if the client never reads a byte), a client that disconnects cancels the work, and
    the tracing context never crosses into the response generator.
    """
    _, loaded = answerer.pick(ctx)
    answerer.limiter.acquire()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    task = asyncio.create_task(produce(answerer, ctx, loaded, queue))
    return drain(queue, task)


async def drain(queue: asyncio.Queue[bytes | None], task: asyncio.Task) -> AsyncIterator[bytes]:
    try:
        while (event := await queue.get()) is not None:
            yield event
        await task
    finally:
        task.cancel()  # the client went away: stop the LM work too


async def produce(answerer: Answerer, ctx: AnswerContext, loaded: LoadedProgram, queue: asyncio.Queue) -> None:
    """Run the streaming program and turn what it yields into SSE events."""
    started, status = time.perf_counter(), "error"
    try:  # the LM slot was taken by `start_stream`, before the 200 went out
        with answerer.trace(ctx, loaded) as trace, dspy.context(lm=answerer.lm, adapter=answerer.adapter):
            metrics.current_variant.set(loaded.variant)
            # Built inside the context: streamify captures DSPy's settings when it is created.
            program = dspy.streamify(
                loaded.program,
                status_message_provider=QAStatus(),
                stream_listeners=[StreamListener(signature_field_name="answer")],
                is_async_program=True,
            )
            tokens = JsonStringTokens() if isinstance(answerer.adapter, JSONAdapter) else PlainTokens()
            async with asyncio.timeout(answerer.settings.request_timeout_s):
                async for item in program(question=ctx.question):
                    if isinstance(item, StreamResponse):
                        if text := tokens.feed(item.chunk):
                            await queue.put(sse("token", {"text": text}))
                    elif isinstance(item, StatusMessage):
                        await queue.put(sse("status", {"message": item.message}))
                    elif isinstance(item, dspy.Prediction):
                        response = answerer.response(item, loaded, ctx, trace.trace_id if trace else None)
                        if trace is not None:
                            record_answer(trace, item, response.model_dump(include={"answer", "citations"}))
                        await queue.put(sse("final", response.model_dump()))
        status = "ok"
    except ServiceError as error:
        await queue.put(sse("error", error_body(error.code, error.message, ctx.request_id)))
    except TimeoutError:
        metrics.ERRORS.labels("timeout").inc()
        await queue.put(sse("error", error_body("timeout", "No answer in time.", ctx.request_id)))
    except (LMError, AdapterParseError) as error:  # the 200 is already sent: report it on the stream
        mapped = from_lm_error(error, answerer.settings.retry_after_s)
        metrics.ERRORS.labels(mapped.code).inc()
        await queue.put(sse("error", error_body(mapped.code, mapped.message, ctx.request_id)))
    finally:
        answerer.limiter.release()
        metrics.observe_request(ctx.endpoint, loaded.variant, status, ctx.synthetic, time.perf_counter() - started)
        await queue.put(None)


# --8<-- [end:stream]
