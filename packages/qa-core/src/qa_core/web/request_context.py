"""The request id: one rule for every service, and passed on to the services a request calls.

The caller's X-Request-Id is kept when it is safe to log; otherwise one is minted. It is echoed on the
response, kept in the ASGI scope's state (`request.state.request_id`), and set in a ContextVar for the length
of the request, so an HTTP client can pass it on without every call site handing it down (`upstream`).
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa_core.contracts import HEADER_REQUEST_ID

SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HEADER = HEADER_REQUEST_ID.lower().encode()
# A random prefix per process and a counter: unique, and far cheaper per request than uuid4().
_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(1)

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


def mint_request_id() -> str:
    return f"{_PREFIX}-{next(_COUNTER):x}"


def request_id_of(connection: HTTPConnection) -> str | None:
    """The id the middleware gave this request (None when it did not run, as in a bare test app)."""
    return connection.scope.get("state", {}).get("request_id")


# --8<-- [start:middleware]
class RequestContextMiddleware:
    """Pure ASGI (Starlette's BaseHTTPMiddleware costs a task and a stream per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value.decode("latin-1") for key, value in scope["headers"] if key == _HEADER), "")
        request_id = given if SAFE_REQUEST_ID.match(given) else mint_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        echoed = (_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(key, value) for key, value in message.get("headers", []) if key.lower() != _HEADER]
                message["headers"] = [*kept, echoed]
            await send(message)

        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)


# --8<-- [end:middleware]
