"""Request ids of up to 128 characters, the length every service accepts (qa_core.web.request_context)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("answers") as batch:
        batch.alter_column("request_id", existing_type=sa.String(64), type_=sa.String(128), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("answers") as batch:
        batch.alter_column("request_id", existing_type=sa.String(128), type_=sa.String(64), existing_nullable=True)
