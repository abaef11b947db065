"""Taking feedback in: validate, find the trace, and commit the submission with its outbox rows at once.

The web forms and the JSON API both end here, so a rating from a page and one from a script get the
same checks, the same idempotency, and the same path to MLflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field, ValidationInfo, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from feedback_ui import metrics
from feedback_ui.db import Database
from feedback_ui.errors import TraceNotFound
from feedback_ui.models import Answer, Feedback, OutboxItem, Preference
from feedback_ui.traces import TRACE_ID_PATTERN, MlflowUnavailable, TraceStore, is_complete, variant_and_version
from qa_core import contracts
from qa_core.web.errors import IdempotencyConflict, InvalidRequest, NotFound

logger = logging.getLogger(__name__)

KEY_RULES: dict[str, Any] = {"min_length": 8, "max_length": 128, "pattern": r"^[A-Za-z0-9_.:-]+$"}
IDEMPOTENCY_KEY = Field(
    **KEY_RULES,
    description="Chosen by the client, unique per submission; sending it again never records twice.",
)
# Assessment metadata that ties an assessment in MLflow to the outbox row that logged it.
META_KEY = "feedback_ui.key"
META_SUBMISSION = "feedback_ui.submission_id"


def blank_to_none(value: str | None) -> str | None:
    return value.strip() or None if isinstance(value, str) else value


# --8<-- [start:schemas]
class FeedbackIn(BaseModel):
    """A rating of one answer, as the page's form and `POST /api/feedback` send it."""

    trace_id: str = Field(pattern=TRACE_ID_PATTERN, description="The answer's MLflow trace id (`tr-` + 32 hex).")
    rating: Literal["up", "down"]
    correction: str | None = Field(None, max_length=4000, description="What the answer should have been.")
    reason: str | None = Field(None, max_length=2000, description="Why: becomes the assessment's rationale.")
    idempotency_key: str = IDEMPOTENCY_KEY

    _blank = field_validator("correction", "reason", mode="before")(blank_to_none)


