"""Alembic environment: the URL comes from the caller (settings), never from an ini file."""

from __future__ import annotations

from alembic import context

from feedback_ui.db import engine_for
from feedback_ui.models import Base

url = context.config.attributes["database_url"]
with engine_for(url).connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
