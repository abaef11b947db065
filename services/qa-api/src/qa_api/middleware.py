"""Pure ASGI middleware (cheaper per request than Starlette's BaseHTTPMiddleware): request ids and body limits."""

from __future__ import annotations

import itertools
import json
import os
import re
from typing import Any

from qa_core.contracts import HEADER_REQUEST_ID

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HEADER = HEADER_REQUEST_ID.lower().encode()
# A random prefix per process and a counter: unique, and far cheaper per request than uuid4().
_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(1)


class RequestIdMiddleware:
    """Use the caller's X-Request-Id when it is safe to log, else mint one; echo it on the response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == _HEADER), "")
        request_id = given if _SAFE_ID.match(given) else f"{_PREFIX}-{next(_COUNTER):x}"
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (_HEADER, request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413, whether or not the client declared a Content-Length."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return
        seen = 0

        async def counting_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._reject(scope, send)

    async def _reject(self, scope: dict, send: Any) -> None:
        request_id = scope.get("state", {}).get("request_id")
        body = json.dumps(
            {
                "error": {
                    "code": "payload_too_large",
                    "message": f"Body over {self.max_bytes} bytes.",
                    "request_id": request_id,
                }
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
