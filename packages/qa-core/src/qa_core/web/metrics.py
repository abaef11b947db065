"""Prometheus: the `/metrics` route, and request counts and latency per route template."""

from __future__ import annotations

import time

import anyio
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def metrics_router(registry: CollectorRegistry = REGISTRY, limiter: anyio.CapacityLimiter | None = None) -> APIRouter:
    """`GET /metrics` in the Prometheus text format.

    Rendered in a thread: a collector may read a database at scrape time (the worker's jobs table does), and
    the event loop never waits for that. `limiter` bounds those threads together with the service's own.
    """
    router = APIRouter(tags=["health"])

    @router.get("/metrics")
    async def metrics() -> Response:
        body = await anyio.to_thread.run_sync(generate_latest, registry, limiter=limiter)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


class RequestMetricsMiddleware:
    """Count each request by route template and status, and time it by route template.

    The template (`/v1/jobs/{job_id}`), never the raw path, keeps the label set small; a request no route
    matched is `unmatched`. A request that fails before it answers counts as 500.
    """

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(route, str(status)).inc()
            self.latency.labels(route).observe(time.perf_counter() - started)
