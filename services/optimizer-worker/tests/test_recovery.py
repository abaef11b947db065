"""Crash safety: a killed worker's job is run again or failed with a reason, and never registered twice."""

from __future__ import annotations

import signal
import time

import mlflow
import pytest
from mlflow import MlflowClient

from optimizer_worker.autotrigger import maybe_trigger
from optimizer_worker.bootstrap import bootstrap
from optimizer_worker.jobs import JobStore
from optimizer_worker.queue import create_celery
from qa_core import contracts, registry
from qa_core.program import build_program

pytestmark = pytest.mark.timeout(600)
JOB = {"optimizer": "bootstrap_fewshot", "budget": 2, "dataset": {"train_limit": 12, "dev_limit": 12}}


def _kill_during_optimize(d, api) -> str:
    with d.worker() as first:
        job = api.post("/v1/jobs", json=JOB).json()
        d.wait_for(api, job["id"], lambda v: v["progress"]["stage"] == "optimizing", timeout_s=120)
        first.stop(signal.SIGKILL)  # the whole process group: the Celery parent and the child running the job
    assert api.get(f"/v1/jobs/{job['id']}").json()["state"] == "running"  # as a dead worker leaves it
    return job["id"]


# --8<-- [start:crash-test]
def test_a_killed_workers_job_runs_again_on_a_new_worker_and_registers_once(slow_deployment) -> None:
    # A short visibility timeout: Redis also redelivers the dead worker's message while the retry runs.
    d = slow_deployment.with_env(BROKER_VISIBILITY_TIMEOUT_S="8")
    with d.api() as api:
        job_id = _kill_during_optimize(d, api)
        with d.worker() as second:
            view = d.wait_for(api, job_id, d.finished, timeout_s=240)
            time.sleep(10)  # let the redelivered duplicate arrive; it must be dropped, not run
            after = api.get(f"/v1/jobs/{job_id}").json()
            assert after["state"] == "succeeded", (view["state"], view["error"], after["error"])
            assert second.proc.poll() is None
    assert view["state"] == "succeeded", view["error"]
    assert view["attempts"] == 2
    versions = d.versions()
    assert [v.tags[contracts.VERSION_TAG_JOB_ID] for v in versions] == [job_id]
    assert view["registered_version"] == versions[0].version


# --8<-- [end:crash-test]


def test_a_job_whose_worker_dies_with_no_attempts_left_fails_with_the_reason(slow_deployment) -> None:
    d = slow_deployment.with_env(MAX_ATTEMPTS="1")
    with d.api() as api:
        job_id = _kill_during_optimize(d, api)
        with d.worker():
            view = d.wait_for(api, job_id, d.finished, timeout_s=120)
    assert view["state"] == "failed"
    assert "stopped without finishing it (1 of 1 attempts" in view["error"]
    assert "stage optimizing" in view["error"]
    assert d.versions() == []


def test_a_retry_after_registration_finishes_from_the_registered_version(deployment) -> None:
    """The first attempt registered its version and died before the alias: the retry adds no second version."""
    d = deployment
    client = registry.configure_mlflow(d.settings)
    with d.api() as api:
        job = api.post("/v1/jobs", json=JOB).json()
        mlflow.set_experiment(d.settings.optimization_experiment_name)
        with mlflow.start_run() as run:
            registry.log_program_state(build_program(d.settings))
        tags = {
            contracts.VERSION_TAG_JOB_ID: job["id"],
            contracts.VERSION_TAG_DEV_SCORE: "0.5000",
            contracts.VERSION_TAG_CHAMPION_DEV_SCORE: "0.4000",
        }
        registry.register_version(client, d.settings.registered_model_name, run.info.run_id, tags)
        assert registry.version_for_alias(client, d.settings.registered_model_name, contracts.CHALLENGER_ALIAS) is None
        with d.worker():
            view = d.wait_for(api, job["id"], d.finished)
    assert view["state"] == "succeeded", view["error"]
    assert view["registered_version"] == "1"
    assert view["scores"] == {"candidate_dev": 0.5, "champion_dev": 0.4}
    assert "registered by an earlier attempt" in view["decision_reason"]
    assert len(d.versions()) == 1
    alias = registry.version_for_alias(client, d.settings.registered_model_name, contracts.CHALLENGER_ALIAS)
    assert alias is not None
    assert alias.version == "1"


def test_the_auto_trigger_enqueues_one_job_after_n_new_ratings(deployment, qa_trace) -> None:
    d = deployment.with_env(AUTO_TRIGGER_MIN_RATINGS="2")
    settings, store = d.settings, JobStore(d.settings.database_url)
    app = create_celery(settings)
    registry.configure_mlflow(settings)
    experiment = settings.mlflow_experiment_name

    qa_trace(experiment, "Which optimizer reflects on failures?", "GEPA", ["optimizer-gepa#0"], ratings=[True])
    assert maybe_trigger(app, store, settings) is None  # one rating is not enough
    qa_trace(experiment, "Which optimizer searches instructions?", "x", ["optimizer-miprov2#0"], correction="MIPROv2")
    job_id = maybe_trigger(app, store, settings)
    assert job_id is not None
    job = store.get(job_id)
    assert (job.trigger, job.state, job.optimizer, job.budget) == ("auto", "queued", "bootstrap_fewshot", 2)
    assert job.enqueued_at is not None
    assert maybe_trigger(app, store, settings) is None  # a job is already queued
    store.cancel(job_id)
    assert maybe_trigger(app, store, settings) is None  # no new ratings since that job
    assert maybe_trigger(app, store, deployment.settings) is None  # off by default


def test_bootstrap_registers_the_baseline_as_champion_once(deployment) -> None:
    settings = deployment.settings
    assert bootstrap(settings) == "registered version 1 as champion"
    assert bootstrap(settings) == "champion already set (version 1)"
    client = MlflowClient(settings.mlflow_tracking_uri)
    versions = deployment.versions()
    assert len(versions) == 1
    assert versions[0].tags[contracts.VERSION_TAG_OPTIMIZER] == "baseline"
    assert versions[0].source.startswith("models:/")
    champion = registry.version_for_alias(client, settings.registered_model_name, contracts.CHAMPION_ALIAS)
    assert champion is not None
    state = registry.download_program_state(client, champion)
    assert build_program(settings, state).dump_state() == build_program(settings).dump_state()
    for name in (settings.mlflow_experiment_name, settings.optimization_experiment_name):
        assert mlflow.get_experiment_by_name(name) is not None


def test_a_duplicate_delivery_never_takes_a_late_lease_with_no_attempts_left(deployment) -> None:
    # A live run whose heartbeat is late (a slow start, a busy CPU) looks like a dead one. With
    # attempts left a duplicate may take it over; with none, taking it would only fail the live run.
    store, settings = JobStore(deployment.settings.database_url), deployment.settings
    job, _ = store.create(contracts.JobCreate(**JOB))
    assert store.claim(job.id, "first", settings.lease_timeout_s, max_attempts=1) is not None
    time.sleep(0.2)
    assert store.claim(job.id, "duplicate", 0.1, max_attempts=1) is None  # late lease, no attempts left
    assert store.heartbeat(job.id, "first", "optimizing", 10.0) is not None  # the live run keeps it
    time.sleep(0.2)
    taken = store.claim(job.id, "duplicate", 0.1, max_attempts=2)
    assert taken is not None  # late lease, attempts left: the duplicate takes over
    assert (taken.lease_owner, taken.attempts) == ("duplicate", 2)
