"""The A/B experiment: its state in the registry, its results from our feedback, and its controls.

Results are per program *version*, not per variant label: after a promotion the old champion's ratings
must not count for the new one. Every control (share, promote, roll back) is admin-only, written to the
audit log before it runs and updated with its outcome, so an attempt that crashed half-way still shows.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy import select
from sqlalchemy.orm import Session

from feedback_ui import stats
from feedback_ui.db import Database
from feedback_ui.guardrails import Guardrails, read_guardrails
from feedback_ui.models import AuditEntry, Feedback, Preference
from feedback_ui.settings import Settings
from qa_core import contracts, registry
from qa_core.database import utcnow
from qa_core.web.errors import Conflict, UpstreamUnavailable

logger = logging.getLogger(__name__)
MIN_RATED_PER_VARIANT = 30  # below this, the page says it is too early to call


@dataclass(frozen=True)
class RegistryState:
    champion: str | None
    challenger: str | None
    share: float
    previous_champion: str | None


@dataclass(frozen=True)
class VariantResult:
    variant: str
    version: str | None
    requests: float | None
    rated: int
    positive: int
    rate: float | None
    interval: stats.Interval
    win_rate: float | None


@dataclass
class ExperimentView:
    registry: RegistryState | None
    registry_problem: str | None
    serving: dict[str, Any] | None
    variants: list[VariantResult] = field(default_factory=list)
    prob_challenger_better: float | None = None
    z_test: stats.ZTest | None = None
    pairwise: stats.WinRate | None = None
    guardrails: Guardrails | None = None
    audit: list[AuditEntry] = field(default_factory=list)
    too_early: bool = True


# --8<-- [start:verdicts]
def rated_answers(session: Session, versions: list[str]) -> dict[str, tuple[int, int]]:
    """Per version: (answers rated, answers rated good). A person's latest rating of a trace counts; a
    trace is good when every person who rated it said so (the optimizer-worker's rule, too)."""
    rows = session.execute(
        select(Feedback.trace_id, Feedback.user_id, Feedback.rating, Feedback.model_version)
        .where(Feedback.model_version.in_(versions))
        .order_by(Feedback.created_at, Feedback.id)
    ).all()
    latest: dict[tuple[str, str], tuple[bool, str]] = {}
    for trace_id, user_id, rating, version in rows:
        latest[(trace_id, user_id)] = (rating, version)
    verdicts: dict[str, tuple[str, bool]] = {}
    for (trace_id, _), (rating, version) in latest.items():
        good = verdicts.get(trace_id, (version, True))[1] and rating
        verdicts[trace_id] = (version, good)
    counts = {version: (0, 0) for version in versions}
    for version, good in verdicts.values():
        rated, positive = counts[version]
        counts[version] = (rated + 1, positive + int(good))
    return counts


def pairwise(session: Session, champion: str, challenger: str) -> stats.WinRate:
    """The challenger's record in side-by-side comparisons against the champion."""
    wins = losses = ties = 0
    rows = session.scalars(
        select(Preference).where(
            ((Preference.version_a == champion) & (Preference.version_b == challenger))
            | ((Preference.version_a == challenger) & (Preference.version_b == champion))
        )
    )
    for row in rows:
        if row.preferred == "tie":
            ties += 1
        elif (row.version_a if row.preferred == "a" else row.version_b) == challenger:
            wins += 1
        else:
            losses += 1
    return stats.win_rate(wins, losses, ties)


# --8<-- [end:verdicts]


class Experiment:
    def __init__(self, settings: Settings, db: Database, client: MlflowClient, http: httpx.AsyncClient) -> None:
        self.settings, self.db, self.client, self.http = settings, db, client, http
        self.model = settings.registered_model_name

    def _read_registry(self) -> RegistryState:
        champion = registry.version_for_alias(self.client, self.model, contracts.CHAMPION_ALIAS)
        challenger = registry.version_for_alias(self.client, self.model, contracts.CHALLENGER_ALIAS)
        if champion is None and challenger is None:
            return RegistryState(None, None, contracts.DEFAULT_CHALLENGER_SHARE, None)
        config = registry.read_experiment(self.client, self.model, challenger.version if challenger else None)
        previous = self.client.get_registered_model(self.model).tags.get(contracts.TAG_PREVIOUS_CHAMPION)
        return RegistryState(
            champion.version if champion else None,
            challenger.version if challenger else None,
            config.challenger_share,
            previous,
        )

    async def registry_state(self) -> RegistryState:
        try:
            return await anyio.to_thread.run_sync(self._read_registry)
        except MlflowException as error:
            raise UpstreamUnavailable(f"The MLflow registry cannot be read: {str(error)[:200]}") from error

    async def serving(self) -> dict[str, Any] | None:
        """What qa-api serves right now (it re-reads the registry every REGISTRY_POLL_S): its readiness
        `program` check (champion, challenger, challenger_share) and its status (ready or degraded)."""
        try:
            response = await self.http.get(f"{self.settings.qa_api_url.rstrip('/')}/health/ready", timeout=5)
            if response.status_code != 200:
                return None
            ready = response.json()
            return {**ready["checks"]["program"], "status": ready["status"]}
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    async def _registry_or_problem(self) -> tuple[RegistryState | None, str | None]:
        try:
            return await self.registry_state(), None
        except UpstreamUnavailable as error:
            return None, error.message

    # --8<-- [start:view]
    async def view(self) -> ExperimentView:
        # Four independent sources (MLflow, qa-api, Prometheus, the audit log): ask them at once.
        (state, problem), serving, guardrails, audit = await asyncio.gather(
            self._registry_or_problem(),
            self.serving(),
            read_guardrails(self.http, self.settings),
            self.db.run(lambda s: list(s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(20)))),
        )
        view = ExperimentView(state, problem, serving)
        view.guardrails, view.audit = guardrails, audit
        if state is None or state.champion is None:
            return view
        versions = [v for v in (state.champion, state.challenger) if v]
        counts = await self.db.run(lambda s: rated_answers(s, versions))
        duel = await self.db.run(lambda s: pairwise(s, state.champion, state.challenger)) if state.challenger else None
        for variant, version in (
            (contracts.CHAMPION_ALIAS, state.champion),
            (contracts.CHALLENGER_ALIAS, state.challenger),
        ):
            if version is None:
                continue
            rated, positive = counts[version]
            traffic = view.guardrails.traffic.get(variant)
            own_win_rate = None
            if duel and duel.rate is not None:
                own_win_rate = duel.rate if variant == contracts.CHALLENGER_ALIAS else 1 - duel.rate
            view.variants.append(VariantResult(
                variant, version, traffic.requests if traffic else None, rated, positive,
                positive / rated if rated else None, stats.wilson_interval(positive, rated), own_win_rate,
            ))  # fmt: skip
        if state.challenger:
            (n_a, s_a), (n_b, s_b) = counts[state.champion], counts[state.challenger]
            view.prob_challenger_better = stats.prob_b_beats_a(s_a, n_a, s_b, n_b)
            view.z_test = stats.two_proportion_z_test(s_a, n_a, s_b, n_b)
            view.pairwise = duel
            view.too_early = min(n_a, n_b) < MIN_RATED_PER_VARIANT
        return view

    # --8<-- [end:view]

    # --8<-- [start:controls]
    async def set_share(self, user_id: str, share: float) -> None:
        before = await self.registry_state()
        detail = {"from": before.share, "to": share, "challenger": before.challenger}
        await self._audited(user_id, "set_share", detail, registry.set_challenger_share, self.client, self.model, share)

    async def promote(self, user_id: str, expected_challenger: str) -> str:
        state = await self.registry_state()
        if state.challenger is None:
            raise Conflict("There is no challenger to promote.")
        if state.challenger != expected_challenger:
            raise Conflict(
                f"The challenger changed to version {state.challenger} since you confirmed version "
                f"{expected_challenger}; look at the new results first."
            )
        detail = {"challenger": state.challenger, "champion_before": state.champion}
        await self._audited(user_id, "promote", detail, registry.promote_challenger, self.client, self.model)
        return state.challenger

    async def roll_back(self, user_id: str, expected_previous: str) -> str:
        state = await self.registry_state()
        if state.previous_champion is None:
            raise Conflict("There is no earlier champion to roll back to.")
        if state.previous_champion != expected_previous:
            raise Conflict(f"The version to roll back to is now {state.previous_champion}, not {expected_previous}.")
        detail = {"champion_before": state.champion, "champion_after": state.previous_champion}
        await self._audited(user_id, "roll_back", detail, registry.roll_back_champion, self.client, self.model)
        return state.previous_champion

    async def _audited(self, user_id: str, action: str, detail: dict[str, Any], operation: Any, *args: Any) -> None:
        """Record the intent, run the registry operation, record the outcome."""
        entry = AuditEntry(user_id=user_id, action=action, detail=detail, outcome="started", created_at=utcnow())
        entry_id = await self.db.run(lambda s: _add(s, entry))
        try:
            await anyio.to_thread.run_sync(lambda: operation(*args))
        except (MlflowException, LookupError, ValueError) as error:
            reason = str(error)[:500]
            await self.db.run(lambda s: _finish(s, entry_id, "failed", reason))
            if isinstance(error, MlflowException):
                raise UpstreamUnavailable(f"MLflow refused the change: {str(error)[:200]}") from error
            raise Conflict(str(error)) from error
        await self.db.run(lambda s: _finish(s, entry_id, "ok", None))
        logger.info("%s by %s: %s", action, user_id, detail)

    # --8<-- [end:controls]


def _add(session: Session, entry: AuditEntry) -> int:
    session.add(entry)
    session.flush()
    return entry.id


def _finish(session: Session, entry_id: int, outcome: str, error: str | None) -> None:
    entry = session.get(AuditEntry, entry_id)
    if entry is not None:
        entry.outcome, entry.error = outcome, error
