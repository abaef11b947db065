"""Every knob of feedback-ui, read once at start-up and passed down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from qa_core.database import DatabaseSettings

STATE_DIR = Path(".state")
Role = Literal["annotator", "admin"]

# Dev mode only (APP_ENV=dev): users `admin` / `admin` and `annotator` / `annotator`, and a session
# secret that is printed in the source. Any other APP_ENV refuses to start without real ones.
DEV_USERS = [
    {
        "username": "admin",
        "role": "admin",
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$ETTaDz4ObC1KlC+hDVNzYQ$"
        "pmaPKoSU8MQoWZbTYTVD9x5XjfIGRgEhTDBmNKKieYE",
    },
    {
        "username": "annotator",
        "role": "annotator",
        "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$sC8sx6ik+Y7tn0Qs98TwPg$"
        "DUYiYPxkSZ1I1o/B+o2GdaTXJZRHCx41DIkKOvvT0+g",
    },
]
DEV_SESSION_SECRET = "dev-only-session-secret-do-not-use-in-production"


class UserConfig(BaseModel):
    """One person who may log in. The password is stored as an argon2id hash, never in clear."""

    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password_hash: SecretStr
    role: Role

    @field_validator("password_hash")
    @classmethod
    def _known_scheme(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("$argon2"):
            raise ValueError("password_hash must be an argon2 hash (make one with `feedback-ui hash-password`)")
        return value


class ApiTokenConfig(BaseModel):
    """A bearer token for clients that are not the web page. Only its sha256 is configured."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    token_sha256: SecretStr
    role: Role

    @field_validator("token_sha256")
    @classmethod
    def _hex_digest(cls, value: SecretStr) -> SecretStr:
        digest = value.get_secret_value()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("token_sha256 must be a lower-case hex sha256 digest (`feedback-ui new-token`)")
        return value


# --8<-- [start:settings]
class Settings(DatabaseSettings):
    """feedback-ui settings: where feedback is stored, who may log in, and how the outbox retries."""

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8002, ge=1, le=65535, description="Port to listen on.")
    database_url: str = Field(
        f"sqlite:///{STATE_DIR}/feedback-ui.db",
        description="SQLAlchemy URL of the feedback database. `postgresql://...` uses psycopg 3.",
    )
    db_threads: int = Field(8, ge=1, le=64, description="Threads for database calls (the event loop never blocks).")
    qa_api_url: str = Field("http://127.0.0.1:8000", description="Base URL of qa-api.")
    qa_api_timeout_s: float = Field(45.0, gt=0, description="Timeout of one question to qa-api, in seconds.")
    worker_api_url: str = Field("http://127.0.0.1:8001", description="Base URL of the optimizer-worker's jobs API.")
    prometheus_url: str | None = Field(
        None, description="Prometheus server for the guardrails; unset: read qa-api's own /metrics."
    )
    prometheus_window: str = Field("1h", pattern=r"^\d+[smhd]$", description="Window of the Prometheus queries.")

    users: list[UserConfig] = Field(
        default_factory=list,
        description='Who may log in, as JSON: `[{"username", "password_hash", "role"}]` (role annotator or admin). '
        "Required outside dev; dev has admin/admin and annotator/annotator.",
    )
    api_tokens: list[ApiTokenConfig] = Field(
        default_factory=list,
        description='Bearer tokens for API clients, as JSON: `[{"name", "token_sha256", "role"}]`.',
    )
    session_secret: SecretStr | None = Field(
        None, description="Key that signs session cookies (32+ characters). Required outside dev."
    )
    session_max_age_s: int = Field(8 * 3600, ge=60, description="Lifetime of a login session, in seconds.")
    cookie_secure: bool | None = Field(
        None, description="Send cookies over HTTPS only; default: on in prod, off in dev and test."
    )
    cookie_samesite: Literal["lax", "strict"] = Field("lax", description="SameSite attribute of the session cookie.")
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins allowed per user name, and per client address, within the window."
    )
    login_window_s: int = Field(300, ge=1, description="Window of the login rate limit, in seconds.")

    outbox_poll_s: float = Field(1.0, gt=0, description="How often the outbox looks for due deliveries.")
    outbox_batch: int = Field(50, ge=1, le=1000, description="Traces delivered per outbox round.")
    outbox_concurrency: int = Field(4, ge=1, le=32, description="Traces delivered to MLflow at once.")
    outbox_backoff_base_s: float = Field(1.0, gt=0, description="First retry delay; it doubles per failed attempt.")
    outbox_backoff_max_s: float = Field(300.0, gt=0, description="Longest delay between two attempts.")
    outbox_lease_s: float = Field(60.0, gt=0, description="A claimed delivery not finished within this is retried.")
    trace_lookup_wait_s: float = Field(
        2.0, ge=0, le=60, description="How long a rating of an unknown trace id waits for the trace before a 404."
    )
    outbox_trace_wait_s: float = Field(
        86_400.0,
        gt=0,
        description="How long feedback waits for its trace to appear in MLflow before it is parked as failed "
        "(kept in the database, never deleted).",
    )

    review_scan: int = Field(200, ge=1, le=5000, description="Recent traces the review queue looks through.")
    guardrail_p95_s: float = Field(10.0, gt=0, description="Guardrail: highest acceptable p95 latency, in seconds.")
    guardrail_error_rate: float = Field(
        0.05, ge=0, le=1, description="Guardrail: highest acceptable share of failed requests."
    )
    log_level: str = Field("info", description="Log level of the service and uvicorn.")

    @field_validator("users", "api_tokens", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        # The environment gives JSON text (pydantic-settings parses it); keyword arguments may too.
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _secrets_explicit_outside_dev(self) -> Settings:
        if self.app_env != "dev":
            if self.session_secret is None:
                raise ValueError(f"SESSION_SECRET must be set when APP_ENV={self.app_env}")
            if not self.users and not self.api_tokens:
                raise ValueError(f"USERS (or API_TOKENS) must be set when APP_ENV={self.app_env}")
        if self.session_secret is None:
            self.session_secret = SecretStr(DEV_SESSION_SECRET)
        elif len(self.session_secret.get_secret_value()) < 32:
            raise ValueError("SESSION_SECRET must be at least 32 characters")
        if not self.users and self.app_env == "dev":
            self.users = [UserConfig.model_validate(user) for user in DEV_USERS]
        names = [user.username for user in self.users] + [token.name for token in self.api_tokens]
        if len(names) != len(set(names)):
            raise ValueError("user names and API token names must be unique")
        if self.cookie_secure is None:
            self.cookie_secure = self.app_env == "prod"
        return self


# --8<-- [end:settings]
