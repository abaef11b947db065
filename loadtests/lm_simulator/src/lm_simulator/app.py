"""The HTTP surface: OpenAI-compatible routes, latency, pacing and injected faults."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from lm_simulator.answers import answer_messages
from lm_simulator.faults import Faults, Outcome
from lm_simulator.openai_format import (
    DONE,
    ChunkEncoder,
    completion_body,
    error_body,
    estimate_tokens,
    new_id,
    split_tokens,
)
from lm_simulator.prompt import message_text
from lm_simulator.settings import SimulatorSettings

JSON = "application/json"
SSE_HEADERS = {"Cache-Control": "no-cache"}
_RAW_SEND = "lm_simulator.raw_send"


class SimulatorApp(Starlette):
    """Starlette, plus the server's own `send` kept in the scope so a 'timeout' can drop the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_RAW_SEND] = send
        await super().__call__(scope, receive, send)


def _error(
    status: int,
    message: str,
    type_: str,
    code: str | None,
    headers: dict[str, str] | None = None,
) -> Response:
    return Response(error_body(message, type_, code), status_code=status, media_type=JSON, headers=headers)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _hold_and_drop(request: Request, hold_s: float) -> Response:
    """Hold the request, then close the connection without answering, as a hung upstream would."""
    try:
        await asyncio.wait_for(_wait_disconnect(request.receive), hold_s)
        return Response(status_code=499)  # the client gave up first; nobody reads this
    except TimeoutError:
        pass
    # uvicorn passes a bound method of its request cycle as `send`; its transport is the connection.
    transport = getattr(getattr(request.scope.get(_RAW_SEND), "__self__", None), "transport", None)
    if transport is not None:
        transport.close()
        # Once uvicorn has seen the connection go, it silently discards the response below.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_wait_disconnect(request.receive), 1.0)
    return _error(504, "The simulator held this request and timed out.", "timeout", "timeout")


async def _stream(
    enc: ChunkEncoder,
    content: str,
    delay: float,
    tokens_per_second: float,
    prompt_tokens: int,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    pieces = split_tokens(content)
    tail = [enc.finish()]
    if include_usage:
        tail.append(enc.usage(prompt_tokens, estimate_tokens(content)))
    tail.append(DONE)
    if delay:
        await asyncio.sleep(delay)
    if not tokens_per_second:  # unpaced: one write is much cheaper than one per piece
        yield b"".join([enc.role(), *map(enc.content, pieces), *tail])
        return
    yield enc.role()
    loop = asyncio.get_running_loop()
    start, chars = loop.time(), 0
    for piece in pieces:
        # Pace against the stream start (not per piece) so sleep overshoot does not accumulate.
        wait = start + (chars / 4.0) / tokens_per_second - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        yield enc.content(piece)
        chars += len(piece)
    yield b"".join(tail)


def create_app(settings: SimulatorSettings | None = None) -> Starlette:
    settings = settings or SimulatorSettings()
    faults = Faults(settings)
    models_body = orjson.dumps(
        {
            "object": "list",
            "data": [{"id": settings.model, "object": "model", "created": 0, "owned_by": "lm-simulator"}],
        }
    )
    retry_after = {"Retry-After": str(settings.retry_after_s)}

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def models(request: Request) -> Response:
        return Response(models_body, media_type=JSON)

    async def chat_completions(request: Request) -> Response:
        # Plain dict access instead of a pydantic model: this is the hot path of every load test.
        try:
            body: Any = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _error(400, f"Invalid JSON body: {exc}", "invalid_request_error", "invalid_json")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            message = "'messages' must be a non-empty list."
            return _error(400, message, "invalid_request_error", "invalid_messages")

        outcome = faults.outcome()
        if outcome is Outcome.RATE_LIMITED:  # rejected up front, as rate limiters do
            message = "Rate limit reached (injected)."
            return _error(429, message, "requests", "rate_limit_exceeded", retry_after)
        if outcome is Outcome.TIMEOUT:
            return await _hold_and_drop(request, settings.timeout_hold_s)
        delay = faults.delay()
        stream = body.get("stream") is True
        if not stream or outcome is Outcome.SERVER_ERROR:
            if delay:
                await asyncio.sleep(delay)
            if outcome is Outcome.SERVER_ERROR:
                return _error(500, "The server had an error (injected).", "server_error", "server_error")

        content = answer_messages(messages, body.get("response_format"))
        prompt_tokens = estimate_tokens("".join(message_text(m) for m in messages))
        model = body.get("model") or settings.model
        cid, created = new_id(), int(time.time())
        if not stream:
            n = body.get("n")
            n = n if isinstance(n, int) and 0 < n <= 16 else 1
            return Response(completion_body(cid, created, model, content, n, prompt_tokens), media_type=JSON)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        chunks = _stream(
            ChunkEncoder(cid, created, model),
            content,
            delay,
            settings.tokens_per_second,
            prompt_tokens,
            include_usage,
        )
        return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "Internal error"
        return _error(status, str(detail), "invalid_request_error", None)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        # Some clients leave out the /v1 prefix of api_base.
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/models", models, methods=["GET"]),
    ]
    app = SimulatorApp(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.settings = settings
    return app
