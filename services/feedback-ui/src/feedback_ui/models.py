"""The feedback database: what people submitted, the outbox that carries it to MLflow, and the audit log.

The database is the system of record for feedback. MLflow gets a copy, delivered by the outbox; if
MLflow is down, nothing is lost, because the row was committed before the page said "saved".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from qa_core.database import UTCDateTime, utcnow


class Base(DeclarativeBase):
    # Naive UTC in the columns (the first migration made them `timestamp`), aware UTC in the code.
    type_annotation_map: ClassVar = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Answer(Base):
    """An answer a person saw: asked on the Ask or Compare page, or shown by the review queue."""

    __tablename__ = "answers"

    trace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[Any]] = mapped_column(default=list)
    variant: Mapped[str | None] = mapped_column(String(16))
    model_version: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(128), doc="qa-api's echo of the page's request id")
    session_id: Mapped[str | None] = mapped_column(String(128))
    origin: Mapped[str] = mapped_column(String(16), doc="ask, compare or review")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --8<-- [start:feedback-model]
class Feedback(Base):
    """One submission: a rating, with an optional corrected answer and reason."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_feedback_idempotency"),
        Index("ix_feedback_version", "model_version"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    payload_hash: Mapped[str] = mapped_column(String(64), doc="what was submitted, to tell a replay from a reuse")
    trace_id: Mapped[str] = mapped_column(String(64), index=True)
    rating: Mapped[bool] = mapped_column(Boolean)
    correction: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    variant: Mapped[str | None] = mapped_column(String(16), doc="from the trace; filled in on delivery if unknown")
    model_version: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Preference(Base):
    """A pairwise verdict: which of two answers to the same question was better, or a tie."""

    __tablename__ = "preferences"
    __table_args__ = (UniqueConstraint("user_id", "idempotency_key", name="uq_preference_idempotency"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    payload_hash: Mapped[str] = mapped_column(String(64))
    trace_id_a: Mapped[str] = mapped_column(String(64))
    trace_id_b: Mapped[str] = mapped_column(String(64))
    preferred: Mapped[str] = mapped_column(String(8), doc="a, b or tie")
    reason: Mapped[str | None] = mapped_column(Text)
    version_a: Mapped[str | None] = mapped_column(String(32))
    version_b: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxItem(Base):
    """One assessment to log on one trace. Written in the same transaction as the submission."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(80), unique=True, doc="also stored on the assessment, so a retry finds it")
    trace_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16), doc="feedback or expectation")
    name: Mapped[str] = mapped_column(String(64), doc="the assessment name, from qa_core.contracts")
    value: Mapped[dict[str, Any]] = mapped_column(doc='{"v": value}, so any JSON value fits')
    rationale: Mapped[str | None] = mapped_column(Text)
    source_id: Mapped[str] = mapped_column(String(64), doc="the user id, as the assessment's HUMAN source")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    submission_id: Mapped[str] = mapped_column(String(36), index=True, doc="the feedback or preference it carries")
    status: Mapped[str] = mapped_column(String(16), default="pending", doc="pending, delivered or failed")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(doc="lease: another process skips the row until then")
    claim_token: Mapped[str | None] = mapped_column(String(36), index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    assessment_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()


# --8<-- [end:feedback-model]


class Comparison(Base):
    """A side-by-side shown on the Compare page; which side is which variant stays on the server."""

    __tablename__ = "comparisons"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(Text)
    left_trace_id: Mapped[str] = mapped_column(String(64))
    right_trace_id: Mapped[str] = mapped_column(String(64))
    preference_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewSkip(Base):
    """A trace someone chose not to rate; it leaves their review queue."""

    __tablename__ = "review_skips"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginFailure(Base):
    """Failed logins, counted per user name and per address for the rate limit (shared by all replicas)."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class AuditEntry(Base):
    """An experiment control someone used: a share change, a promotion, a roll back."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outcome: Mapped[str] = mapped_column(String(16), doc="ok or failed")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
