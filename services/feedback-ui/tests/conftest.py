"""Fixtures that start real things for feedback-ui: PostgreSQL, the MLflow server, the app itself.

Test modules cannot import from conftest under `--import-mode=importlib`, so the helpers are methods of
the `Deployment` a fixture returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow.tracing.client import TracingClient
from prometheus_client.parser import text_string_to_metric_families

from feedback_ui.auth import hash_password, token_digest
from feedback_ui.db import migrate
from feedback_ui.main import create_app
from feedback_ui.settings import Settings
from tests.support import waiting
from tests.support.traces import log_qa_trace

PASSWORDS = {"ada": "ada-admin-password", "ann": "ann-annotator-password"}
ROLES = {"ada": "admin", "ann": "annotator"}
TOKENS = {"robot": ("robot-token-" + uuid.uuid4().hex, "annotator")}
# MLflow reads these per request from the environment; the app sets them, the test must put them back.
MLFLOW_ENV = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_TRACKING_URI")


@pytest.fixture(scope="session")
def users_env() -> dict[str, str]:
    """USERS, API_TOKENS and SESSION_SECRET as a deployment would set them (hashed once per session)."""
    users = [{"username": n, "password_hash": hash_password(p), "role": ROLES[n]} for n, p in PASSWORDS.items()]
    tokens = [{"name": n, "token_sha256": token_digest(t), "role": r} for n, (t, r) in TOKENS.items()]
    return {"USERS": json.dumps(users), "API_TOKENS": json.dumps(tokens), "SESSION_SECRET": uuid.uuid4().hex * 2}


@pytest.fixture(scope="session")
def passwords() -> dict[str, str]:
    """The clear-text passwords of the test users, for tests that type them into the login form."""
    return dict(PASSWORDS)


@pytest.fixture(scope="session")
def robot_headers() -> dict[str, str]:
    """The Authorization header of the annotator API token `robot`."""
    return {"Authorization": f"Bearer {TOKENS['robot'][0]}"}


class Deployment:
    """One isolated feedback-ui deployment: its own database, experiment and registered model."""

    def __init__(self, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.env, self.monkeypatch = env, monkeypatch
        migrate(self.settings.database_url)
        self.traces = TracingClient(env["MLFLOW_TRACKING_URI"])

    @property
    def settings(self) -> Settings:
        return Settings(_env_file=None, **{k.lower(): v for k, v in self.env.items()})  # type: ignore[arg-type]

    @contextlib.contextmanager
    def app(self, **overrides: str) -> Iterator[TestClient]:
        """The app in this process with its lifespan (and outbox loop) running."""
        for name in MLFLOW_ENV:  # restored after the test, so other services' tests see their own values
            self.monkeypatch.setenv(name, os.environ[name]) if name in os.environ else self.monkeypatch.delenv(
                name, raising=False
            )
        settings = Settings(_env_file=None, **{k.lower(): v for k, v in {**self.env, **overrides}.items()})  # type: ignore[arg-type]
        with TestClient(create_app(settings), base_url="http://feedback-ui") as client:
            yield client

    @staticmethod
    def login(client: TestClient, username: str) -> str:
        """Log in through the form, as a browser does; returns the session's CSRF token."""
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        response = client.post(
            "/login", data={"username": username, "password": PASSWORDS[username], "csrf_token": token},
            follow_redirects=False,
        )  # fmt: skip
        assert response.status_code == 303, response.text
        page = client.get("/ask")
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]

    @staticmethod
    def bearer(name: str = "robot") -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[name][0]}"}

    def trace(self, question: str = "Which port does MLflow listen on?", answer: str = "5000", **tags: Any) -> str:
        """A trace shaped like qa-api's in this deployment's experiment, exported before it returns."""
        mlflow.set_tracking_uri(self.env["MLFLOW_TRACKING_URI"])
        trace_id = log_qa_trace(self.env["MLFLOW_EXPERIMENT_NAME"], question, answer, **tags)
        mlflow.flush_trace_async_logging()
        return trace_id

    def many_traces(self, count: int) -> list[str]:
        """`count` traces, exported together (one flush), for tests that need volume."""
        mlflow.set_tracking_uri(self.env["MLFLOW_TRACKING_URI"])
        experiment = self.env["MLFLOW_EXPERIMENT_NAME"]
        ids = [log_qa_trace(experiment, f"Question number {i}?", f"Answer {i}") for i in range(count)]
        mlflow.flush_trace_async_logging()
        return ids

    def assessments(self, trace_id: str, name: str | None = None, valid_only: bool = True) -> list:
        found = self.traces.get_trace_info(trace_id).assessments or []
        return [a for a in found if (name is None or a.name == name) and (not valid_only or a.valid is not False)]

    wait_until = staticmethod(waiting.wait_until)

    @staticmethod
    def ratings_counted(client: TestClient, variant: str = "champion", rating: str = "up") -> float:
        """feedback_ratings_total for one variant and verdict, from the app's /metrics."""
        for family in text_string_to_metric_families(client.get("/metrics").text):
            for sample in family.samples:
                if sample.name == "feedback_ratings_total" and sample.labels == {"variant": variant, "rating": rating}:
                    return sample.value
        return 0.0

    def delivered(self, client: TestClient, submission_id: str, headers: dict | None = None) -> dict:
        def check() -> dict | None:
            view = client.get(f"/api/feedback/{submission_id}", headers=headers or {}).json()
            return view if view.get("status") == "delivered" else None

        return self.wait_until(check, what=f"delivery of {submission_id}")


def deployment_env(database_url: str, mlflow_url: str, users_env: dict[str, str], **extra: str) -> dict[str, str]:
    uid = uuid.uuid4().hex[:10]
    return {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "MLFLOW_TRACKING_URI": mlflow_url,
        "MLFLOW_EXPERIMENT_NAME": f"qa-traces-{uid}",
        "REGISTERED_MODEL_NAME": f"qa-{uid}",
        "MLFLOW_TIMEOUT_S": "5",
        "OUTBOX_POLL_S": "0.2",
        "OUTBOX_BACKOFF_BASE_S": "0.2",
        "OUTBOX_BACKOFF_MAX_S": "2",
        "QA_API_URL": "http://127.0.0.1:9",  # nothing listens: tests that need qa-api start one
        "WORKER_API_URL": "http://127.0.0.1:9",
        **users_env,
        **extra,
    }


@pytest.fixture
def deployment(database_url: str, mlflow_server, users_env: dict[str, str], monkeypatch) -> Deployment:
    """feedback-ui on a fresh PostgreSQL database and the session's MLflow server."""
    return Deployment(deployment_env(database_url, mlflow_server.url, users_env), monkeypatch)


@pytest.fixture
def make_deployment(
    database_url: str, mlflow_server, users_env: dict[str, str], monkeypatch
) -> Callable[..., Deployment]:
    def make(**extra: str) -> Deployment:
        return Deployment(deployment_env(database_url, mlflow_server.url, users_env, **extra), monkeypatch)

    return make
