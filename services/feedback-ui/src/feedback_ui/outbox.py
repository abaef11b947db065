"""The outbox: carries committed feedback to MLflow as assessments on the trace, until it is there.

A submission is committed to our database with one outbox row per assessment. This loop delivers
them, trace by trace, in the order they were written:

- MLflow down: the attempt is recorded and retried with exponential backoff (the whole loop slows
  down too, so a dead MLflow costs one failed call per round, not one per row).
- Trace not exported yet (qa-api writes traces asynchronously): retried the same way; after
  `outbox_trace_wait_s` the row is parked as failed, still in the database.
- Exactly once: every assessment carries its outbox key in its metadata. Before logging, we read the
  trace's assessments; if the key is already there (we logged it, then crashed before marking the row),
  the row is marked delivered with that assessment instead of logging a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from mlflow.entities import Assessment, AssessmentSource, AssessmentSourceType, Expectation, Feedback, TraceInfo
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from feedback_ui import metrics
from feedback_ui.db import Database
from feedback_ui.feedback import META_KEY
from feedback_ui.models import Feedback as FeedbackRow
from feedback_ui.models import OutboxItem, Preference
from feedback_ui.settings import Settings
from feedback_ui.traces import MlflowUnavailable, TraceStore, is_complete, variant_and_version
from qa_core import contracts
from qa_core.database import utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to one outbox row in one attempt."""

    item_id: int
    assessment_id: str | None = None  # set: delivered
    error: str | None = None
    reason: str = ""  # mlflow_unavailable, trace_not_found, not_attempted
    found_existing: bool = False


@dataclass(frozen=True)
class Claimed:
    trace_id: str
    items: list[OutboxItem]


