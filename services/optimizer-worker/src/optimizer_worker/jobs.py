"""Job state transitions. Every change is one conditional UPDATE, so two workers cannot both own a job.

queued ──claim──► running ──finish──► succeeded | failed | cancelled
  ▲                  │
  └──── recover ◄────┘  (heartbeat older than the lease timeout; attempts left)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from optimizer_worker.db import session_scope
from optimizer_worker.errors import JobNotCancellable, JobNotFound
from optimizer_worker.models import Job
from qa_core import contracts
from qa_core.database import utcnow as now
from qa_core.web.errors import IdempotencyConflict

TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def to_view(job: Job, run_link_base: str) -> contracts.JobView:
    run_url = None
    if job.mlflow_run_id and job.mlflow_experiment_id:
        run_url = f"{run_link_base}/#/experiments/{job.mlflow_experiment_id}/runs/{job.mlflow_run_id}"
    return contracts.JobView(
        id=job.id,
        state=job.state,  # type: ignore[arg-type]
        optimizer=job.optimizer,  # type: ignore[arg-type]
        budget=job.budget,
        dataset=contracts.DatasetOptions.model_validate(job.dataset_options),
        progress=contracts.JobProgress(stage=job.stage, percent=round(job.percent, 1)),
        created_at=_iso(job.created_at) or "",
        started_at=_iso(job.started_at),
        finished_at=_iso(job.finished_at),
        mlflow_run_id=job.mlflow_run_id,
        mlflow_run_url=run_url,
        scores={k: float(v) for k, v in (job.scores or {}).items()},
        decision=job.decision,  # type: ignore[arg-type]
        decision_reason=job.decision_reason,
        registered_version=job.registered_version,
        error=job.error,
        attempts=job.attempts,
        dataset_hash=job.dataset_hash,
        dataset_counts=job.dataset_counts or {},
    )


@dataclass
class JobStore:
    """The jobs table, through the transitions a job may make."""

    url: str

    # --8<-- [start:create]
    def create(self, request: contracts.JobCreate, trigger: str = "api") -> tuple[Job, bool]:
        """Insert a queued job; with a known idempotency key, return the first job instead (created=False)."""
        options = request.dataset.model_dump()
        if request.idempotency_key:
            existing = self.by_idempotency_key(request.idempotency_key)
            if existing is not None:
                return self._same_request(existing, request, options), False
        job = Job(
            id=str(uuid.uuid4()),
            idempotency_key=request.idempotency_key,
            trigger=trigger,
            state="queued",
            optimizer=request.optimizer,
            budget=request.budget,
            dataset_options=options,
            stage="queued",
            percent=0.0,
            created_at=now(),
            attempts=0,
            cancel_requested=False,
            dataset_counts={},
            scores={},
        )
        try:
            with session_scope(self.url) as session:
                session.add(job)
        except IntegrityError:
            # Two requests with one key raced; the other insert won.
            existing = self.by_idempotency_key(request.idempotency_key or "")
            if existing is None:
                raise
            return self._same_request(existing, request, options), False
        return job, True

    # --8<-- [end:create]

    @staticmethod
    def _same_request(job: Job, request: contracts.JobCreate, options: dict[str, Any]) -> Job:
        if (job.optimizer, job.budget, job.dataset_options) != (request.optimizer, request.budget, options):
            raise IdempotencyConflict(
                f"idempotency_key {request.idempotency_key!r} was used for a different job ({job.id})"
            )
        return job

    def by_idempotency_key(self, key: str) -> Job | None:
        with session_scope(self.url) as session:
            return session.scalars(select(Job).where(Job.idempotency_key == key)).first()

    def get(self, job_id: str) -> Job:
        with session_scope(self.url) as session:
            job = session.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return job

    def list(self, state: str | None = None, limit: int = 50) -> list[Job]:
        query = select(Job).order_by(Job.created_at.desc()).limit(limit)
        if state:
            query = query.where(Job.state == state)
        with session_scope(self.url) as session:
            return list(session.scalars(query))

    def _update(self, job_id: str, *conditions: Any, **values: Any) -> bool:
        with session_scope(self.url) as session:
            result = session.execute(update(Job).where(Job.id == job_id, *conditions).values(**values))
            return result.rowcount == 1

    def mark_enqueued(self, job_id: str) -> None:
        self._update(job_id, Job.state == "queued", enqueued_at=now())

    # --8<-- [start:claim]
    def claim(self, job_id: str, owner: str, lease_timeout_s: float, max_attempts: int) -> Job | None:
        """Take the job if it is queued, or running under a lease nobody renewed with attempts left.
        None: not ours to run.

        A message delivered twice (Redis redelivers after the visibility timeout) finds the job
        running with a fresh heartbeat, or finished, and is dropped. A stale lease with no attempts
        left is not taken either: `recover_stale` fails that job with the reason. Taking it here and
        failing it would also fail a live run whose heartbeat is merely late.
        """
        stale = now() - timedelta(seconds=lease_timeout_s)
        stale_with_attempts_left = (Job.state == "running") & (Job.heartbeat_at < stale) & (Job.attempts < max_attempts)
        taken = self._update(
            job_id,
            or_(Job.state == "queued", stale_with_attempts_left),
            Job.cancel_requested.is_(False),
            state="running",
            lease_owner=owner,
            heartbeat_at=now(),
            started_at=func.coalesce(Job.started_at, now()),
            attempts=Job.attempts + 1,
            stage="starting",
            error=None,
        )
        return self.get(job_id) if taken else None

    def heartbeat(self, job_id: str, owner: str, stage: str, percent: float) -> Job | None:
        """Renew the lease and record progress; None when the lease is no longer ours."""
        renewed = self._update(
            job_id,
            Job.state == "running",
            Job.lease_owner == owner,
            heartbeat_at=now(),
            stage=stage,
            percent=max(0.0, min(100.0, percent)),
        )
        return self.get(job_id) if renewed else None

    # --8<-- [end:claim]

    def record(self, job_id: str, owner: str, **values: Any) -> None:
        """Store intermediate results (run id, dataset hash, scores) while the job runs."""
        self._update(job_id, Job.state == "running", Job.lease_owner == owner, **values)

    def finish(self, job_id: str, owner: str, state: str, **values: Any) -> bool:
        assert state in TERMINAL
        stage = {"succeeded": "done", "failed": "failed", "cancelled": "cancelled"}[state]
        extra = {"percent": 100.0} if state == "succeeded" else {}
        return self._update(
            job_id,
            Job.state == "running",
            Job.lease_owner == owner,
            state=state,
            stage=stage,
            finished_at=now(),
            lease_owner=None,
            **extra,
            **values,
        )

    def fail_unclaimed(self, job_id: str, reason: str) -> bool:
        """Fail a job that never started (e.g. its message could not be sent)."""
        return self._update(
            job_id, Job.state == "queued", state="failed", stage="failed", finished_at=now(), error=reason
        )

    # --8<-- [start:cancel]
    def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one is asked to stop and stops at its next LM call."""
        job = self.get(job_id)
        if job.state in TERMINAL:
            raise JobNotCancellable(f"job {job_id} already {job.state}")
        if not self._update(
            job_id,
            Job.state == "queued",
            state="cancelled",
            stage="cancelled",
            finished_at=now(),
            cancel_requested=True,
        ):
            self._update(job_id, Job.state == "running", cancel_requested=True)
        return self.get(job_id)

    # --8<-- [end:cancel]

    # --8<-- [start:recover]
    def recover_stale(self, lease_timeout_s: float, max_attempts: int) -> tuple[list[str], list[str]]:
        """Jobs whose worker died: back to queued while attempts remain, else failed with the reason.

        Returns (requeued ids, failed ids). The caller sends a new message for each requeued job.
        """
        stale = now() - timedelta(seconds=lease_timeout_s)
        with session_scope(self.url) as session:
            dead = list(session.scalars(select(Job).where(Job.state == "running", Job.heartbeat_at < stale)))
        requeued, failed = [], []
        for job in dead:
            was_alive = (Job.state == "running") & (Job.heartbeat_at < stale) & (Job.lease_owner == job.lease_owner)
            if job.cancel_requested:
                if self._update(job.id, was_alive, state="cancelled", stage="cancelled", finished_at=now()):
                    failed.append(job.id)
            elif job.attempts >= max_attempts:
                reason = (
                    f"the worker running this job stopped without finishing it ({job.attempts} of "
                    f"{max_attempts} attempts, last heartbeat {_iso(job.heartbeat_at)}, stage {job.stage})"
                )
                if self._update(
                    job.id, was_alive, state="failed", stage="failed", finished_at=now(), lease_owner=None, error=reason
                ):
                    failed.append(job.id)
            elif self._update(job.id, was_alive, state="queued", stage="queued (retry)", lease_owner=None):
                requeued.append(job.id)
        return requeued, failed

    # --8<-- [end:recover]

    def lost_in_queue(self, older_than_s: float) -> list[str]:
        """Queued jobs whose message was sent long ago and never claimed (a broker lost it)."""
        cutoff = now() - timedelta(seconds=older_than_s)
        with session_scope(self.url) as session:
            return list(session.scalars(select(Job.id).where(Job.state == "queued", Job.enqueued_at < cutoff)))

    def last_created_at(self) -> datetime | None:
        with session_scope(self.url) as session:
            return session.scalar(select(func.max(Job.created_at)))

    def active_count(self) -> int:
        with session_scope(self.url) as session:
            return session.scalar(select(func.count()).where(Job.state.in_(("queued", "running")))) or 0

    def counts_by_state(self) -> dict[tuple[str, str], int]:
        with session_scope(self.url) as session:
            rows = session.execute(select(Job.state, Job.optimizer, func.count()).group_by(Job.state, Job.optimizer))
            return {(state, optimizer): count for state, optimizer, count in rows}

    def finished(self, limit: int = 1000) -> list[Job]:
        query = select(Job).where(Job.state.in_(TERMINAL)).order_by(Job.finished_at.desc()).limit(limit)
        with session_scope(self.url) as session:
            return list(session.scalars(query))
