"""Who is asking: users from settings (argon2 hashes), signed session cookies, bearer tokens, roles.

A role check is a FastAPI dependency: `Depends(require("admin", write=True))` authenticates the request,
checks the role, and for a cookie session also checks the CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from feedback_ui import csrf, metrics
from feedback_ui.db import Database
from feedback_ui.errors import Forbidden, NotAuthenticated, TooManyLogins
from feedback_ui.models import LoginFailure
from feedback_ui.settings import Role, Settings
from qa_core.database import utcnow

ROLE_RANK: dict[str, int] = {"annotator": 1, "admin": 2}
HASHER = PasswordHasher()
# Verified against when the user name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = HASHER.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    via: str  # "session" or "token"

    def can(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --8<-- [start:login]
class Authenticator:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self.users = {u.username: u for u in settings.users}
        self.tokens = {t.token_sha256.get_secret_value(): t for t in settings.api_tokens}
        self.hash_slots = anyio.CapacityLimiter(2)  # argon2 is deliberately slow; bound the CPU it takes

    async def login(self, request: Request, username: str, password: str) -> User:
        """Check the rate limit, then the password; on success start a fresh session."""
        client = request.client.host if request.client else "unknown"
        failures = await self.db.run(lambda s: recent_failures(s, username, client, self.settings.login_window_s))
        if failures >= self.settings.login_max_failures:
            metrics.LOGIN_FAILURES.labels("rate_limited").inc()
            raise TooManyLogins(
                f"Too many failed logins; wait {self.settings.login_window_s // 60 or 1} minutes and try again.",
                retry_after=self.settings.login_window_s,
            )
        config = self.users.get(username)
        stored = config.password_hash.get_secret_value() if config else _DUMMY_HASH
        ok = await anyio.to_thread.run_sync(verify_password, stored, password, limiter=self.hash_slots)
        if not ok or config is None:
            await self.db.run(lambda s: s.add(LoginFailure(username=username[:64], client=client[:64])))
            metrics.LOGIN_FAILURES.labels("wrong_credentials").inc()
            raise NotAuthenticated("Wrong user name or password.", field="password")
        await self.db.run(lambda s: s.execute(delete(LoginFailure).where(LoginFailure.username == username)))
        request.session.clear()  # a new session at login: nothing from before it survives (no fixation)
        request.session.update({"user": username, "qa_session": f"ui-{uuid.uuid4().hex}"})
        csrf.token_for(request)
        return User(username, config.role, "session")

    # --8<-- [end:login]

    def current(self, request: Request) -> User | None:
        """The user of a request: a bearer token, else the session cookie; None when anonymous."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            digest = token_digest(header[7:].strip())
            for known, token in self.tokens.items():
                if hmac.compare_digest(known, digest):
                    return User(token.name, token.role, "token")
            return None
        username = request.session.get("user")
        config = self.users.get(username) if username else None
        if config is None:
            return None  # never logged in, or removed from USERS since: the role comes from settings, not the cookie
        return User(config.username, config.role, "session")


def recent_failures(session: Session, username: str, client: str, window_s: int) -> int:
    since = utcnow() - timedelta(seconds=window_s)
    return (
        session.scalar(
            select(func.count())
            .select_from(LoginFailure)
            .where(
                LoginFailure.created_at >= since, or_(LoginFailure.username == username, LoginFailure.client == client)
            )
        )
        or 0
    )


# --8<-- [start:require]
def require(role: Role, *, write: bool = False) -> Callable[[Request], Awaitable[User]]:
    """A dependency: the request's user, if they have `role`. Writes by cookie also need the CSRF token."""

    async def dependency(request: Request) -> User:
        user = request.app.state.auth.current(request)
        if user is None:
            raise NotAuthenticated("Log in first.")
        if write and user.via == "session":
            await csrf.verify(request)
        if not user.can(role):
            raise Forbidden(f"This needs the {role} role; you are {user.username} ({user.role}).")
        request.state.user = user
        return user

    return dependency


# --8<-- [end:require]
