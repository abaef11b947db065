"""What qa-api's `/health/ready` checks: a program to serve, and the registry it comes from.

The registry check is optional: while MLflow cannot be read the last loaded programs keep serving, so
qa-api is degraded (200), not unready.
"""

from __future__ import annotations

from qa_api.registry_watch import ProgramRegistry
from qa_core.web.health import CheckResult, ReadinessCheck


# --8<-- [start:ready]
def readiness_checks(programs: ProgramRegistry) -> list[ReadinessCheck]:
    async def program() -> CheckResult:
        state = programs.state
        if state is None:
            return CheckResult(False, "starting: no program loaded yet")
        served = {
            "source": state.source,
            "champion": state.champion.version,
            "challenger": state.challenger.version if state.challenger else None,
            "challenger_share": state.experiment.challenger_share,
        }
        return CheckResult(True, f"champion {state.champion.version} from the {state.source}", served)

    async def registry() -> CheckResult:
        state = programs.state
        if programs.client is None:
            return CheckResult(True, "not used (USE_REGISTRY=false): the shipped baseline serves")
        if state is None:
            return CheckResult(False, "not read yet")
        if state.degraded:
            return CheckResult(False, state.problem or "MLflow cannot be read; the last loaded programs serve")
        return CheckResult(True, "aliases and traffic share read")

    return [ReadinessCheck("program", program), ReadinessCheck("registry", registry, required=False)]


# --8<-- [end:ready]
