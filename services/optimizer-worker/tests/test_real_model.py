"""One job end to end on the real bundled model (SmolLM2-135M through llama.cpp): slow, and run in CI."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from optimizer_worker.pipeline import decide
from qa_core import contracts, registry
from qa_core.settings import DEV_LM_API_KEY

pytestmark = [pytest.mark.slow, pytest.mark.lm, pytest.mark.timeout(900)]


def test_bootstrap_fewshot_job_on_the_real_model(make_deployment, llama_base: str) -> None:
    margin = 0.02
    d = make_deployment(
        llama_base,
        LM_MODEL="llamacpp/smollm2-135m-instruct",
        LM_API_KEY=DEV_LM_API_KEY,
        PROMOTION_MARGIN=str(margin),
        LEASE_TIMEOUT_S="60",
        HEARTBEAT_INTERVAL_S="2",
    )
    job = {
        "optimizer": "bootstrap_fewshot",
        "budget": 1,
        "dataset": {"include_feedback": False, "train_limit": 4, "dev_limit": 6},
    }
    seen: list[dict] = []
    with d.api() as api, d.worker():
        created = api.post("/v1/jobs", json=job)
        assert created.status_code == 201
        view = d.wait_for(api, created.json()["id"], d.finished, timeout_s=800, seen=seen)

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