class PreferenceIn(BaseModel):
    """A pairwise verdict between two answers to the same question."""

    trace_id_a: str = Field(pattern=TRACE_ID_PATTERN)
    trace_id_b: str = Field(pattern=TRACE_ID_PATTERN)
    preferred: Literal["a", "b", "tie"]
    reason: str | None = Field(None, max_length=2000)
    idempotency_key: str = IDEMPOTENCY_KEY

    _blank = field_validator("reason", mode="before")(blank_to_none)

    @field_validator("trace_id_b")
    @classmethod
    def _two_answers(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("trace_id_a"):
            raise ValueError("must differ from trace_id_a: a preference compares two answers")
        return value


# --8<-- [end:schemas]


class DeliveryView(BaseModel):
    name: str
    status: str
    attempts: int
    assessment_id: str | None
    last_error: str | None


class SubmissionView(BaseModel):
    """What the API returns: the stored submission and how far its delivery to MLflow got."""

    id: str
    kind: Literal["feedback", "preference"]
    trace_ids: list[str]
    status: Literal["pending", "delivered", "failed"]
    variant: str | None = None
    model_version: str | None = None
    deliveries: list[DeliveryView]


@dataclass(frozen=True)
class Submitted:
    view: SubmissionView
    created: bool  # False: the idempotency key named an earlier, identical submission


@dataclass(frozen=True)
class TraceFacts:
    trace_id: str
    variant: str | None
    model_version: str | None
    final: bool  # False: MLflow was down or the trace is still being exported; the outbox fills them in


def payload_hash(body: BaseModel) -> str:
    data = body.model_dump(exclude={"idempotency_key"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class FeedbackService:
    """Submissions in, rows out. `wake` tells the outbox there is something to deliver."""

    def __init__(self, db: Database, traces: TraceStore, wake: Callable[[], None], trace_lookup_wait_s: float) -> None:
        self.db, self.traces, self.wake = db, traces, wake
        self.trace_lookup_wait_s = trace_lookup_wait_s

    # --8<-- [start:submit]
    async def submit_feedback(self, user_id: str, body: FeedbackIn) -> Submitted:
        digest = payload_hash(body)
        earlier = await self.db.run(lambda s: _replay(s, Feedback, user_id, body.idempotency_key, digest))
        if earlier is not None:
            return _replayed(earlier)
        facts = await self.resolve_trace(body.trace_id, "trace_id")
        feedback = Feedback(
            id=str(uuid.uuid4()), user_id=user_id, idempotency_key=body.idempotency_key, payload_hash=digest,
            trace_id=body.trace_id, rating=body.rating == "up", correction=body.correction, reason=body.reason,
            variant=facts.variant, model_version=facts.model_version,
        )  # fmt: skip
        rows = [_outbox_row(feedback.id, "rating", body.trace_id, user_id, "feedback",
                            contracts.ASSESSMENT_USER_RATING, feedback.rating, body.reason)]  # fmt: skip
        if body.correction:
            rows.append(_outbox_row(feedback.id, "correction", body.trace_id, user_id, "expectation",
                                    contracts.ASSESSMENT_CORRECTED_ANSWER, body.correction, None))  # fmt: skip
        submitted = await self._commit(feedback, rows, Feedback, user_id, body.idempotency_key, digest)
        # By variant, for the dashboards and the challenger alert; a replay is not new, and a rating whose
        # variant is not known yet is counted by the outbox when it fills the variant in.
        if submitted.created and facts.final:
            metrics.RATINGS.labels(facts.variant or "unknown", body.rating).inc()
        return submitted

    # --8<-- [end:submit]

    async def submit_preference(self, user_id: str, body: PreferenceIn) -> Submitted:
        digest = payload_hash(body)
        earlier = await self.db.run(lambda s: _replay(s, Preference, user_id, body.idempotency_key, digest))
        if earlier is not None:
            return _replayed(earlier)
        a, b = (
            await self.resolve_trace(body.trace_id_a, "trace_id_a"),
            await self.resolve_trace(body.trace_id_b, "trace_id_b"),
        )
        if a.model_version is not None and a.model_version == b.model_version:
            raise InvalidRequest(
                f"trace_id_b: both answers come from program version {a.model_version}; compare two versions",
                field="trace_id_b",
            )
        preference = Preference(
            id=str(uuid.uuid4()), user_id=user_id, idempotency_key=body.idempotency_key, payload_hash=digest,
            trace_id_a=body.trace_id_a, trace_id_b=body.trace_id_b, preferred=body.preferred, reason=body.reason,
            version_a=a.model_version, version_b=b.model_version,
        )  # fmt: skip
        outcome = {"a": ("win", "loss"), "b": ("loss", "win"), "tie": ("tie", "tie")}[body.preferred]
        rows = [
            _outbox_row(preference.id, side, trace, user_id, "feedback", contracts.ASSESSMENT_PAIRWISE, value,
                        body.reason, {"opponent_trace_id": other, "preference_id": preference.id})
            for side, trace, other, value in (
                ("a", body.trace_id_a, body.trace_id_b, outcome[0]),
                ("b", body.trace_id_b, body.trace_id_a, outcome[1]),
            )
        ]  # fmt: skip
        return await self._commit(preference, rows, Preference, user_id, body.idempotency_key, digest)

    async def view(self, submission_id: str, user_id: str | None) -> SubmissionView:
        """A submission and its delivery state; `user_id` None means any user's (admins)."""

        def load(session: Session) -> SubmissionView:
            for model in (Feedback, Preference):
                row = session.get(model, submission_id)
                if row is not None and (user_id is None or row.user_id == user_id):
                    return _view(session, row)
            raise NotFound(f"no submission {submission_id} of yours")

        return await self.db.run(load)

    # --8<-- [start:resolve-trace]
    async def resolve_trace(self, trace_id: str, field: str) -> TraceFacts:
        """Is this a real answer? Known locally, found in MLflow, or (MLflow down) taken on trust."""
        known = await self.db.run(lambda s: s.get(Answer, trace_id))
        if known is not None:
            return TraceFacts(trace_id, known.variant, known.model_version, final=True)
        # qa-api sends traces in batches, a few milliseconds after the answer: a rating sent at once by
        # an API client can arrive first, so an unknown id is looked up again for a moment before a 404.
        deadline = anyio.current_time() + self.trace_lookup_wait_s
        while True:
            try:
                info = await anyio.to_thread.run_sync(self.traces.info, trace_id)
            except MlflowUnavailable as error:
                # Accept it: the outbox retries until the trace shows up, and parks it if it never does.
                logger.warning("MLflow unavailable; %s accepted unverified: %s", trace_id, error)
                return TraceFacts(trace_id, None, None, final=False)
            if info is not None or anyio.current_time() >= deadline:
                break
            await anyio.sleep(0.2)
        if info is None:
            raise TraceNotFound(
                f"{field}: MLflow has no trace {trace_id}. Use the trace_id qa-api returned; "
                "if the answer is only seconds old, retry shortly.",
                field=field,
            )
        if not is_complete(info):  # a real answer, seconds old: its tags arrive with its spans
            return TraceFacts(trace_id, None, None, final=False)
        variant, version = variant_and_version(info)
        return TraceFacts(trace_id, variant, version, final=True)

    # --8<-- [end:resolve-trace]

    async def _commit(
        self, row: Feedback | Preference, outbox: list[OutboxItem], model: type, user_id: str, key: str, digest: str
    ) -> Submitted:
        def write(session: Session) -> SubmissionView:
            session.add(row)
            session.flush()  # the submission first: the unique key decides before any outbox row exists
            session.add_all(outbox)
            session.flush()
            return _view(session, row)

        try:
            view = await self.db.run(write)
        except IntegrityError:
            # The same key, committed by a concurrent request a moment ago: answer as a replay.
            earlier = await self.db.run(lambda s: _replay(s, model, user_id, key, digest))
            if earlier is None:
                raise
            return _replayed(earlier)
        self.wake()
        metrics.SUBMISSIONS.labels(view.kind, "created").inc()
        return Submitted(view, created=True)


# --8<-- [start:outbox-row]
def _outbox_row(
    submission_id: str, part: str, trace_id: str, user_id: str, kind: str, name: str, value: Any,
    rationale: str | None, extra: dict[str, str] | None = None,
) -> OutboxItem:  # fmt: skip
    """One assessment to log. Its key goes into the assessment's metadata, so a retry can see it landed."""
    key = f"{submission_id}:{part}"
    return OutboxItem(
        key=key, trace_id=trace_id, kind=kind, name=name, value={"v": value}, rationale=rationale,
        source_id=user_id, submission_id=submission_id,
        metadata_={META_KEY: key, META_SUBMISSION: submission_id, **(extra or {})},
    )  # fmt: skip


# --8<-- [end:outbox-row]


def _replayed(view: SubmissionView) -> Submitted:
    metrics.SUBMISSIONS.labels(view.kind, "replayed").inc()
    return Submitted(view, created=False)


def _replay(session: Session, model: type, user_id: str, key: str, digest: str) -> SubmissionView | None:
    row = session.scalar(select(model).where(model.user_id == user_id, model.idempotency_key == key))
    if row is None:
        return None
    if row.payload_hash != digest:
        raise IdempotencyConflict(
            "idempotency_key: this key was already used for a different submission; use a new key",
            field="idempotency_key",
        )
    return _view(session, row)


def _view(session: Session, row: Feedback | Preference) -> SubmissionView:
    items = session.scalars(select(OutboxItem).where(OutboxItem.submission_id == row.id).order_by(OutboxItem.id))
    deliveries = [
        DeliveryView(name=i.name, status=i.status, attempts=i.attempts, assessment_id=i.assessment_id,
                     last_error=i.last_error)
        for i in items
    ]  # fmt: skip
    states = {d.status for d in deliveries}
    status = "failed" if "failed" in states else "pending" if "pending" in states else "delivered"
    if isinstance(row, Feedback):
        return SubmissionView(id=row.id, kind="feedback", trace_ids=[row.trace_id], status=status,
                              variant=row.variant, model_version=row.model_version, deliveries=deliveries)  # fmt: skip
    return SubmissionView(id=row.id, kind="preference", trace_ids=[row.trace_id_a, row.trace_id_b], status=status,
                          deliveries=deliveries)  # fmt: skip
