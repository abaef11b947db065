"""The web plumbing every service shares; a service declares only its own routes, errors and readiness checks.

- `errors`: `ServiceError`, the common error classes, and the one envelope `{"error": {"code", "message", ...}}`.
- `handlers`: exception handlers that turn every failure into that envelope (or, through a hook, an HTML page).
- `request_context`: the request id (one rule), echoed, kept in scope state and in a ContextVar.
- `upstream`: calls to another service pass the request id on and relay its errors.
- `security`: security headers and the Content-Security-Policies of the API services.
- `body_limit`: 413 for a body over the limit, declared or not.
- `stack`: the kit's middleware, added in the one order that works.
- `health`: `/health/live` and `/health/ready` with named checks and one response shape.
- `metrics`: `/metrics` and per-route request metrics.
- `server`: the uvicorn entry point of every service's console script.

Modules are imported by name (`from qa_core.web.errors import ServiceError`), so code that only raises errors
(a job in the worker, say) does not load FastAPI.
"""
