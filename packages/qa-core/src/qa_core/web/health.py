"""`/health/live` and `/health/ready`: one response shape for every service, whatever it checks.

```
{"status": "ready" | "degraded" | "not_ready",
 "checks": {name: {"ok": bool, "required": bool, "detail": str, ...what the check adds}}}
```

Ready (200) when every required check passes; degraded (still 200) when only optional ones fail, such as
MLflow being down while the service keeps working without it; not ready (503) when a required one fails.
Compose, Kubernetes and the dev supervisor look at the status code only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

ReadyStatus = Literal["ready", "degraded", "not_ready"]


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)  # extra fields of this check's entry


@dataclass(frozen=True)
class ReadinessCheck:
    """A named check. `required=False`: failing it degrades the service but leaves it ready."""

    name: str
    run: Callable[[], Awaitable[CheckResult]]
    required: bool = True


async def readiness(checks: Sequence[ReadinessCheck]) -> tuple[ReadyStatus, dict[str, dict[str, Any]]]:
    """Run the checks at once and sum them up."""
    results = await asyncio.gather(*(check.run() for check in checks))
    report = {
        check.name: {"ok": result.ok, "required": check.required, "detail": result.detail, **result.info}
        for check, result in zip(checks, results, strict=True)
    }
    if not all(result.ok for check, result in zip(checks, results, strict=True) if check.required):
        return "not_ready", report
    return ("ready" if all(result.ok for result in results) else "degraded"), report


# --8<-- [start:health-router]
def health_router(checks: Sequence[ReadinessCheck]) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        """The process answers; nothing else is checked, so a restart is never caused by a dependency."""
        return {"status": "ok"}

    @router.get("/health/ready")
    async def ready() -> JSONResponse:
        status, report = await readiness(checks)
        return JSONResponse({"status": status, "checks": report}, status_code=503 if status == "not_ready" else 200)

    return router


# --8<-- [end:health-router]
