"""SQL databases of the services that keep state (the feedback store, the jobs table): one engine per URL and
process, all-or-nothing sessions, and Alembic migrations whose URL comes from settings, never an ini file.
PostgreSQL in compose and production; SQLite, embedded, for `make dev`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def psycopg_url(url: str) -> str:
    """To SQLAlchemy `postgresql://` means psycopg2; the images ship psycopg 3, so name that driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine (and connection pool) per database URL and process."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _wal(connection, _record) -> None:  # type: ignore[no-untyped-def]
            # Request handlers and background loops write concurrently; WAL lets readers and one writer overlap.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA busy_timeout=30000")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back when it raises: all or nothing."""
    session = sessionmaker(engine_for(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str, migrations: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["database_url"] = url
    return config


def migrate(url: str, migrations: Path, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` with the Alembic scripts in `migrations`."""
    command.upgrade(alembic_config(url, migrations), revision)


def run_migrations(metadata: MetaData) -> None:
    """The body of a service's alembic/env.py: migrate the URL the caller put in the config."""
    url = context.config.attributes["database_url"]
    with engine_for(url).connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
