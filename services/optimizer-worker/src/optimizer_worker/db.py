"""The jobs database: engine, sessions, and the Alembic migrations (`optimizer-worker-migrate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from qa_core import database
from qa_core.database import engine_for, session_scope

__all__ = ["MIGRATIONS", "engine_for", "migrate", "migrate_main", "session_scope"]

MIGRATIONS = Path(__file__).parent / "alembic"


# --8<-- [start:migrate]
def migrate(url: str, revision: str = "head") -> None:
    """Bring the jobs database to `revision`; compose runs this as a one-shot job before the service."""
    database.migrate(url, MIGRATIONS, revision)


def migrate_main(argv: list[str] | None = None) -> None:
    from optimizer_worker.settings import Settings

    parser = argparse.ArgumentParser(prog="optimizer-worker-migrate", description="Migrate the jobs database.")
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args(argv)
    settings = Settings()
    migrate(settings.database_url, args.revision)
    print(f"jobs database at {args.revision}")


# --8<-- [end:migrate]
