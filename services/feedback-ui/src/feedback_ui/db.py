"""The feedback database: engine, sessions, a thread limiter for async callers, and the migrations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
from sqlalchemy.orm import Session

from feedback_ui.settings import Settings
from qa_core import database
from qa_core.database import engine_for, session_scope

__all__ = ["MIGRATIONS", "Database", "engine_for", "migrate", "migrate_main", "session_scope"]

MIGRATIONS = Path(__file__).parent / "alembic"
T = TypeVar("T")


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


def migrate(url: str, revision: str = "head") -> None:
    """Bring the feedback database to `revision`; compose runs `feedback-ui-migrate` before the service."""
    database.migrate(url, MIGRATIONS, revision)


def migrate_main(argv: list[str] | None = None) -> None:
    """Console entry point: `feedback-ui-migrate [revision]`."""
    database.migrate_main(Settings, MIGRATIONS, "feedback database", argv)
