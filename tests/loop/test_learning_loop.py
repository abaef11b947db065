"""The learning loop with the real model, as `make dev` runs it: corrections in, a better version out.

A person runs `make dev` (the real model is its default), asks five questions, corrects the answers in
feedback-ui, and does nothing else. The worker's auto-trigger sees five new corrections and starts a
fine-tuning job by itself (the defaults of `make dev` and compose); the job LoRA-tunes SmolLM2 on the
train split with the corrections first, and registers its candidate only if it beats the champion on
the full dev split by the real PROMOTION_MARGIN (0.02). qa-api then serves it as the challenger, and
Ctrl-C stops the whole stack. Only the job's size is scaled down from the defaults, so the test fits in
`make test`: fewer training conversations, smaller steps.

This one run also checks what a separate run would cost minutes to repeat: the supervisor's start-up
and shutdown, the champion's evaluation (every answer parses, cites a retrieved passage and is a span
of the passages), the training curve and adapter in MLflow, and the registered version's tuned model.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy
import httpx
import pytest
from mlflow import MlflowClient

from optimizer_worker.finetune.provider import adapter_name
from qa_core import contracts, registry
from qa_core.dataset import load_split
from qa_core.lm import build_adapter, build_lm
from qa_core.program import ANSWER_MAX_CHARS, build_program
from qa_core.settings import DEV_LM_API_KEY, CoreSettings
from tests.infra.tools import ROOT
from tests.support import waiting
from tests.support.processes import QUIET_ENV, free_port

pytestmark = [pytest.mark.slow, pytest.mark.lm, pytest.mark.timeout(1800)]
CORRECTIONS = 5  # AUTO_TRIGGER_MIN_RATINGS of make dev and compose: not overridden here
MARGIN = 0.02  # PROMOTION_MARGIN of make dev and compose: not overridden here
BUDGET, ACCUMULATION, EPOCHS = 24, 4, 2  # the job, scaled down from 80 conversations, 8 per step
RESULTS = ROOT / "test-artifacts" / "learning-loop.json"
LM_MODEL = "llamacpp/smollm2-135m-instruct"


def test_five_corrections_in_feedback_ui_lead_to_a_fine_tuned_challenger_that_beats_the_champion(
    tmp_path: Path,
) -> None:
    ports = {
        name: free_port() for name in ("QA_API_PORT", "WORKER_API_PORT", "FEEDBACK_UI_PORT", "MLFLOW_PORT", "LM_PORT")
    }
    state = tmp_path / "state"
    env = {
        **os.environ,
        **QUIET_ENV,
        **{k: str(v) for k, v in ports.items()},
        "RECOVERY_INTERVAL_S": "2",  # how often the worker looks at the ratings
        "REGISTRY_POLL_S": "3",
        # The job's size, scaled down: what fits in CI and still wins on dev.
        "AUTO_TRIGGER_BUDGET": str(BUDGET),
        "FINETUNE_ACCUMULATION": str(ACCUMULATION),
    }
    log_path = tmp_path / "dev.log"

    def wait_until(what: str, check: Callable[[], Any], timeout_s: float, interval_s: float = 2.0) -> Any:
        return waiting.wait_until(
            check, timeout_s, what, interval_s, detail=lambda: "\n" + log_path.read_text()[-4000:]
        )

    log = log_path.open("w+")
    proc = subprocess.Popen(
        [sys.executable, "infra/dev/run.py", "--state", str(state)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    qa, ui, jobs = (f"http://127.0.0.1:{ports[p]}" for p in ("QA_API_PORT", "FEEDBACK_UI_PORT", "WORKER_API_PORT"))
    mlflow = MlflowClient(f"http://127.0.0.1:{ports['MLFLOW_PORT']}")
    try:
        wait_until("make dev is up", lambda: "The stack is up" in log_path.read_text(), 480, 0.5)
        check_the_stack_is_up(log_path.read_text(), ports, state, jobs, ui)
        # --8<-- [start:loop]
        train = load_split(CoreSettings(_env_file=None).dataset_dir, "train")[:CORRECTIONS]
        with httpx.Client(base_url=ui, timeout=120) as browser:
            token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)  # type: ignore[union-attr]
            browser.post("/login", data={"username": "annotator", "password": "annotator", "csrf_token": token})
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/ask").text).group(1)  # type: ignore[union-attr]
            for example in train:
                answer = httpx.post(
                    f"{qa}/v1/answer", json={"question": example.question}, headers={contracts.HEADER_FORCE_TRACE: "1"},
                    timeout=120,
                )  # fmt: skip
                assert answer.status_code == 200, answer.text
                body = answer.json()
                assert body["model_version"] == "1"  # make dev's bootstrap registered the shipped program
                sent = browser.post(
                    "/api/feedback",
                    json={"trace_id": body["trace_id"], "rating": "down", "correction": example.answer,
                          "idempotency_key": uuid.uuid4().hex},
                    headers={"X-CSRF-Token": csrf},
                )  # fmt: skip
                assert sent.status_code == 202, sent.text

        # Nobody starts a job: the auto-trigger does, once the five corrections are in MLflow.
        job_started = time.monotonic()
        listed = wait_until("an automatic job", lambda: httpx.get(f"{jobs}/v1/jobs", timeout=30).json()["jobs"], 180)
        assert len(listed) == 1
        job = listed[0]
        assert (job["optimizer"], job["budget"]) == ("bootstrap_finetune", BUDGET)
        stages: set[str] = set()

        def finished() -> dict | None:
            view = httpx.get(f"{jobs}/v1/jobs/{job['id']}", timeout=30).json()
            stages.add(view["progress"]["stage"])
            return view if view["state"] in ("succeeded", "failed", "cancelled") else None

        view = wait_until("the job finishing", finished, 1200, 2)
        outcome = {k: view.get(k) for k in ("state", "scores", "decision", "decision_reason", "dataset_counts")}
        outcome["job_s"] = round(time.monotonic() - job_started, 1)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(outcome, indent=2))  # docs/results/feedback-loop.md quotes it
        assert view["state"] == "succeeded", view["error"]
        assert view["dataset_counts"]["corrected"] == CORRECTIONS
        candidate, champion = view["scores"]["candidate_dev"], view["scores"]["champion_dev"]
        assert candidate >= champion + MARGIN, view["decision_reason"]  # on the full dev split
        assert view["decision"] == "promoted"
        version = view["registered_version"]
        registered = mlflow.get_model_version_by_alias(contracts.REGISTERED_MODEL_NAME, contracts.CHALLENGER_ALIAS)
        assert registered.version == version

        # qa-api picks the challenger up from the registry and answers with the tuned weights.
        def challenger_answer() -> dict | None:
            reply = httpx.post(
                f"{qa}/v1/answer", json={"question": "Which library provides the BM25 lexical retrieval?"},
                headers={contracts.HEADER_FORCE_VARIANT: "challenger"}, timeout=120,
            ).json()  # fmt: skip
            return reply if reply.get("model_version") == version else None

        reply = wait_until("qa-api serving the challenger", challenger_answer, 60)
        assert reply["variant"] == "challenger"
        assert reply["citations"]
        # --8<-- [end:loop]
        assert {"training", "evaluating_champion", "evaluating_candidate"} <= stages, stages
        check_the_champion_evaluation(mlflow, view["mlflow_run_id"])
        check_the_training_run(mlflow, view, state)
        assert registered.tags[contracts.VERSION_TAG_JOB_ID] == view["id"]
        check_the_registered_version(mlflow, registered, f"http://127.0.0.1:{ports['LM_PORT']}/v1", tmp_path)

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0
        check_the_stack_is_down(log_path.read_text(), ports, state)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def check_the_stack_is_up(output: str, ports: dict[str, int], state: Path, jobs: str, ui: str) -> None:
    """`make dev` prints the URLs people open, and every service is ready on its own state folder."""
    for name in ("FEEDBACK_UI_PORT", "QA_API_PORT", "MLFLOW_PORT"):
        assert f"http://127.0.0.1:{ports[name]}" in output
    worker = httpx.get(f"{jobs}/health/ready", timeout=10)
    checks = worker.json()["checks"]  # the embedded SQLite queue and jobs table
    assert {name: check["ok"] for name, check in checks.items()} == {"database": True, "queue": True}
    assert httpx.get(f"{ui}/health/ready", timeout=10).status_code == 200
    assert (state / "feedback-ui.db").exists()
    assert (state / "mlartifacts").is_dir()
    children = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout
    assert children.split(), "the services run with the state folder in their arguments or environment"


def check_the_stack_is_down(output: str, ports: dict[str, int], state: Path) -> None:
    """Ctrl-C stopped every process it started and freed every port."""
    assert "stopped." in output
    left = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout
    assert not left.split(), f"processes left running: {left}"
    for port in ports.values():
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def check_the_champion_evaluation(mlflow: MlflowClient, run_id: str) -> None:
    """SmolLM2 with the schema as a grammar: on every dev question one LM call, an answer that parses,
    citations of retrieved passages only, and an answer that is a run of words from those passages."""
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    query = f"tags.mlflow.parentRunId = '{run_id}' and tags.mlflow.runName = 'champion-dev'"
    [child] = mlflow.search_runs([experiment_id], query)  # the evaluation's own nested run
    path = mlflow.download_artifacts(child.info.run_id, "eval/champion.json")
    report = json.loads(Path(path).read_text())
    rows = report["per_example"]
    assert report["examples"] == len(rows) == len(load_split(CoreSettings(_env_file=None).dataset_dir, "dev"))
    assert (report["parse_failures"], report["other_errors"], report["ungrounded"]) == (0, 0, 0), rows
    assert report["lm_calls"] == len(rows)  # grounding never needed a second attempt
    program = build_program(CoreSettings(_env_file=None))
    for row in rows:
        texts = " ".join(p.text for p in program.retrieve(row["question"]))
        assert row["citations"], row
        assert 0 < len(row["answer"]) <= ANSWER_MAX_CHARS, row
        assert row["answer"] in texts, row


def check_the_training_run(mlflow: MlflowClient, view: dict, state: Path) -> None:
    """The LoRA steps are the run's falling `train_loss` curve, and the adapter is logged and served."""
    run_id, adapter = view["mlflow_run_id"], adapter_name(view["id"])
    losses = [m.value for m in sorted(mlflow.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)]
    steps = -(-BUDGET // ACCUMULATION)
    assert len(losses) == steps * EPOCHS, losses
    assert sum(losses[steps:]) < sum(losses[:steps]), losses  # the same batches, a second time: lower loss
    assert [a.path for a in mlflow.list_artifacts(run_id, "adapter")] == [f"adapter/{adapter}.gguf"]
    assert (state / "adapters" / f"{adapter}.gguf").is_file()  # where make dev's LM server reads adapters


def check_the_registered_version(mlflow: MlflowClient, version: Any, lm_base: str, tmp_path: Path) -> None:
    """The version loads with the tuned model bound to its predictor, from the service's own settings,
    and with the same prompt it answers differently from the base weights."""
    settings = CoreSettings(_env_file=None, lm_model=LM_MODEL, lm_api_base=lm_base)
    program = build_program(settings, registry.download_program_state(mlflow, version, tmp_path))
    assert program.answer.lm.model == f"{LM_MODEL}+{adapter_name(version.tags[contracts.VERSION_TAG_JOB_ID])}"
    assert program.answer.lm.kwargs["api_key"] == DEV_LM_API_KEY  # the keyless default, never from the artifact
    assert program.answer.lm.kwargs["api_base"] == lm_base
    assert program.answer.demos == []
    base = build_program(settings)
    base.answer.demos = []  # the same prompt: only the weights differ
    questions = [example.question for example in load_split(settings.dataset_dir, "train", 4)]
    with dspy.context(lm=build_lm(settings), adapter=build_adapter(settings)):
        tuned = [program(question=question) for question in questions]
        untuned = [base(question=question) for question in questions]
    assert all(answer.citations for answer in tuned), tuned
    assert [a.answer for a in tuned] != [a.answer for a in untuned]  # the adapter changes the model's answers
