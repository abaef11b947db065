"""The feedback database: engine, sessions, a thread limiter for async callers, and the migrations."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import anyio
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "alembic"
T = TypeVar("T")


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
            # Requests and the outbox write concurrently; WAL lets readers and one writer overlap.
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


class Database:
    """The database as async code uses it: each unit of work runs in a thread, at most `threads` at once."""

    def __init__(self, url: str, threads: int) -> None:
        self.url = url
        self.slots = anyio.CapacityLimiter(threads)

    async def run(self, work: Callable[[Session], T]) -> T:
        def in_thread() -> T:
            with session_scope(self.url) as session:
                return work(session)

        return await anyio.to_thread.run_sync(in_thread, limiter=self.slots)


# --8<-- [start:migrate]
def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the feedback database to `revision`; compose runs this as a one-shot job before the service."""
    engine_for(url)  # creates the SQLite folder when needed
    command.upgrade(alembic_config(url), revision)


def migrate_main(argv: list[str] | None = None) -> None:
    """Console entry point: `feedback-ui-migrate [revision]`."""
    from feedback_ui.settings import Settings

    parser = argparse.ArgumentParser(prog="feedback-ui-migrate", description="Migrate the feedback database.")
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)
    settings = Settings()
    migrate(settings.database_url, args.revision)
    print(f"feedback database at {args.revision}")


# --8<-- [end:migrate]
