"""One handler per error class. API clients get `{"error": {"code", "message", "request_id"}}`; people get
the same message on the page, in the message area for htmx requests, or as a redirect to log in."""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from feedback_ui.errors import InvalidInput, NotAuthenticated, ServiceError
from feedback_ui.templating import is_htmx, render

logger = logging.getLogger(__name__)


def wants_json(request: Request) -> bool:
    if request.url.path.startswith(("/api/", "/health", "/metrics")):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def error_body(code: str, message: str, request_id: str | None, **extra: object) -> dict:
    return {"error": {"code": code, "message": message, "request_id": request_id, **extra}}


# --8<-- [start:respond]
def respond(request: Request, error: ServiceError, **extra: object) -> Response:
    request_id = getattr(request.state, "request_id", None)
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
    if wants_json(request):
        if error.field and "field" not in extra:
            extra["field"] = error.field
        return JSONResponse(error_body(error.code, error.message, request_id, **extra), error.status, headers)
    if isinstance(error, NotAuthenticated) and request.url.path != "/login":
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        if request.method == "GET":
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    if request.url.path == "/login":
        return render(request, "login.html", error.status, error=error.message, next="/ask", headers=headers)
    if is_htmx(request):
        headers |= {"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"}
        return render(request, "_message.html", error.status, message=error.message, kind="error", headers=headers)
    return render(request, "error.html", error.status, message=error.message, code=error.code, headers=headers)


# --8<-- [end:respond]


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> Response:
        return respond(request, error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        fields = [
            {"field": ".".join(str(p) for p in item["loc"] if p not in ("body", "query", "path")),
             "message": item["msg"]}
            for item in error.errors()
        ]  # fmt: skip
        message = "; ".join(f"{f['field'] or 'body'}: {f['message']}" for f in fields)
        return respond(request, InvalidInput(message), fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        failure = ServiceError(str(error.detail))
        failure.status, failure.code = error.status_code, f"http_{error.status_code}"
        return respond(request, failure)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, error: OperationalError) -> Response:
        logger.error("database unavailable (request %s): %s", getattr(request.state, "request_id", None), error.orig)
        failure = ServiceError("The feedback database is unavailable; nothing was saved. Try again in a moment.")
        failure.status, failure.code = 503, "database_unavailable"
        return respond(request, failure)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        logger.exception("unhandled error in request %s", getattr(request.state, "request_id", None))
        return respond(request, ServiceError("Internal error; it was logged with the request id."))
