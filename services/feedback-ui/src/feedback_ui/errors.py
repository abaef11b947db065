"""feedback-ui's own errors. The common ones (InvalidRequest, NotFound, Conflict, IdempotencyConflict,
UpstreamUnavailable) and the envelope are the shared kit's, `qa_core.web.errors`; pages show the same message
to people (see `handlers.py`)."""

from __future__ import annotations

from qa_core.web.errors import NotFound, ServiceError


class NotAuthenticated(ServiceError):
    status, code = 401, "not_authenticated"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class CsrfFailed(ServiceError):
    status, code = 403, "csrf_failed"


class TooManyLogins(ServiceError):
    status, code = 429, "too_many_logins"


class TraceNotFound(NotFound):
    code = "trace_not_found"
