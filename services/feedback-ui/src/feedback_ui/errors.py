"""Domain errors, and the one JSON shape every API error has: `{"error": {"code", "message", "request_id"}}`.

Pages get the same message on an HTML page (or, for an htmx request, in the message area).
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error with a meaning, a status and a stable code."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, field: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.retry_after = retry_after


class InvalidInput(ServiceError):
    status, code = 422, "invalid_request"


class NotAuthenticated(ServiceError):
    status, code = 401, "not_authenticated"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class CsrfFailed(ServiceError):
    status, code = 403, "csrf_failed"


class TooManyLogins(ServiceError):
    status, code = 429, "too_many_logins"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class TraceNotFound(ServiceError):
    status, code = 404, "trace_not_found"


class IdempotencyConflict(ServiceError):
    status, code = 409, "idempotency_conflict"


class Conflict(ServiceError):
    """The state changed under the request (a new challenger since the confirmation, nothing to roll back)."""

    status, code = 409, "conflict"


class QaApiError(ServiceError):
    """qa-api refused or failed; the status and code are qa-api's own."""

    def __init__(self, message: str, status: int, code: str, retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status, self.code = status, code


class UpstreamUnavailable(ServiceError):
    """A service we depend on (qa-api, MLflow, the jobs API) cannot be reached right now."""

    status, code = 503, "upstream_unavailable"


class WorkerApiError(ServiceError):
    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code
