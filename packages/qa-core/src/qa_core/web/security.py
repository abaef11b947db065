"""Security headers on every response, with a Content-Security-Policy per kind of page.

A JSON API needs no sources at all. Its OpenAPI pages (FastAPI's Swagger UI and ReDoc) load their scripts
and styles from the jsDelivr CDN and start with an inline script, so those few paths get a policy that
allows exactly that; everything else keeps the service's own.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Nothing to load, and no one may frame it: right for JSON, and for an error page a browser might show.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# FastAPI's docs pages: assets from jsDelivr, an inline start-up script, the favicon from fastapi.tiangolo.com,
# the ReDoc fonts from Google; they fetch only this origin's openapi.json.
DOCS_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class SecurityHeadersMiddleware:
    """nosniff, no framing, a same-origin referrer, and `csp` (or the one `csp_by_path` names for a path)."""

    def __init__(self, app: ASGIApp, csp: str, csp_by_path: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.csp_by_path = {path: value.encode() for path, value in (csp_by_path or {}).items()}
        self.fixed = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
        ]
        self.csp = csp.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = self.csp_by_path.get(scope["path"], self.csp)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.fixed, (b"content-security-policy", csp)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
