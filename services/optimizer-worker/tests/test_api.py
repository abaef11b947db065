"""The jobs API at its edge: validation, idempotency, cancellation, health and metrics (no worker running)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from optimizer_worker.settings import Settings

JOB = {"optimizer": "bootstrap_fewshot", "budget": 2, "dataset": {"train_limit": 4, "dev_limit": 4}}


def test_an_unknown_optimizer_is_a_422_naming_the_field(deployment) -> None:
    with deployment.api() as client:
        response = client.post("/v1/jobs", json={**JOB, "optimizer": "adamw"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("optimizer:")
    assert error["request_id"]
    assert [f["field"] for f in error["fields"]] == ["optimizer"]
    assert error["fields"][0]["message"]


def test_a_budget_outside_the_optimizers_range_is_a_422_that_gives_the_range(deployment) -> None:
    with deployment.api() as client:
        too_big = client.post("/v1/jobs", json={**JOB, "budget": 50})
        too_small = client.post("/v1/jobs", json={**JOB, "optimizer": "gepa", "budget": 3})
        negative = client.post("/v1/jobs", json={**JOB, "budget": -1})
        jobs = client.get("/v1/jobs").json()["jobs"]
    assert too_big.status_code == 422
    assert too_big.json()["error"]["code"] == "budget_out_of_range"
    assert "between 1 and 8" in too_big.json()["error"]["message"]
    assert too_small.status_code == 422
    assert "gepa" in too_small.json()["error"]["message"]
    assert negative.status_code == 422
    assert negative.json()["error"]["fields"][0]["field"] == "budget"
    assert jobs == []  # nothing was stored


def test_bad_dataset_options_are_422s(deployment) -> None:
    with deployment.api() as client:
        response = client.post("/v1/jobs", json={**JOB, "dataset": {"train_limit": 0}})
        wrong_type = client.post("/v1/jobs", json={**JOB, "dataset": {"dev_limit": "many"}})
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "dataset.train_limit"
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["fields"][0]["field"] == "dataset.dev_limit"


def test_an_empty_dataset_is_refused_at_submission(deployment, tmp_path: Path) -> None:
    empty = deployment.write_dataset(tmp_path / "qa", train=[], dev=[], test=[])
    with deployment.with_env(DATASET_DIR=str(empty)).api() as client:
        response = client.post("/v1/jobs", json=JOB)
        no_feedback = client.post("/v1/jobs", json={**JOB, "dataset": {"include_feedback": False}})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "dataset_unavailable"
    assert "no QA pairs" in response.json()["error"]["message"]
    assert no_feedback.status_code == 422


def test_the_same_idempotency_key_returns_the_same_job_and_a_different_body_conflicts(deployment) -> None:
    body = {**JOB, "idempotency_key": "nightly-2026-11-25"}
    with deployment.api() as client:
        first = client.post("/v1/jobs", json=body)
        again = client.post("/v1/jobs", json=body)
        other = client.post("/v1/jobs", json={**body, "budget": 3})
        listed = client.get("/v1/jobs").json()["jobs"]
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert [job["id"] for job in listed] == [first.json()["id"]]


def test_a_new_job_is_queued_with_its_options_and_can_be_cancelled_once(deployment) -> None:
    with deployment.api() as client:
        created = client.post("/v1/jobs", json=JOB).json()
        assert created["state"] == "queued"
        assert created["progress"] == {"stage": "queued", "percent": 0.0}
        assert created["dataset"] == {"include_feedback": True, "train_limit": 4, "dev_limit": 4}
        cancelled = client.post(f"/v1/jobs/{created['id']}/cancel")
        again = client.post(f"/v1/jobs/{created['id']}/cancel")
        queued = client.get("/v1/jobs", params={"state": "queued"}).json()["jobs"]
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["finished_at"].endswith("+00:00")  # read back aware, in UTC
    assert created["created_at"].endswith("+00:00")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "job_not_cancellable"
    assert queued == []


def test_an_unknown_job_is_a_404_in_the_error_envelope(deployment) -> None:
    with deployment.api() as client:
        response = client.get("/v1/jobs/does-not-exist", headers={"X-Request-Id": "req-123"})
        bad_state = client.get("/v1/jobs", params={"state": "sleeping"})
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "job_not_found", "message": "no job with id 'does-not-exist'", "request_id": "req-123"}
    }
    assert bad_state.status_code == 422


def test_health_and_metrics(deployment) -> None:
    with deployment.api() as client:
        client.post("/v1/jobs", json=JOB)
        live = client.get("/health/live")
        ready = client.get("/health/ready")
        metrics = client.get("/metrics").text
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert {name: check["ok"] for name, check in ready.json()["checks"].items()} == {"database": True, "queue": True}
    assert 'optimizer_jobs{optimizer="bootstrap_fewshot",state="queued"} 1.0' in metrics
    assert 'optimizer_jobs_submitted_total{optimizer="bootstrap_fewshot"} 1.0' in metrics
    assert "optimizer_api_request_seconds" in metrics


def test_readiness_reports_an_unreachable_queue(deployment) -> None:
    with deployment.with_env(BROKER_URL="redis://127.0.0.1:1/0").api() as client:
        ready = client.get("/health/ready")
        submitted = client.post("/v1/jobs", json=JOB)
    assert ready.status_code == 503
    assert ready.json()["status"] == "not_ready"
    assert ready.json()["checks"]["queue"]["ok"] is False
    assert ready.json()["checks"]["queue"]["detail"].startswith("unavailable")
    assert submitted.status_code == 503
    assert submitted.json()["error"]["code"] == "queue_unavailable"


def test_settings_refuse_bad_budget_ranges_and_merge_partial_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGET_RANGES", '{"gepa": [50, 10]}')
    with pytest.raises(ValidationError, match="low <= high"):
        Settings(_env_file=None)
    monkeypatch.setenv("BUDGET_RANGES", '{"gepa": [5, 50]}')
    merged = Settings(_env_file=None)
    assert merged.budget_ranges["gepa"] == (5, 50)
    assert merged.budget_ranges["simba"] == (1, 8)


def test_a_postgres_url_gets_the_psycopg3_driver_and_prod_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None, database_url="postgresql://u@h/db").database_url == "postgresql+psycopg://u@h/db"
    monkeypatch.delenv("LM_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="LM_API_KEY must be set"):
        Settings(_env_file=None, app_env="prod")


def test_a_negative_promotion_margin_is_for_demos_never_prod(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None, promotion_margin=-1).promotion_margin == -1
    monkeypatch.setenv("LM_API_KEY", "sk-prod")
    with pytest.raises(ValidationError, match="PROMOTION_MARGIN must be >= 0 when APP_ENV=prod"):
        Settings(_env_file=None, app_env="prod", promotion_margin=-1)
    assert Settings(_env_file=None, app_env="prod", promotion_margin=0.02).promotion_margin == 0.02


def test_readme_lists_every_setting() -> None:
    from pathlib import Path

    from qa_core.settings import CoreSettings

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    own = [name for name in Settings.model_fields if name not in CoreSettings.model_fields]
    missing = [name.upper() for name in own if f"| `{name.upper()}` |" not in readme]
    assert missing == []


def test_an_unreachable_database_is_a_503_not_a_500(deployment) -> None:
    with deployment.with_env(migrated=False, DATABASE_URL="postgresql://nobody@127.0.0.1:1/jobs").api() as client:
        response = client.get("/v1/jobs")
        ready = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["detail"].startswith("unavailable")
