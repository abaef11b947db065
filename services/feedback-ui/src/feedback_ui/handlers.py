"""How feedback-ui answers a failure. The codes, statuses and the JSON envelope are the shared kit's
(`qa_core.web.handlers`); this module only decides who is asking: API clients get the envelope, people get
the same message on a page, in the message area for htmx requests, or a redirect to log in."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from feedback_ui.errors import NotAuthenticated
from feedback_ui.templating import is_htmx, render
from qa_core.web.errors import ServiceError
from qa_core.web.handlers import json_response

# What people read when the feedback database is down (`install_error_handlers(..., database_message=)`).
DATABASE_DOWN = "The feedback database is unavailable; nothing was saved. Try again in a moment."


def wants_json(request: Request) -> bool:
    if request.url.path.startswith(("/api/", "/health", "/metrics")):
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


# --8<-- [start:respond]
def respond(request: Request, error: ServiceError) -> Response:
    if wants_json(request):
        return json_response(request, error)
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else {}
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