def backoff_s(attempts: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: base, 2·base, 4·base ... capped, each scaled by 0.5-1.0."""
    return min(max_s, base_s * 2 ** max(0, attempts - 1)) * (0.5 + rng.random() / 2)


# --8<-- [start:build-assessment]
def build_assessment(item: OutboxItem, info: TraceInfo) -> Assessment:
    """The assessment an outbox row stands for. A user's new rating overrides their earlier one on the
    trace (MLflow marks the old one invalid), so the optimizer sees one verdict per person."""
    source = AssessmentSource(source_type=AssessmentSourceType.HUMAN, source_id=item.source_id)
    value = item.value["v"]
    if item.kind == "expectation":
        return Expectation(name=item.name, value=value, source=source, metadata=item.metadata_)
    overrides = None
    if item.name == contracts.ASSESSMENT_USER_RATING:
        earlier = [
            a for a in info.assessments or []
            if a.name == item.name and a.valid is not False and a.source is not None
            and a.source.source_type == AssessmentSourceType.HUMAN and a.source.source_id == item.source_id
        ]  # fmt: skip
        if earlier:
            overrides = max(earlier, key=lambda a: a.create_time_ms or 0).assessment_id
    return Feedback(
        name=item.name, value=value, rationale=item.rationale, source=source, metadata=item.metadata_,
        overrides=overrides,
    )  # fmt: skip


# --8<-- [end:build-assessment]


# --8<-- [start:deliver-trace]
def deliver_trace(traces: TraceStore, claimed: Claimed) -> tuple[list[Outcome], TraceInfo | None]:
    """Deliver one trace's rows in order (blocking). Stops at the first failure: order matters for overrides."""
    try:
        info = traces.info(claimed.trace_id)
    except MlflowUnavailable as error:
        return [Outcome(i.id, error=str(error), reason="mlflow_unavailable") for i in claimed.items], None
    if info is None or not is_complete(info):
        message = f"trace {claimed.trace_id} is not (completely) in MLflow yet"
        return [Outcome(i.id, error=message, reason="trace_not_found") for i in claimed.items], None
    already = {a.metadata.get(META_KEY): a for a in info.assessments or [] if a.metadata}
    info.assessments = list(info.assessments or [])
    outcomes: list[Outcome] = []
    for position, item in enumerate(claimed.items):
        if item.key in already:  # logged before, the mark was lost: do not log it twice
            outcomes.append(Outcome(item.id, assessment_id=already[item.key].assessment_id, found_existing=True))
            continue
        try:
            logged = traces.log(claimed.trace_id, build_assessment(item, info))
        except MlflowUnavailable as error:
            outcomes.append(Outcome(item.id, error=str(error), reason="mlflow_unavailable"))
            outcomes += [Outcome(i.id, reason="not_attempted") for i in claimed.items[position + 1 :]]
            break
        outcomes.append(Outcome(item.id, assessment_id=logged.assessment_id))
        # The next row of this trace (a later rating by the same person) must see this one to override it.
        if logged.name == contracts.ASSESSMENT_USER_RATING and logged.source is not None:
            info.assessments.append(logged)
    return outcomes, info


# --8<-- [end:deliver-trace]


class Outbox:
    """The delivery loop. Started and stopped by the app's lifespan; one per process, safe with several."""

    def __init__(self, settings: Settings, db: Database, traces: TraceStore, rng: random.Random | None = None) -> None:
        self.settings, self.db, self.traces = settings, db, traces
        self.rng = rng or random.Random()
        self.mlflow_slots = anyio.CapacityLimiter(settings.outbox_concurrency)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.mlflow_failures = 0  # consecutive rounds that found MLflow down
        self.last_error: str | None = None

    def wake(self) -> None:
        """Deliver now (a submission was just committed) instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the current round, then return: a clean stop leaves no claim behind."""
        self._stopping.set()
        self._wake.set()

    # --8<-- [start:run-forever]
    async def run_forever(self) -> None:
        logger.info("outbox started")
        try:
            with contextlib.suppress(SQLAlchemyError):  # the first round retries a database that is not up
                await self.publish_gauges()
            while not self._stopping.is_set():
                try:
                    delivered_some, mlflow_down = await self.run_once()
                except SQLAlchemyError as error:  # the database is down or busy: log it, wait, and try again
                    logger.warning("outbox round failed: %s", error)
                    delivered_some, mlflow_down = False, True
                if (delivered_some and not mlflow_down) or self._stopping.is_set():
                    continue  # there may be more due right now (or we are stopping)
                delay = self.settings.outbox_poll_s
                if mlflow_down:
                    delay = max(delay, backoff_s(self.mlflow_failures, self.settings.outbox_backoff_base_s,
                                                 self.settings.outbox_backoff_max_s, self.rng))  # fmt: skip
                self._wake.clear()
                with anyio.move_on_after(delay):
                    await self._wake.wait()
        finally:
            logger.info("outbox stopped")

    async def run_once(self) -> tuple[bool, bool]:
        """One round: claim due traces, deliver them concurrently, record the outcomes."""
        token = str(uuid.uuid4())
        results: list[tuple[list[Outcome], TraceInfo | None]] = []
        down = anyio.Event()  # set by the first call that finds MLflow unavailable: the rest wait for next round

        async def one(group: Claimed) -> None:
            if down.is_set():
                results.append(([Outcome(i.id, reason="not_attempted") for i in group.items], None))
                return
            outcome = await anyio.to_thread.run_sync(deliver_trace, self.traces, group, limiter=self.mlflow_slots)
            if any(o.reason == "mlflow_unavailable" for o in outcome[0]):
                down.set()
            results.append(outcome)

        # Not cancelled half-way in normal operation: stop() lets the round finish. If it is cancelled anyway,
        # the claims are not handed back (a delivery may still be running in its thread); the lease expires.
        claimed = await self.db.run(lambda s: claim(s, token, self.settings))
        if not claimed:
            return False, False
        await one(claimed[0])  # a probe: when MLflow is down, one call finds out, not one per trace
        async with anyio.create_task_group() as tasks:
            for group in claimed[1:]:
                tasks.start_soon(one, group)
        outcomes = [o for group_outcomes, _ in results for o in group_outcomes]
        infos = [info for _, info in results if info is not None]
        await self.db.run(lambda s: record(s, outcomes, infos, self.settings, self.rng))
        await self.publish_gauges()  # counts change only in a round that claimed rows (an idle round skips this)
        mlflow_down = any(o.reason == "mlflow_unavailable" for o in outcomes)
        self.mlflow_failures = self.mlflow_failures + 1 if mlflow_down else 0
        self.last_error = next((o.error for o in outcomes if o.error), None) if mlflow_down else None
        _count(outcomes)
        return any(o.assessment_id for o in outcomes), mlflow_down

    # --8<-- [end:run-forever]

    async def publish_gauges(self) -> None:
        counts = await self.db.run(status_counts)
        for status in ("pending", "delivered", "failed"):
            metrics.OUTBOX_ITEMS.labels(status).set(counts.get(status, 0))


# --8<-- [start:claim]
def claim(session: Session, token: str, settings: Settings) -> list[Claimed]:
    """Claim up to `outbox_batch` traces with a due row. The lease makes this safe with several replicas:
    a trace claimed by another process is skipped until that claim finishes or expires."""
    now = utcnow()
    due = session.execute(
        select(OutboxItem.trace_id, func.min(OutboxItem.id))
        .where(OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now)
        .where(or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until < now))
        .group_by(OutboxItem.trace_id)
        .order_by(func.min(OutboxItem.id))
        .limit(settings.outbox_batch)
    ).all()
    lease = now + timedelta(seconds=settings.outbox_lease_s)
    groups = []
    for trace_id, _ in due:
        taken = session.execute(
            update(OutboxItem)
            .where(OutboxItem.trace_id == trace_id, OutboxItem.status == "pending")
            .where(or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until < now))
            .values(claimed_until=lease, claim_token=token)
        )
        if taken.rowcount:
            items = session.scalars(
                select(OutboxItem).where(OutboxItem.claim_token == token, OutboxItem.trace_id == trace_id)
                .order_by(OutboxItem.id)
            ).all()  # fmt: skip
            groups.append(Claimed(trace_id, list(items)))
    return groups


