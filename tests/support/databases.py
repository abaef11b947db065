"""PostgreSQL and Redis for tests: from DATABASE_URL / REDIS_URL, else testcontainers, else the local servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def postgres_server_url() -> Iterator[str]:
    """A PostgreSQL server URL: DATABASE_URL, else a testcontainer, else the machine's local server."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
    elif docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url()
    elif reachable(LOCAL_POSTGRES):
        yield LOCAL_POSTGRES
    else:
        raise RuntimeError("No PostgreSQL: set DATABASE_URL, or make Docker available for testcontainers")


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server for one test module; dropped afterwards."""
    import sqlalchemy

    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(_with_driver(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _with_driver(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


@contextlib.contextmanager
def redis_server_url() -> Iterator[str]:
    """A Redis URL: REDIS_URL, else a testcontainer, else the machine's local server."""
    if url := os.environ.get("REDIS_URL"):
        yield url
    elif docker_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7") as container:
            host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
            yield f"redis://{host}:{port}/0"
    elif reachable(LOCAL_REDIS):
        yield LOCAL_REDIS
    else:
        raise RuntimeError("No Redis: set REDIS_URL, or make Docker available for testcontainers")
