"""Rendering pages: one Jinja2 environment, and the context every page gets (user, CSRF token, nav)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from feedback_ui import csrf

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["pct"] = lambda value: "–" if value is None else f"{value:.1%}"
TEMPLATES.env.filters["num"] = lambda value, digits=2: "–" if value is None else f"{value:.{digits}f}"
# A fresh idempotency key for each rendered form: a double click or a resubmitted page stores once.
TEMPLATES.env.globals["new_key"] = lambda: uuid.uuid4().hex


def is_htmx(request: Request) -> bool:
    """htmx asks for a fragment; a plain browser (no JavaScript) gets the whole page."""
    return request.headers.get("hx-request") == "true" and request.headers.get("hx-history-restore-request") != "true"


def render(
    request: Request, template: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    auth = request.app.state.auth
    context.setdefault("user", auth.current(request))
    context.setdefault("csrf_token", csrf.token_for(request))
    context.setdefault("request_id", getattr(request.state, "request_id", ""))
    context.setdefault("htmx", is_htmx(request))
    context.setdefault("settings", request.app.state.settings)
    context.setdefault("flash", request.session.pop("flash", None))  # one-time message after a redirect
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code, headers=headers)