# --8<-- [end:claim]


# --8<-- [start:record]
def record(session: Session, outcomes: Iterable[Outcome], infos: list[TraceInfo], settings: Settings,
           rng: random.Random) -> None:  # fmt: skip
    """Mark what was delivered, schedule what was not, park what waited too long for its trace."""
    now = utcnow()
    for outcome in outcomes:
        item = session.get(OutboxItem, outcome.item_id)
        if item is None:
            continue
        item.claimed_until, item.claim_token = None, None
        if outcome.assessment_id:
            item.status, item.assessment_id, item.delivered_at = "delivered", outcome.assessment_id, now
            item.last_error = None
            metrics.DELIVERY_LAG.observe((now - item.created_at).total_seconds())
        elif outcome.reason != "not_attempted":
            item.attempts += 1
            item.last_error = outcome.error
            waited = (now - item.created_at).total_seconds()
            if outcome.reason == "trace_not_found" and waited > settings.outbox_trace_wait_s:
                item.status = "failed"  # parked, never deleted: an operator can look and re-queue it
                logger.error("outbox row %s parked: trace %s never appeared", item.key, item.trace_id)
            else:
                delay = backoff_s(item.attempts, settings.outbox_backoff_base_s, settings.outbox_backoff_max_s, rng)
                item.next_attempt_at = now + timedelta(seconds=delay)
    for info in infos:
        fill_in_versions(session, info)


def fill_in_versions(session: Session, info: TraceInfo) -> None:
    """Feedback accepted while MLflow was down, or before its trace was complete, did not know its variant
    and version; the complete trace does."""
    variant, version = variant_and_version(info)
    if variant is None:  # not a qa-api answer: nothing to attribute
        return
    unknown = (FeedbackRow.trace_id == info.trace_id, FeedbackRow.variant.is_(None))
    ratings = session.scalars(select(FeedbackRow.rating).where(*unknown)).all()
    session.execute(update(FeedbackRow).where(*unknown).values(variant=variant, model_version=version))
    for rating in ratings:  # not counted at submission, when the variant was not known
        metrics.RATINGS.labels(variant, "up" if rating else "down").inc()
    for column, trace_column in ((Preference.version_a, Preference.trace_id_a),
                                 (Preference.version_b, Preference.trace_id_b)):  # fmt: skip
        session.execute(
            update(Preference).where(trace_column == info.trace_id, column.is_(None)).values({column.key: version})
        )


# --8<-- [end:record]


def status_counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(OutboxItem.status, func.count()).group_by(OutboxItem.status)).all()
    return {status: count for status, count in rows}


def oldest_pending(session: Session) -> datetime | None:
    return session.scalar(select(func.min(OutboxItem.created_at)).where(OutboxItem.status == "pending"))


def _count(outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        if outcome.assessment_id:
            metrics.OUTBOX_DELIVERED.labels("found_existing" if outcome.found_existing else "logged").inc()
        elif outcome.reason != "not_attempted":
            metrics.OUTBOX_FAILED_ATTEMPTS.labels(outcome.reason).inc()
