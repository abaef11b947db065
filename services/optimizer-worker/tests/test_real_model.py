"""One job end to end on the real bundled model (SmolLM2-135M through llama.cpp): slow, and run in CI."""

from __future__ import annotations

from pathlib import Path

import dspy
import pytest
from mlflow import MlflowClient

from optimizer_worker.finetune.provider import adapter_name
from optimizer_worker.pipeline import decide
from qa_core import contracts, registry
from qa_core.dataset import load_split
from qa_core.lm import build_adapter, build_lm
from qa_core.program import build_program
from qa_core.settings import DEV_LM_API_KEY

pytestmark = [pytest.mark.slow, pytest.mark.lm, pytest.mark.timeout(900)]
REAL_MODEL = {"LM_MODEL": "llamacpp/smollm2-135m-instruct", "LM_API_KEY": DEV_LM_API_KEY}


def run_job(d, job: dict, timeout_s: float) -> tuple[dict, list[dict]]:
    """Submit `job` through the jobs API to a running worker; its final view, and every view seen on the way."""
    seen: list[dict] = []
    with d.api() as api, d.worker():
        created = api.post("/v1/jobs", json=job)
        assert created.status_code == 201, created.text
        view = d.wait_for(api, created.json()["id"], d.finished, timeout_s=timeout_s, seen=seen)
    return view, seen


def test_bootstrap_fewshot_job_on_the_real_model(make_deployment, llama_base: str) -> None:
    margin = 0.02
    d = make_deployment(
        llama_base,
        **REAL_MODEL,
        PROMOTION_MARGIN=str(margin),
        LEASE_TIMEOUT_S="60",
        HEARTBEAT_INTERVAL_S="2",
    )
    job = {
        "optimizer": "bootstrap_fewshot",
        "budget": 1,
        "dataset": {"include_feedback": False, "train_limit": 4, "dev_limit": 6},
    }
    view, seen = run_job(d, job, timeout_s=800)

    assert view["state"] == "succeeded", view["error"]
    assert {v["progress"]["stage"] for v in seen} >= {"evaluating_champion", "optimizing", "evaluating_candidate"}
    candidate, champion = view["scores"]["candidate_dev"], view["scores"]["champion_dev"]
    assert 0.0 <= candidate <= 1.0
    assert 0.0 <= champion <= 1.0
    promoted = decide(candidate, champion, margin)[0] == "promoted"
    assert view["decision"] == ("promoted" if promoted else "not_promoted")
    client = MlflowClient(d.env["MLFLOW_TRACKING_URI"])
    run = client.get_run(view["mlflow_run_id"])
    assert run.data.metrics["optimize_lm_calls"] >= 1
    assert run.data.params["lm_model"] == "llamacpp/smollm2-135m-instruct"
    challenger = registry.version_for_alias(client, d.settings.registered_model_name, contracts.CHALLENGER_ALIAS)
    if promoted:
        assert challenger is not None
        assert challenger.version == view["registered_version"]
    else:
        assert challenger is None
        assert d.versions() == []


@pytest.mark.timeout(1500)
def test_a_bootstrap_finetune_job_trains_an_adapter_that_the_registered_version_answers_with(
    make_deployment, llama_base: str, llama_adapters_dir: Path, finetune_cache: Path, tmp_path: Path
) -> None:
    """The weight path as a job: labelled traces, LoRA steps as progress, an adapter the running LM server
    serves at once, a candidate evaluated on it, and a version whose program names the tuned model.

    PROMOTION_MARGIN=-1 registers the candidate whatever it scores: this tests the path, and
    `tests/e2e/test_learning_loop.py` tests that the loop learns.
    """
    d = make_deployment(
        llama_base,
        **REAL_MODEL,
        PROMOTION_MARGIN="-1",
        LEASE_TIMEOUT_S="120",
        HEARTBEAT_INTERVAL_S="1",
        LM_SERVER_ADAPTERS_DIR=str(llama_adapters_dir),
        FINETUNE_WORK_DIR=str(finetune_cache),
        FINETUNE_EPOCHS="2",
        FINETUNE_RANK="8",
        FINETUNE_ACCUMULATION="2",
        FINETUNE_LEARNING_RATE="0.002",
    )
    job = {
        "optimizer": "bootstrap_finetune",
        "budget": 4,
        "dataset": {"include_feedback": False, "train_limit": 4, "dev_limit": 4},
    }
    view, seen = run_job(d, job, timeout_s=1400)

    assert view["state"] == "succeeded", view["error"]
    assert {v["progress"]["stage"] for v in seen} >= {"training", "evaluating_candidate"}
    adapter = adapter_name(view["id"])
    assert (llama_adapters_dir / f"{adapter}.gguf").is_file()
    client = MlflowClient(d.env["MLFLOW_TRACKING_URI"])
    run_id = view["mlflow_run_id"]
    losses = [m.value for m in sorted(client.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)]
    assert len(losses) == 4  # 2 epochs of 4 conversations, 2 per step
    assert losses[-1] < losses[0], losses
    assert [a.path for a in client.list_artifacts(run_id, "adapter")] == [f"adapter/{adapter}.gguf"]

    # The registered version loads with the tuned model bound to its predictor, from the service's settings.
    version = registry.version_for_alias(client, d.settings.registered_model_name, contracts.CHALLENGER_ALIAS)
    assert version is not None
    assert version.version == view["registered_version"]
    state = registry.download_program_state(client, version, tmp_path)
    served = d.settings.model_copy(update={"lm_api_base": llama_base})
    program = build_program(served, state)
    assert program.answer.lm.model == f"llamacpp/smollm2-135m-instruct+{adapter}"
    assert program.answer.lm.kwargs["api_key"] == DEV_LM_API_KEY
    assert program.answer.lm.kwargs["api_base"] == llama_base
    assert program.answer.demos == []
    base_program = build_program(served)
    base_program.answer.demos = []  # the same prompt: only the weights differ
    questions = [example.question for example in load_split(served.dataset_dir, "train", 4)]
    with dspy.context(lm=build_lm(served), adapter=build_adapter(served)):
        tuned = [program(question=question) for question in questions]
        base = [base_program(question=question) for question in questions]
    assert all(answer.citations for answer in tuned), tuned
    assert [a.answer for a in tuned] != [a.answer for a in base]  # the adapter changes the model's answers
