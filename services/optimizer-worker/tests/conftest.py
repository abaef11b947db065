"""Fixtures that start real things: PostgreSQL, Redis, an MLflow server, the LM simulator, worker processes."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from optimizer_worker.db import migrate
from optimizer_worker.main import create_app
from optimizer_worker.settings import Settings
from tests.support import processes
from tests.support.traces import log_qa_trace

# A key shaped like a hosted one. The secret scan looks for it in everything a job writes.
SECRET_KEY = "sk-test-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def slow_simulator_base() -> Iterator[str]:
    """An LM simulator that takes 150 ms per call, so a job runs long enough to watch, cancel or kill."""
    with processes.lm_simulator(latency_ms=150) as base:
        yield base


def worker_env(database_url: str, broker_url: str, mlflow_url: str, lm_base: str, **overrides: str) -> dict[str, str]:
    """The environment of one isolated deployment: its own queue, registered model and experiments."""
    uid = uuid.uuid4().hex[:10]
    env = {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "QUEUE_NAME": f"jobs-{uid}",
        "MLFLOW_TRACKING_URI": mlflow_url,
        "REGISTERED_MODEL_NAME": f"qa-{uid}",
        "MLFLOW_EXPERIMENT_NAME": f"qa-traces-{uid}",
        "OPTIMIZATION_EXPERIMENT_NAME": f"optimization-{uid}",
        "LM_MODEL": "openai/lm-simulator",
        "LM_API_BASE": lm_base,
        "LM_API_KEY": SECRET_KEY,
        "HEARTBEAT_INTERVAL_S": "0.5",
        "LEASE_TIMEOUT_S": "4",
        "RECOVERY_INTERVAL_S": "1",
        "PROMOTION_MARGIN": "0",
        "EVAL_THREADS": "2",
    }
    return {**env, **overrides}


def settings_from(env: dict[str, str]) -> Settings:
    return Settings(_env_file=None, **{key.lower(): value for key, value in env.items()})  # type: ignore[arg-type]


class Deployment:
    """One isolated deployment of the service for a test: its environment, and ways to start its parts.

    (Test modules cannot import from conftest under `--import-mode=importlib`, so the helpers live here.)
    """

    def __init__(self, env: dict[str, str], migrated: bool = True) -> None:
        self.env = env
        if migrated:
            migrate(self.settings.database_url)

    def with_env(self, migrated: bool = True, **overrides: str) -> Deployment:
        return Deployment({**self.env, **overrides}, migrated)

    @property
    def settings(self) -> Settings:
        return settings_from(self.env)

    @contextlib.contextmanager
    def api(self) -> Iterator[TestClient]:
        with TestClient(create_app(self.settings)) as client:
            yield client

    @contextlib.contextmanager
    def worker(self) -> Iterator[processes.ManagedProcess]:
        """A real `optimizer-worker worker` process (Celery, prefork, one job per child)."""
        args = [sys.executable, "-m", "optimizer_worker.cli", "worker"]
        with processes.running(
            args, "", env=self.env, timeout_s=90, name="optimizer-worker", ready_text="ready."
        ) as proc:
            yield proc

    def versions(self) -> list:
        client = MlflowClient(self.env["MLFLOW_TRACKING_URI"])
        return client.search_model_versions(f"name = '{self.env['REGISTERED_MODEL_NAME']}'")

    @staticmethod
    def wait_for(
        client: TestClient, job_id: str, done: Callable[[dict], bool], timeout_s: float = 180, seen: list | None = None
    ) -> dict:
        """Poll the job until `done(view)`; every view seen is appended to `seen`."""
        deadline = time.monotonic() + timeout_s
        while True:
            view = client.get(f"/v1/jobs/{job_id}").json()
            if seen is not None:
                seen.append(view)
            if done(view):
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not get there in {timeout_s} s; last view: {view}")
            time.sleep(0.1)

    @staticmethod
    def finished(view: dict) -> bool:
        return view["state"] in ("succeeded", "failed", "cancelled")

    @staticmethod
    def write_dataset(folder: Path, train: list[dict], dev: list[dict], test: list[dict]) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in (("train", train), ("dev", dev), ("test", test)):
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        return folder


@pytest.fixture
def deployment(database_url: str, redis_url: str, mlflow_server, simulator_base: str) -> Deployment:
    """A deployment on a fresh PostgreSQL database, real Redis, the session's MLflow server, the fast simulator."""
    return Deployment(worker_env(database_url, redis_url, mlflow_server.url, simulator_base))


@pytest.fixture
def slow_deployment(database_url: str, redis_url: str, mlflow_server, slow_simulator_base: str) -> Deployment:
    """Like `deployment`, with an LM that takes 150 ms per call: long enough to watch, cancel or kill a job."""
    return Deployment(worker_env(database_url, redis_url, mlflow_server.url, slow_simulator_base))


@pytest.fixture
def qa_trace() -> Callable[..., str]:
    """Traces shaped like qa-api's, with human feedback on them (tests.support.traces)."""
    return log_qa_trace


@pytest.fixture
def make_deployment(database_url: str, redis_url: str, mlflow_server) -> Callable[..., Deployment]:
    """A deployment against any LM: `make_deployment(lm_base, LM_MODEL=..., ...)`."""

    def make(lm_base: str, **overrides: str) -> Deployment:
        return Deployment(worker_env(database_url, redis_url, mlflow_server.url, lm_base, **overrides))

    return make
