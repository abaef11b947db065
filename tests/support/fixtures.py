"""Pytest fixtures shared by every package and service (registered in the root conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import databases, processes


@pytest.fixture(scope="session")
def simulator_base() -> Iterator[str]:
    """A shared LM simulator with no latency, no pacing and no faults."""
    with processes.lm_simulator() as base:
        yield base


@pytest.fixture(scope="session")
def llama_adapters_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The adapters folder of the shared LM server: an adapter written here is served as `<base>+<name>`."""
    return tmp_path_factory.mktemp("adapters")


@pytest.fixture(scope="session")
def llama_base(llama_adapters_dir: Path) -> Iterator[str]:
    """The real llama.cpp server with SmolLM2, shared by the tests that need the real model."""
    with processes.llama_server(LM_SERVER_ADAPTERS_DIR=str(llama_adapters_dir)) as base:
        yield base


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.ManagedProcess]:
    """A real MLflow tracking server for the session; `.url` is its address, `.stop()`/`.start()` work."""
    with processes.mlflow_server(str(tmp_path_factory.mktemp("mlflow"))) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    with databases.postgres_server_url() as url:
        yield url


@pytest.fixture
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with databases.fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with databases.redis_server_url() as url:
        yield url
