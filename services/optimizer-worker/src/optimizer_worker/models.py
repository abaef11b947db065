"""The jobs table: one row per optimization job, the single source of truth for its state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from qa_core.database import UTCDateTime


class Base(DeclarativeBase):
    pass


# --8<-- [start:job-model]
class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    trigger: Mapped[str] = mapped_column(String(16), default="api")  # "api" or "auto"
    state: Mapped[str] = mapped_column(String(16), index=True)
    optimizer: Mapped[str] = mapped_column(String(32))
    budget: Mapped[int] = mapped_column(Integer)
    dataset_options: Mapped[dict[str, Any]] = mapped_column(JSON)
    stage: Mapped[str] = mapped_column(String(32), default="queued")
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True))
    # The lease: who runs the job and when it last said it was alive. A stale lease means a dead worker.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    mlflow_experiment_id: Mapped[str | None] = mapped_column(String(64))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    dataset_hash: Mapped[str | None] = mapped_column(String(64))
    dataset_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    decision: Mapped[str | None] = mapped_column(String(16))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    registered_version: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(Text)


# --8<-- [end:job-model]
