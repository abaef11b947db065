"""Jobs through the real queue: a worker process, Redis, PostgreSQL, an MLflow server, the LM simulator."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import cloudpickle
import mlflow
import pytest
from mlflow import MlflowClient

from optimizer_worker.optimizers import TUNES_WEIGHTS
from optimizer_worker.progress import STAGES
from optimizer_worker.settings import DEFAULT_BUDGET_RANGES
from qa_core import contracts, registry
from qa_core.lm import build_lm
from qa_core.program import build_program, load_program
from tests.support.programs import register_program

pytestmark = pytest.mark.timeout(600)
JOB = {"optimizer": "bootstrap_fewshot", "budget": 2, "dataset": {"train_limit": 8, "dev_limit": 8}}


def test_a_job_runs_queued_to_succeeded_and_registers_a_challenger(slow_deployment, qa_trace, tmp_path: Path) -> None:
    d = slow_deployment
    registry.configure_mlflow(d.settings)
    qa_trace(
        d.settings.mlflow_experiment_name,
        "Which MLflow call turns on DSPy autologging?",
        "dspy",
        ["mlflow-tracking#0"],
        ratings=[False],
        correction="mlflow.dspy.autolog",
    )
    seen: list[dict] = []
    with d.api() as api, d.worker():
        created = api.post("/v1/jobs", json=JOB)
        assert created.status_code == 201
        assert created.json()["state"] == "queued"
        view = d.wait_for(api, created.json()["id"], d.finished, seen=seen)

    # --8<-- [start:lifecycle-asserts]
    assert view["state"] == "succeeded", view["error"]
    running = [v for v in seen if v["state"] == "running"]
    assert running, "the job was never seen running"
    assert {v["progress"]["stage"] for v in running} <= set(STAGES)
    assert any(0 < v["progress"]["percent"] < 100 for v in running)
    percents = [v["progress"]["percent"] for v in running]
    assert percents == sorted(percents), "progress went backwards"
    assert view["progress"] == {"stage": "done", "percent": 100.0}
    assert view["decision"] == "promoted"  # the simulator ties, and the margin is 0
    assert view["registered_version"] == "1"
    assert view["dataset_counts"]["corrected"] == 1
    assert view["mlflow_run_url"].endswith(f"/runs/{view['mlflow_run_id']}")
    assert view["started_at"]
    assert view["finished_at"]
    assert view["attempts"] == 1
    # --8<-- [end:lifecycle-asserts]

    client = MlflowClient(d.env["MLFLOW_TRACKING_URI"])
    run = client.get_run(view["mlflow_run_id"])
    assert run.data.params["optimizer"] == "bootstrap_fewshot"
    assert run.data.params["budget"] == "2"
    assert run.data.params["dataset_hash"] == view["dataset_hash"]
    assert run.data.params["champion_version"] == contracts.BASELINE_VERSION
    assert run.data.metrics["candidate_dev_combined"] == pytest.approx(view["scores"]["candidate_dev"])
    assert run.data.metrics["champion_dev_combined"] == pytest.approx(view["scores"]["champion_dev"])
    assert run.data.metrics["optimize_lm_calls"] > 0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"program", "data"} <= artifacts
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    evals = {child.info.run_name: child for child in children}
    assert {"champion-dev", "candidate-dev"} <= set(evals)
    for role in ("champion", "candidate"):
        logged = {a.path for a in client.list_artifacts(evals[f"{role}-dev"].info.run_id)}
        assert {"result_table.json", "eval"} <= logged  # autolog's table, and the worker's full report
        assert evals[f"{role}-dev"].data.metrics["dev_combined"] == pytest.approx(view["scores"][f"{role}_dev"])
    trainset_rows = json.loads(
        Path(client.download_artifacts(run.info.run_id, "data/trainset.json", str(tmp_path))).read_text()
    )
    assert trainset_rows["examples"][0]["answer"] == "mlflow.dspy.autolog"

    version = registry.version_for_alias(client, d.settings.registered_model_name, contracts.CHALLENGER_ALIAS)
    assert version is not None
    assert version.version == "1"
    assert version.tags[contracts.VERSION_TAG_OPTIMIZER] == "bootstrap_fewshot"
    assert version.tags[contracts.VERSION_TAG_DATASET_HASH] == view["dataset_hash"]
    assert float(version.tags[contracts.VERSION_TAG_DEV_SCORE]) == pytest.approx(
        view["scores"]["candidate_dev"], abs=1e-4
    )
    assert version.tags[contracts.VERSION_TAG_JOB_ID] == view["id"]
    assert version.source.startswith("models:/")
    program = load_program(registry.download_program_state(client, version, tmp_path), build_program(d.settings).index)
    assert 1 <= len(program.answer.demos) <= 2 + d.settings.max_labeled_demos

    _no_secret_anywhere(client, d, run.info.experiment_id, tmp_path / "scan")
    _served_model_answers(d, version.version)


def _no_secret_anywhere(client: MlflowClient, d, experiment_id: str, folder: Path) -> None:
    """Every artifact of every run of the job (and its logged model), every param, tag and trace: no key."""
    secret = d.env["LM_API_KEY"]
    forms = [secret.encode(), base64.b64encode(secret.encode()), secret.encode("utf-16-le")]
    # The control: the LM the worker calls with does carry the key, so a careless pickle would leak it.
    assert secret.encode() in cloudpickle.dumps(build_lm(d.settings))

    runs = client.search_runs([experiment_id])
    models = client.search_logged_models([experiment_id])
    assert runs
    assert models
    scanned: list[str] = []
    for run in runs:
        local = Path(client.download_artifacts(run.info.run_id, "", str(folder / run.info.run_id)))
        scanned += [str(p) for p in local.rglob("*") if p.is_file()]
        text = json.dumps([run.data.params, run.data.tags])
        assert secret not in text, f"run {run.info.run_name} params or tags hold the key"
    for model in models:
        local = Path(
            mlflow.artifacts.download_artifacts(f"models:/{model.model_id}", dst_path=str(folder / model.model_id))
        )
        scanned += [str(p) for p in local.rglob("*") if p.is_file()]
    for trace in mlflow.search_traces(locations=[experiment_id], return_type="list"):
        assert secret not in trace.to_json()
    assert any(path.endswith("model.pkl") for path in scanned), "the pickled DSPy model was not scanned"
    assert any(path.endswith("program.json") for path in scanned)
    leaks = [path for path in scanned if any(form in Path(path).read_bytes() for form in forms)]
    assert leaks == []


def _served_model_answers(d, version: str) -> None:
    """The logged DSPy model loads as a pyfunc (what `mlflow models serve` does) in a fresh process and answers.

    The key comes from the serving environment, since the model carries none.
    """
    code = (
        "import json, mlflow; "
        f"m = mlflow.pyfunc.load_model('models:/{d.settings.registered_model_name}/{version}'); "
        "out = m.predict({'question': 'What does SIMBA stand for?'}); print(json.dumps(out))"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": d.env["MLFLOW_TRACKING_URI"], "OPENAI_API_KEY": "served-key"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["answer"]
    assert out["citations"]
    assert out["passages"][0]["id"]


def run_in_foreground(env: dict[str, str], optimizer: str, budget: int, *options: str) -> dict:
    """`optimizer-worker run`: one job in its own process, without the queue; returns the job's view."""
    command = [sys.executable, "-m", "optimizer_worker.cli", "run", "--optimizer", optimizer, "--budget", str(budget)]
    done = subprocess.run(
        [*command, "--train-limit", "4", "--dev-limit", "4", *options],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{") :])


def test_a_candidate_that_does_not_beat_the_champion_is_not_registered(deployment) -> None:
    d = deployment.with_env(PROMOTION_MARGIN="0.5")
    view = run_in_foreground(d.env, "bootstrap_fewshot", 1)
    assert view["state"] == "succeeded"
    assert view["decision"] == "not_promoted"
    assert "did not beat champion" in view["decision_reason"]
    assert "margin 0.5" in view["decision_reason"]
    assert view["registered_version"] is None
    assert d.versions() == []
    client = MlflowClient(d.env["MLFLOW_TRACKING_URI"])
    run = client.get_run(view["mlflow_run_id"])
    assert run.data.tags["decision"] == "not_promoted"
    assert "program" in {a.path for a in client.list_artifacts(run.info.run_id)}  # logged, just not registered


# The smallest budget the API allows for each prompt optimizer; each job runs in its own process, as on a
# worker. The weight optimizers train the real model: test_real_model.py runs them.
SMALLEST_BUDGETS = {name: low for name, (low, _) in DEFAULT_BUDGET_RANGES.items() if name not in TUNES_WEIGHTS}


def test_every_optimizer_the_contract_names_has_a_budget_range() -> None:
    assert set(DEFAULT_BUDGET_RANGES) == set(typing.get_args(contracts.OptimizerName))


def test_a_prompt_job_on_a_fine_tuned_champion_keeps_answering_with_the_champions_adapter(deployment) -> None:
    """BootstrapFewShot starts from `reset_copy()`, which drops the predictor's LM: the candidate must get the
    champion's tuned model back, or it would be scored (and served) on the base model."""
    d = deployment.with_env(PROMOTION_MARGIN="-1")
    client = registry.configure_mlflow(d.settings)
    tuned = "openai/lm-simulator+job-0123456789ab"
    champion = register_program(client, d.settings.registered_model_name, 2, lm_model=tuned)
    client.set_registered_model_alias(d.settings.registered_model_name, contracts.CHAMPION_ALIAS, champion)
    view = run_in_foreground(d.env, "bootstrap_fewshot", 1, "--no-feedback")
    assert view["state"] == "succeeded", view.get("error")
    version = client.get_model_version(d.settings.registered_model_name, view["registered_version"])
    state = json.loads(registry.download_program_state(client, version).read_text())
    assert state["answer"]["lm"]["model"] == tuned


@pytest.mark.parametrize(
    ("env", "reason"),
    [({}, "LM_SERVER_ADAPTERS_DIR"), ({"LM_SERVER_ADAPTERS_DIR": "/tmp/adapters"}, "trains the local GGUF model")],
)
def test_a_weight_optimizer_job_is_refused_where_it_cannot_train_or_be_served(
    deployment, env: dict[str, str], reason: str
) -> None:
    """No adapters folder, or an LM that is not the local model (the simulator here): a 422 before anything runs."""
    with deployment.with_env(**env).api() as api:
        response = api.post("/v1/jobs", json={**JOB, "optimizer": "bootstrap_finetune", "budget": 4})
        listed = api.get("/v1/jobs").json()["jobs"]
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "finetune_unavailable"
    assert reason in response.json()["error"]["message"]
    assert listed == []


@pytest.mark.parametrize(("optimizer", "budget"), SMALLEST_BUDGETS.items())
def test_every_offered_optimizer_runs_a_job_to_a_decision(deployment, optimizer: str, budget: int) -> None:
    """Every optimizer the jobs API accepts compiles for real (its optional dependencies installed)."""
    view = run_in_foreground(deployment.env, optimizer, budget, "--no-feedback")
    assert view["state"] == "succeeded", view.get("error")
    assert view["decision"] in ("promoted", "not_promoted")
    run = MlflowClient(deployment.env["MLFLOW_TRACKING_URI"]).get_run(view["mlflow_run_id"])
    assert run.data.params["optimizer"] == optimizer
    assert run.data.metrics["optimize_lm_calls"] > 0


def test_a_running_job_can_be_cancelled(slow_deployment) -> None:
    d = slow_deployment
    with d.api() as api, d.worker() as worker:
        job = api.post("/v1/jobs", json={**JOB, "dataset": {"train_limit": 20, "dev_limit": 20}}).json()
        d.wait_for(api, job["id"], lambda v: v["state"] == "running" and v["progress"]["stage"] != "starting")
        assert api.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "running"  # asked; stops at next LM call
        view = d.wait_for(api, job["id"], d.finished, timeout_s=60)
        assert worker.proc.poll() is None
    assert view["state"] == "cancelled"
    assert view["registered_version"] is None
    assert d.versions() == []


def test_an_unreachable_lm_fails_the_job_with_a_reason_and_the_worker_lives_on(deployment) -> None:
    d = deployment.with_env(LM_API_BASE="http://127.0.0.1:9/v1")
    with d.api() as api, d.worker() as worker:
        first = api.post("/v1/jobs", json=JOB).json()
        second = api.post("/v1/jobs", json=JOB).json()
        views = [d.wait_for(api, job["id"], d.finished, timeout_s=120) for job in (first, second)]
        assert worker.proc.poll() is None, "the worker died"
    for view in views:
        assert view["state"] == "failed"
        assert view["error"].startswith(
            "lm_unavailable: the LM openai/lm-simulator at http://127.0.0.1:9/v1 did not answer"
        )
        assert d.env["LM_API_KEY"] not in view["error"]
