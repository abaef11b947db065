"""Which programs are serving: loaded from the MLflow registry at start, re-read in the background.

A request takes one `ServingState` and uses it to the end, and the watcher replaces the whole state
in one assignment, so a swap never fails a request or mixes two versions inside one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass

import anyio
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from qa_api.metrics import TimedLM
from qa_api.settings import Settings
from qa_core import contracts, registry
from qa_core.contracts import Variant
from qa_core.program import GroundedQA, build_program
from qa_core.registry import ExperimentConfig

logger = logging.getLogger(__name__)
# MLflow's client raises these when the server is down, slow, or answers garbage.
REGISTRY_ERRORS = (MlflowException, OSError, ValueError)


@dataclass(frozen=True, slots=True)
class LoadedProgram:
    variant: Variant
    version: str
    program: GroundedQA


# --8<-- [start:serving-state]
@dataclass(frozen=True, slots=True)
class ServingState:
    """Everything a request needs to pick and run a program; replaced whole, never mutated."""

    champion: LoadedProgram
    challenger: LoadedProgram | None
    experiment: ExperimentConfig
    source: str  # "registry" or "baseline"
    degraded: bool = False
    problem: str | None = None
    checked_at: float = 0.0

    def program_for(self, variant: Variant) -> LoadedProgram:
        if variant == contracts.CHALLENGER_ALIAS and self.challenger is not None:
            return self.challenger
        return self.champion


# --8<-- [end:serving-state]


class ProgramRegistry:
    """Owns the serving state and the background task that keeps it current."""

    def __init__(self, settings: Settings, client: MlflowClient | None) -> None:
        self.settings = settings
        self.client = client
        self.state: ServingState | None = None
        self._programs: dict[str, GroundedQA] = {}
        self._io = anyio.CapacityLimiter(2)  # MLflow calls are blocking; keep them off the event loop

    # --8<-- [start:refresh]
    async def start(self) -> None:
        """Serve the registry's programs if MLflow answers in time; otherwise the shipped baseline."""
        if self.client is None:
            self.state = await self._baseline_state(degraded=False, problem=None)
            return
        try:
            with anyio.fail_after(self.settings.registry_startup_timeout_s):
                await self.refresh()
        except (TimeoutError, *REGISTRY_ERRORS) as error:
            logger.warning("registry unavailable at start-up (%s); serving the baseline", error)
        if self.state is None:
            self.state = await self._baseline_state(degraded=True, problem="registry unreachable at start-up")

    async def refresh(self) -> None:
        """Re-read aliases and the share; load any new version; swap the state in one assignment."""
        try:
            champion, challenger, experiment = await anyio.to_thread.run_sync(self._read, limiter=self._io)
            if champion is None:
                new = await self._baseline_state(degraded=False, problem=None, experiment=experiment)
            else:
                new = ServingState(
                    champion=await self._load(contracts.CHAMPION_ALIAS, champion),
                    challenger=await self._load(contracts.CHALLENGER_ALIAS, challenger) if challenger else None,
                    experiment=experiment,
                    source="registry",
                    checked_at=time.time(),
                )
        except REGISTRY_ERRORS as error:
            if self.state is not None:  # keep serving what we have, and say so
                self.state = dataclasses.replace(self.state, degraded=True, problem=f"registry: {error}")
            raise
        self._forget_unused(new)
        self.state = new

    # --8<-- [end:refresh]

    async def watch(self) -> None:
        """Poll until cancelled. A failed poll is logged and leaves the current programs serving."""
        while True:
            await asyncio.sleep(self.settings.registry_poll_s)
            try:
                await self.refresh()
            except REGISTRY_ERRORS as error:
                logger.warning("registry refresh failed, still serving the last programs: %s", error)

    def _read(self) -> tuple[ModelVersion | None, ModelVersion | None, ExperimentConfig]:
        assert self.client is not None
        name = self.settings.registered_model_name
        champion = registry.version_for_alias(self.client, name, contracts.CHAMPION_ALIAS)
        challenger = registry.version_for_alias(self.client, name, contracts.CHALLENGER_ALIAS)
        if champion is None:
            return None, None, ExperimentConfig(0.0, "none")
        experiment = registry.read_experiment(self.client, name, challenger.version if challenger else None)
        return champion, challenger, experiment

    async def _load(self, variant: Variant, version: ModelVersion) -> LoadedProgram:
        program = self._programs.get(version.version)
        if program is None:
            program = await anyio.to_thread.run_sync(self._download_and_load, version, limiter=self._io)
            self._programs[version.version] = program
            logger.info("loaded %s version %s", variant, version.version)
        return LoadedProgram(variant, version.version, program)

    def _download_and_load(self, version: ModelVersion) -> GroundedQA:
        assert self.client is not None
        path = registry.download_program_state(self.client, version)
        # A fine-tuned version answers with its own model, timed like every other LM call.
        return build_program(self.settings, path, TimedLM)

    async def _baseline_state(
        self, degraded: bool, problem: str | None, experiment: ExperimentConfig | None = None
    ) -> ServingState:
        program = self._programs.get(contracts.BASELINE_VERSION)
        if program is None:
            program = await anyio.to_thread.run_sync(build_program, self.settings, limiter=self._io)
            self._programs[contracts.BASELINE_VERSION] = program
        return ServingState(
            champion=LoadedProgram(contracts.CHAMPION_ALIAS, contracts.BASELINE_VERSION, program),
            challenger=None,
            experiment=experiment or ExperimentConfig(0.0, "none"),
            source="baseline",
            degraded=degraded,
            problem=problem,
            checked_at=time.time(),
        )

    def _forget_unused(self, state: ServingState) -> None:
        keep = {state.champion.version, contracts.BASELINE_VERSION}
        if state.challenger:
            keep.add(state.challenger.version)
        for version in set(self._programs) - keep:
            del self._programs[version]
