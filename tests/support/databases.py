"""PostgreSQL and Redis for tests: from DATABASE_URL / REDIS_URL, else testcontainers, else the local servers."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import uuid
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0


def image_present(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=30).returncode == 0


@contextlib.contextmanager
def started(container: DockerContainer, local_url: str) -> Iterator[DockerContainer | None]:
    """Start a testcontainer; None when it cannot start (no image and no registry) and the local server is up."""
    from testcontainers.core.config import testcontainers_config

    if not image_present(testcontainers_config.ryuk_image):
        # Ryuk removes containers a killed test run leaves behind; without its image (offline), the context
        # manager still stops each container when the run ends normally.
        testcontainers_config.ryuk_disabled = True
    try:
        container.start()
    except Exception as error:  # an image that cannot be pulled, a daemon that refuses: use the local server
        with contextlib.suppress(Exception):  # it may have been created before it failed
            container.stop()
        if not reachable(local_url):
            raise
        warnings.warn(f"testcontainers could not start {container.image} ({error}); using {local_url}", stacklevel=3)
        yield None
        return
    try:
        yield container
    finally:
        container.stop()


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
        from testcontainers.community.postgres import PostgresContainer

        with started(PostgresContainer("postgres:16", driver=None), LOCAL_POSTGRES) as container:
            yield container.get_connection_url() if container else LOCAL_POSTGRES
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
        from testcontainers.community.redis import RedisContainer

        with started(RedisContainer("redis:7"), LOCAL_REDIS) as container:
            if container is None:
                yield LOCAL_REDIS
            else:
                yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
    elif reachable(LOCAL_REDIS):
        yield LOCAL_REDIS
    else:
        raise RuntimeError("No Redis: set REDIS_URL, or make Docker available for testcontainers")
