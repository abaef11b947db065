"""qa_core.database: the settings of a service with a database, the UTC column type, the migrate command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import Field
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, event, insert, inspect, select

from qa_core.database import DatabaseSettings, UTCDateTime, migrate_main

PARIS = timezone(timedelta(hours=2))
WHEN = datetime(2026, 11, 25, 14, 30, tzinfo=PARIS)


class DemoSettings(DatabaseSettings):
    database_url: str = Field("sqlite:///demo.db", description="Where the demo keeps its rows.")


def test_a_postgres_url_names_the_psycopg3_driver_whatever_the_default() -> None:
    assert DemoSettings(_env_file=None).database_url == "sqlite:///demo.db"
    given = DemoSettings(_env_file=None, database_url="postgres://u@h/db").database_url
    assert given == "postgresql+psycopg://u@h/db"


def round_trip(url: str, timezone_aware: bool, session_timezone: str | None = None) -> list[datetime]:
    engine = create_engine(url)
    if session_timezone:  # PostgreSQL answers in the session's zone: make it one that is not UTC

        @event.listens_for(engine, "connect")
        def _zone(connection, _record) -> None:  # type: ignore[no-untyped-def]
            with connection.cursor() as cursor:
                cursor.execute(f"SET TIME ZONE '{session_timezone}'")

    table = Table(
        "events", MetaData(), Column("id", Integer, primary_key=True), Column("at", UTCDateTime(timezone_aware))
    )
    table.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(table), [{"id": 1, "at": WHEN}, {"id": 2, "at": None}])
        later = connection.scalars(select(table.c.id).where(table.c.at > WHEN - timedelta(minutes=1))).all()
        assert later == [1]  # a bound value is compared in UTC too
        values = list(connection.scalars(select(table.c.at).order_by(table.c.id)))
    engine.dispose()
    return values


@pytest.mark.parametrize("timezone_aware", [False, True])
def test_datetimes_come_back_aware_and_in_utc_from_sqlite(tmp_path: Path, timezone_aware: bool) -> None:
    at, missing = round_trip(f"sqlite:///{tmp_path}/utc.db", timezone_aware)
    assert at == WHEN
    assert at.tzinfo is UTC
    assert missing is None


@pytest.mark.slow
@pytest.mark.parametrize("timezone_aware", [False, True])
def test_datetimes_come_back_aware_and_in_utc_from_postgres(database_url: str, timezone_aware: bool) -> None:
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    at, missing = round_trip(url, timezone_aware, session_timezone="America/New_York")
    assert at == WHEN
    assert at.tzinfo is UTC
    assert missing is None


MIGRATION = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table("things", sa.Column("id", sa.Integer, primary_key=True))
"""


def test_migrate_main_brings_the_settings_database_to_the_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    migrations = tmp_path / "alembic"
    (migrations / "versions").mkdir(parents=True)
    (migrations / "env.py").write_text(
        "from sqlalchemy import MetaData\nfrom qa_core.database import run_migrations\nrun_migrations(MetaData())\n"
    )
    (migrations / "versions" / "0001_things.py").write_text(MIGRATION)
    url = f"sqlite:///{tmp_path}/demo.db"
    monkeypatch.setenv("DATABASE_URL", url)
    migrate_main(DemoSettings, migrations, "demo database", [])
    assert capsys.readouterr().out.strip().endswith("demo database at head")
    engine = create_engine(url)
    assert {"things", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()
