"""SQL databases of the services that keep state (the feedback store, the jobs table): their settings, one
engine per URL and process, all-or-nothing sessions, a UTC column type, and Alembic migrations whose URL comes
from settings, never an ini file. PostgreSQL in compose and production; SQLite, embedded, for `make dev`."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from pydantic import Field, field_validator
from sqlalchemy import DateTime, Dialect, Engine, MetaData, TypeDecorator, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from qa_core.settings import CoreSettings


def psycopg_url(url: str) -> str:
    """To SQLAlchemy `postgresql://` means psycopg2; the images ship psycopg 3, so name that driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class DatabaseSettings(CoreSettings):
    """The settings of a service that keeps a database. The service redeclares `database_url` with its own
    default (each has its own SQLite file) and keeps the driver rule."""

    database_url: str = Field(description="SQLAlchemy URL of the database. `postgresql://...` uses psycopg 3.")

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, url: str) -> str:
        return psycopg_url(url)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every database.

    SQLite keeps no time zone and PostgreSQL answers in the session's: without this, one database hands
    back naive values and the other aware ones in some zone. `timezone=True` stores a `timestamptz`,
    `False` naive UTC in a `timestamp`; what the code sees is the same either way.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self, timezone: bool = False) -> None:
        super().__init__(timezone=timezone)
        self.timezone = timezone

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value if self.timezone else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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


# --8<-- [start:migrate-main]
def migrate_main(
    settings_class: type[DatabaseSettings], migrations: Path, what: str, argv: list[str] | None = None
) -> None:
    """The body of a service's `<service>-migrate [revision]` console script; compose runs it as a one-shot
    job before the service starts. `what` names the database in the help and the last line."""
    parser = argparse.ArgumentParser(description=f"Migrate the {what}.")
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)
    migrate(settings_class().database_url, migrations, args.revision)
    print(f"{what} at {args.revision}")


# --8<-- [end:migrate-main]


def run_migrations(metadata: MetaData) -> None:
    """The body of a service's alembic/env.py: migrate the URL the caller put in the config."""
    url = context.config.attributes["database_url"]
    with engine_for(url).connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
