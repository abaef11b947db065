"""A prompt-optimizing job end to end on the real bundled model (SmolLM2-135M through llama.cpp).

The fine-tuning job on the real model is `tests/loop/test_learning_loop.py`: it checks the training
curve, the adapter and the registered version's tuned model in the one job it runs.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from optimizer_worker.pipeline import decide
from qa_core import contracts, registry
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
        "dataset": {"include_feedback": False, "train_limit": 2, "dev_limit": 3},
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
