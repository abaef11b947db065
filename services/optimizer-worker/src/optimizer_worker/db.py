"""The jobs database: engine, sessions, and the Alembic migrations (`optimizer-worker-migrate`)."""

from __future__ import annotations

from pathlib import Path

from optimizer_worker.settings import Settings
from qa_core import database
from qa_core.database import engine_for, session_scope

__all__ = ["MIGRATIONS", "engine_for", "migrate", "migrate_main", "session_scope"]

MIGRATIONS = Path(__file__).parent / "alembic"


def migrate(url: str, revision: str = "head") -> None:
    """Bring the jobs database to `revision`; compose runs `optimizer-worker-migrate` before the service."""
    database.migrate(url, MIGRATIONS, revision)


def migrate_main(argv: list[str] | None = None) -> None:
    """Console entry point: `optimizer-worker-migrate [revision]`."""
    database.migrate_main(Settings, MIGRATIONS, "jobs database", argv)
