"""The kit's middleware, added in the one order that works."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from prometheus_client import Counter, Histogram

from qa_core.web.body_limit import BodyLimitMiddleware
from qa_core.web.metrics import RequestMetricsMiddleware
from qa_core.web.request_context import RequestContextMiddleware
from qa_core.web.security import DOCS_CSP, SecurityHeadersMiddleware


# --8<-- [start:add-middleware]
def add_kit_middleware(
    app: FastAPI,
    *,
    csp: str,
    max_body_bytes: int | None = None,
    request_metrics: tuple[Counter, Histogram] | None = None,
) -> None:
    """Call last in `create_app`: the middleware added last runs first, and these wrap the service's own.

    Outermost first: the request id (so every response carries it, a 413 included), the security headers,
    the request metrics (which count the 413s), then the body limit.
    """
    if max_body_bytes is not None:
        app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    if request_metrics is not None:
        requests, latency = request_metrics
        app.add_middleware(RequestMetricsMiddleware, requests=requests, latency=latency)
    app.add_middleware(SecurityHeadersMiddleware, csp=csp, csp_by_path=docs_paths(app))
    app.add_middleware(RequestContextMiddleware)


# --8<-- [end:add-middleware]


def docs_paths(app: FastAPI) -> Mapping[str, str]:
    """The app's own OpenAPI pages, wherever it put them, get the policy that lets them load."""
    paths = (app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url if app.docs_url else None)
    return {path: DOCS_CSP for path in paths if path}
