"""The exception handlers: every failure a request can meet becomes a `ServiceError`, answered in one shape.

A service that shows pages to people (feedback-ui) passes its own `respond`; the codes, statuses and the JSON
envelope stay the kit's, so every service reports a failure the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa_core.contracts import HEADER_REQUEST_ID
from qa_core.web.errors import DatabaseUnavailable, InvalidRequest, ServiceError, error_body
from qa_core.web.request_context import request_id_of

logger = logging.getLogger(__name__)

Respond = Callable[[Request, ServiceError], Response]
# Where a field was sent is FastAPI's detail, not the client's: `body.question` is reported as `question`.
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})


def json_response(request: Request, error: ServiceError) -> JSONResponse:
    """The envelope as JSON, with Retry-After when the error has one."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    body = error_body(error.code, error.message, request_id_of(request), **error.extra)
    return JSONResponse(body, status_code=error.status, headers=headers)


def from_validation(error: RequestValidationError) -> InvalidRequest:
    """One `{field, message}` per problem, and a message that names each field."""
    fields = []
    for item in error.errors():
        location = list(item["loc"])
        if location and location[0] in _LOCATIONS:
            location = location[1:]
        fields.append({"field": ".".join(str(part) for part in location), "message": item["msg"]})
    message = "; ".join(f"{f['field'] or 'body'}: {f['message']}" for f in fields)
    return InvalidRequest(message, fields=fields)


# --8<-- [start:install]
def install_error_handlers(
    app: FastAPI,
    respond: Respond = json_response,
    database_message: str = "The database is unavailable; try again in a moment.",
) -> None:
    """Map domain errors, bad requests, HTTP errors, a database that is down, and anything unexpected."""

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> Response:
        return respond(request, error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        return respond(request, from_validation(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        failure = ServiceError(str(error.detail), status=error.status_code, code=f"http_{error.status_code}")
        response = respond(request, failure)
        response.headers.update(error.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, error: OperationalError) -> Response:
        logger.error("database unavailable (request %s): %s", request_id_of(request), error.orig)
        return respond(request, DatabaseUnavailable(database_message))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        logger.exception("unhandled error in request %s", request_id_of(request))
        response = respond(request, ServiceError("Internal error; it was logged with the request id."))
        request_id = request_id_of(request)
        if request_id:  # Starlette sends this response outside every middleware, so the id is set here
            response.headers[HEADER_REQUEST_ID] = request_id
        return response


# --8<-- [end:install]
