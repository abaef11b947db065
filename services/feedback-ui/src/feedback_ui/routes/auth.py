"""Log in and log out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from feedback_ui import csrf
from feedback_ui.routes.deps import AnnotatorWrite
from feedback_ui.templating import render

router = APIRouter()


def safe_next(target: str | None) -> str:
    """Only a path on this site: `next=https://evil.example` must not turn the login into a redirector."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ask"


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=safe_next(next))


# --8<-- [start:login-route]
@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
    next: Annotated[str, Form()] = "/ask",
) -> Response:
    await csrf.verify(request)  # login CSRF: the anonymous session already has a token
    await request.app.state.auth.login(request, username, password)
    return RedirectResponse(safe_next(next), status_code=303)


# --8<-- [end:login-route]


@router.post("/logout")
async def logout(request: Request, user: AnnotatorWrite) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)
