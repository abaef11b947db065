"""Domain errors and the one JSON shape every error response has.

`{"error": {"code": ..., "message": ..., "request_id": ...}}`, with a status that says whose fault it was:
4xx for the client, 502/503/504 for the LM behind us.
"""

from __future__ import annotations

import logging

from dspy.utils.exceptions import (
    AdapterParseError,
    LMError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    LMTransportError,
)
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """An error with a meaning, a status and a stable code."""

    status = 500
    code = "internal"
    retry_after: int | None = None

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after


class Overloaded(ServiceError):
    status, code = 429, "overloaded"


class ProgramNotLoaded(ServiceError):
    status, code = 503, "not_ready"


class VariantUnavailable(ServiceError):
    status, code = 409, "variant_unavailable"


class RequestTimedOut(ServiceError):
    status, code = 504, "timeout"


class LMUnavailable(ServiceError):
    status, code = 503, "lm_unavailable"


class LMBadResponse(ServiceError):
    status, code = 502, "lm_bad_response"


class LMTimedOut(ServiceError):
    status, code = 504, "lm_timeout"


class InvalidItem(ServiceError):
    """One bad item of a batch; reported in place, the other items are still answered."""

    status, code = 422, "invalid_request"


# --8<-- [start:lm-errors]
def _timed_out(error: BaseException) -> bool:
    """DSPy reports a read timeout as a transport error; the cause chain still says it was a timeout."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, TimeoutError | LMTimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def from_lm_error(error: Exception, retry_after: int) -> ServiceError:
    """Map DSPy's typed LM errors to what a client can act on."""
    if _timed_out(error):
        return LMTimedOut("The language model did not answer in time.")
    if isinstance(error, LMRateLimitError):
        return LMUnavailable("The language model is rate limiting us; retry later.", retry_after)
    if isinstance(error, LMTransportError):
        return LMUnavailable("The language model cannot be reached.", retry_after)
    if isinstance(error, LMServerError):
        return LMBadResponse("The language model failed while answering.")
    if isinstance(error, AdapterParseError):
        return LMBadResponse("The language model's answer could not be parsed.")
    if isinstance(error, LMError):
        return LMBadResponse(f"The language model refused the request: {type(error).__name__}.")
    raise error


# --8<-- [end:lm-errors]


def error_body(code: str, message: str, request_id: str | None, **extra: object) -> dict:
    return {"error": {"code": code, "message": message, "request_id": request_id, **extra}}


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
        return JSONResponse(
            error_body(error.code, error.message, _request_id(request)), status_code=error.status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(part) for part in item["loc"] if part != "body"), "message": item["msg"]}
            for item in error.errors()
        ]
        message = "; ".join(f"{f['field'] or 'body'}: {f['message']}" for f in fields)
        return JSONResponse(
            error_body("invalid_request", message, _request_id(request), fields=fields), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(f"http_{error.status_code}", str(error.detail), _request_id(request)),
            status_code=error.status_code,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error in request %s", _request_id(request))
        return JSONResponse(error_body("internal", "Internal error.", _request_id(request)), status_code=500)
