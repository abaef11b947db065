"""The learning loop with the real model, as `make dev` runs it: corrections in, a better version out.

A person asks five questions, corrects the answers in feedback-ui, and does nothing else. The worker's
auto-trigger sees five new corrections and starts a fine-tuning job by itself (the defaults of
`make dev` and compose); the job LoRA-tunes SmolLM2 on the train split with the corrections first,
and registers its candidate only if it beats the champion on the full dev split by the real
PROMOTION_MARGIN (0.02). qa-api then serves it as the challenger. Only the job's size is scaled down
from the defaults, so the test fits in `make test`: fewer training conversations, smaller steps.
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

import httpx
import pytest
from mlflow import MlflowClient

from qa_core import contracts
from qa_core.dataset import load_split
from qa_core.settings import CoreSettings
from tests.infra.tools import ROOT
from tests.support import waiting
from tests.support.processes import QUIET_ENV, free_port

pytestmark = [pytest.mark.slow, pytest.mark.lm, pytest.mark.timeout(1800)]
CORRECTIONS = 5  # AUTO_TRIGGER_MIN_RATINGS of make dev and compose: not overridden here
MARGIN = 0.02  # PROMOTION_MARGIN of make dev and compose: not overridden here
RESULTS = ROOT / "test-artifacts" / "learning-loop.json"


def test_five_corrections_in_feedback_ui_lead_to_a_fine_tuned_challenger_that_beats_the_champion(
    tmp_path: Path, finetune_cache: Path
) -> None:
    ports = {
        name: free_port() for name in ("QA_API_PORT", "WORKER_API_PORT", "FEEDBACK_UI_PORT", "MLFLOW_PORT", "LM_PORT")
    }
    env = {
        **os.environ,
        **QUIET_ENV,
        **{k: str(v) for k, v in ports.items()},
        "RECOVERY_INTERVAL_S": "2",  # how often the worker looks at the ratings
        "REGISTRY_POLL_S": "3",
        # The job's size, scaled down from 80 conversations: what fits in CI and still wins on dev.
        "AUTO_TRIGGER_BUDGET": "24",
        "FINETUNE_ACCUMULATION": "4",
        "FINETUNE_WORK_DIR": str(finetune_cache),  # the dequantized base model, shared with other tests
    }
    log_path = tmp_path / "dev.log"

    def wait_until(what: str, check: Callable[[], Any], timeout_s: float, interval_s: float = 2.0) -> Any:
        return waiting.wait_until(
            check, timeout_s, what, interval_s, detail=lambda: "\n" + log_path.read_text()[-4000:]
        )

    log = log_path.open("w+")
    proc = subprocess.Popen(
        [sys.executable, "infra/dev/run.py", "--lm", "llama", "--state", str(tmp_path / "state")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    qa, ui, jobs = (f"http://127.0.0.1:{ports[p]}" for p in ("QA_API_PORT", "FEEDBACK_UI_PORT", "WORKER_API_PORT"))
    try:
        wait_until("make dev is up", lambda: "The stack is up" in log_path.read_text(), 480, 0.5)
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
                assert body["model_version"] == "1"
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
        assert (job["optimizer"], job["budget"]) == ("bootstrap_finetune", 24)
        view = wait_until(
            "the job finishing",
            lambda: (
                (v := httpx.get(f"{jobs}/v1/jobs/{job['id']}", timeout=30).json())["state"]
                in ("succeeded", "failed", "cancelled")
                and v
            ),
            1200,
            5,
        )
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
        mlflow = MlflowClient(f"http://127.0.0.1:{ports['MLFLOW_PORT']}")
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
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
