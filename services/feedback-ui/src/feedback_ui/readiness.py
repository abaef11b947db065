"""What feedback-ui's `/health/ready` checks: the database, the outbox loop, and MLflow.

MLflow being down is not unready (the check is optional): feedback is still accepted and kept, and the
outbox check says how much is waiting.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from feedback_ui.outbox import status_counts
from qa_core.web.health import CheckResult, ReadinessCheck


# --8<-- [start:ready]
def readiness_checks(app: FastAPI) -> list[ReadinessCheck]:
    state = app.state

    async def database() -> CheckResult:
        try:
            await state.db.run(lambda session: session.execute(text("SELECT 1")))
        except SQLAlchemyError as error:
            return CheckResult(False, f"unavailable: {type(error).__name__}")
        return CheckResult(True, "answers")

    async def outbox() -> CheckResult:
        task = state.outbox_task
        if task is None or task.done():
            return CheckResult(False, "the outbox loop is not running")
        try:
            counts = await state.db.run(status_counts)
        except SQLAlchemyError as error:
            return CheckResult(False, f"its rows cannot be read: {type(error).__name__}")
        waiting = {status: counts.get(status, 0) for status in ("pending", "delivered", "failed")}
        return CheckResult(True, f"{waiting['pending']} waiting for MLflow", waiting)

    async def mlflow() -> CheckResult:
        failures = state.outbox.mlflow_failures
        if failures:
            detail = f"{failures} delivery rounds in a row failed: {state.outbox.last_error}"
            return CheckResult(False, detail, {"mlflow_failures_in_a_row": failures})
        return CheckResult(True, "no delivery round in a row failed to reach it", {"mlflow_failures_in_a_row": 0})

    return [
        ReadinessCheck("database", database),
        ReadinessCheck("outbox", outbox),
        ReadinessCheck("mlflow", mlflow, required=False),
    ]


# --8<-- [end:ready]
