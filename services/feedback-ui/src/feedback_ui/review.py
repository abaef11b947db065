"""The review queue: recent traced answers nobody has judged yet, API traffic included, load tests not.

Candidates come from MLflow (the only place that sees every answer qa-api gave). A trace leaves the
queue once anyone rated or corrected it (in MLflow, or here while the outbox is still delivering), or
when this person skipped it.
"""

from __future__ import annotations

import functools

import anyio
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback_ui.answers import from_trace, remember
from feedback_ui.db import Database
from feedback_ui.models import Answer, Feedback, ReviewSkip
from feedback_ui.settings import Settings
from feedback_ui.traces import TraceStore, has_human_verdict, is_synthetic, view_of
from qa_core import contracts

FULL_TRACE_ATTEMPTS = 5  # traces of another shape are passed over, but a page load reads only this many


def handled_here(session: Session, user_id: str, trace_ids: list[str]) -> set[str]:
    """Traces rated through this service by anyone (maybe not delivered yet), or skipped by this person."""
    if not trace_ids:
        return set()
    rated = session.scalars(select(Feedback.trace_id).where(Feedback.trace_id.in_(trace_ids)))
    skipped = session.scalars(
        select(ReviewSkip.trace_id).where(ReviewSkip.user_id == user_id, ReviewSkip.trace_id.in_(trace_ids))
    )
    return set(rated) | set(skipped)


class ReviewQueue:
    def __init__(self, settings: Settings, db: Database, traces: TraceStore) -> None:
        self.settings, self.db, self.traces = settings, db, traces

    # --8<-- [start:next]
    async def next(self, user_id: str) -> tuple[Answer | None, int]:
        """The newest unjudged answer and how many are waiting. Raises MlflowUnavailable."""
        infos = await anyio.to_thread.run_sync(self.traces.recent, self.settings.review_scan)
        candidates = [
            info.trace_id for info in infos
            if contracts.TRACE_TAG_VARIANT in info.tags and not is_synthetic(info) and not has_human_verdict(info)
        ]  # fmt: skip
        done = await self.db.run(lambda s: handled_here(s, user_id, candidates))
        waiting = [trace_id for trace_id in candidates if trace_id not in done]
        for trace_id in waiting[:FULL_TRACE_ATTEMPTS]:
            trace = await anyio.to_thread.run_sync(self.traces.trace, trace_id)
            view = view_of(trace) if trace is not None else None
            if view is not None:
                answer = from_trace(view)
                await self.db.run(functools.partial(remember, answer=answer))
                return answer, len(waiting)
        return None, len(waiting)

    # --8<-- [end:next]

    async def skip(self, user_id: str, trace_id: str) -> None:
        await self.db.run(lambda s: s.merge(ReviewSkip(user_id=user_id, trace_id=trace_id)))
