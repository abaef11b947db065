"""Errors with a meaning, and the one JSON shape every error response has.

`{"error": {"code": ..., "message": ..., "request_id": ..., **extra}}`, with a status that says whose fault it
was. This module imports no web framework: domain code raises these without loading FastAPI.
"""

from __future__ import annotations

from typing import Any


def error_body(code: str, message: str, request_id: str | None, **extra: object) -> dict[str, Any]:
    """The envelope. `extra` adds fields next to the code, such as `fields` for a validation error."""
    return {"error": {"code": code, "message": message, "request_id": request_id, **extra}}


class ServiceError(Exception):
    """An error with a meaning: an HTTP status, a stable machine-readable `code`, and a message for people.

    Subclasses set `status` and `code`. `retry_after` becomes a Retry-After header; `extra` keyword arguments
    become fields of the envelope (`field="trace_id"`). `status` and `code` may be given per instance for an
    error relayed from another service, whose code is that service's own.
    """

    status: int = 500
    code: str = "internal"
    retry_after: int | None = None

    def __init__(
        self,
        message: str,
        retry_after: int | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        **extra: object,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra
        if retry_after is not None:
            self.retry_after = retry_after
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class InvalidRequest(ServiceError):
    """The request is malformed or breaks a limit; the message (and `fields`) say which part."""

    status, code = 422, "invalid_request"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    """The state changed under the request, or the request contradicts it."""

    status, code = 409, "conflict"


class IdempotencyConflict(Conflict):
    """An idempotency key was used again with a different request."""

    code = "idempotency_conflict"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class DatabaseUnavailable(ServiceError):
    status, code = 503, "database_unavailable"


class UpstreamUnavailable(ServiceError):
    """A service we depend on cannot be reached right now."""

    status, code = 503, "upstream_unavailable"
