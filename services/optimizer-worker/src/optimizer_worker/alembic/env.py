"""Alembic environment: the URL comes from the caller (settings), never from an ini file."""

from __future__ import annotations

from optimizer_worker.models import Base
from qa_core.database import run_migrations

run_migrations(Base.metadata)
