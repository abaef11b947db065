"""CSRF protection: a secret token per session, required on every write that a cookie authenticates.

Forms carry it as the hidden field `csrf_token`; htmx and JSON clients send it as `X-CSRF-Token`.
Requests authenticated by a bearer token carry no ambient credential, so they need none.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request

from feedback_ui.errors import CsrfFailed

HEADER = "X-CSRF-Token"
FIELD = "csrf_token"


def token_for(request: Request) -> str:
    """The session's token, created on first use (the login page already needs one)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


# --8<-- [start:verify]
async def verify(request: Request) -> None:
    expected = request.session.get("csrf")
    sent = request.headers.get(HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        sent = (await request.form()).get(FIELD)  # Starlette caches the parsed form for the route
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        raise CsrfFailed("The form's security token is missing or wrong; reload the page and try again.")


# --8<-- [end:verify]
