"""The compose stack end to end: build, start, ask, rate, optimize, promote, and take it all down again.

Run with `make test-compose` after `../shared/tools/docker-standins --prometheus-tag v2.53.0` (see README.md
here). It uses its own compose project and free host ports, so it never touches a stack you already run, and
`docker compose down -v` removes its containers and volumes whatever happens. Grafana and the tracing profile
are left out: their images cannot be built locally.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from qa_core import contracts
from tests.support.databases import docker_available
from tests.support.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "dspy-qa-e2e"
SERVICES = [  # everything with a local base image: all but grafana (and the tracing / loadtest profiles)
    "postgres", "redis", "mlflow", "llm", "worker-migrate", "feedback-migrate", "bootstrap",
    "qa-api", "optimizer-worker-api", "optimizer-worker", "feedback-ui", "prometheus",
]  # fmt: skip
RESULTS = ROOT / "test-artifacts" / "compose-e2e.json"


@dataclass
class Stack:
    ports: dict[str, int]
    timings: dict[str, float]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


def compose(*args: str, env: dict[str, str], timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["docker", "compose", "-p", PROJECT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker compose {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def memory_mib() -> dict[str, float]:
    """Memory per container of this project, from `docker stats --no-stream`."""
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    used = {}
    for line in out.splitlines():
        name, usage = line.split("\t")
        if name.startswith(PROJECT):
            value, unit = re.match(r"([\d.]+)\s*([KMG]?i?B)", usage).groups()  # type: ignore[union-attr]
            used[name] = round(float(value) * units[unit], 1)
    return used


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not docker_available():
        pytest.fail("Docker does not answer: run `sudo ../shared/tools/docker-standins --prometheus-tag v2.53.0` first")
    ports = {
        "QA_API_PORT": free_port(), "WORKER_API_PORT": free_port(), "FEEDBACK_UI_PORT": free_port(),
        "MLFLOW_PORT": free_port(), "PROMETHEUS_PORT": free_port(), "GRAFANA_PORT": free_port(),
    }  # fmt: skip
    env = {
        **os.environ,
        **{k: str(v) for k, v in ports.items()},
        "COMPOSE_BAKE": "false",
        # Every candidate becomes the challenger, so one tiny job on the weak model always shows the whole loop
        # (whether it wins is the real model's business, measured elsewhere).
        "PROMOTION_MARGIN": "-1",
        "REGISTRY_POLL_S": "3",
    }
    compose("down", "-v", "--remove-orphans", env=env, check=False)
    timings: dict[str, float] = {}
    try:
        started = time.monotonic()
        compose("build", *SERVICES, env=env, timeout=3600)
        timings["build_s"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        compose("up", "--detach", "--wait", "--wait-timeout", "900", *SERVICES, env=env, timeout=1200)
        timings["up_to_healthy_s"] = round(time.monotonic() - started, 1)
        yield Stack(ports, timings)
    except BaseException:
        logs = compose("logs", "--no-color", "--tail", "60", env=env, check=False)
        print(logs.stdout[-20000:])
        raise
    finally:
        compose("down", "-v", "--remove-orphans", env=env, timeout=600, check=False)


def test_the_whole_loop_through_the_compose_stack(stack: Stack) -> None:
    qa, ui, jobs = stack.url("QA_API_PORT"), stack.url("FEEDBACK_UI_PORT"), stack.url("WORKER_API_PORT")
    mlflow = MlflowClient(tracking_uri=stack.url("MLFLOW_PORT"))
    memory = memory_mib()
    report: dict[str, object] = {**stack.timings, "memory_mib": memory, "memory_total_mib": round(sum(memory.values()))}

    # Ask: the bootstrap job registered the baseline as version 1 champion, and the answer is traced.
    answer = httpx.post(
        f"{qa}/v1/answer", json={"question": "Which port does the MLflow server listen on?"},
        headers={contracts.HEADER_FORCE_TRACE: "1", contracts.HEADER_SESSION_ID: "e2e-user"}, timeout=120,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["variant"] == "champion"
    assert body["model_version"] == "1"
    assert body["trace_id"]
    report["first_answer"] = body["answer"]

    # Rate it through feedback-ui's JSON API, logged in as the dev admin with the session's CSRF token.
    with httpx.Client(base_url=ui, timeout=60) as browser:
        login_page = browser.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', login_page.text).group(1)  # type: ignore[union-attr]
        logged_in = browser.post("/login", data={"username": "admin", "password": "admin", "csrf_token": token})
        assert logged_in.status_code in (200, 303), logged_in.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/ask").text).group(1)  # type: ignore[union-attr]
        feedback = browser.post(
            "/api/feedback",
            json={"trace_id": body["trace_id"], "rating": "up", "reason": "e2e", "idempotency_key": uuid.uuid4().hex},
            headers={"X-CSRF-Token": csrf},
        )
        assert feedback.status_code == 202, feedback.text
        submission = feedback.json()
        deadline = time.monotonic() + 120
        while submission["status"] != "delivered":
            assert time.monotonic() < deadline, submission
            time.sleep(2)
            submission = browser.get(f"/api/feedback/{submission['id']}").json()
        # Known once the trace is complete in MLflow (it may still be in progress when the rating arrives).
        assert (submission["variant"], submission["model_version"]) == ("champion", "1")
        metrics = browser.get("/metrics").text
        assert re.search(r'feedback_ratings_total\{rating="up",variant="champion"\} 1\.0', metrics), metrics[-2000:]

        # The outbox delivered it: the rating is an assessment on the trace, from a human, by that user.
        trace = mlflow.get_trace(body["trace_id"])
        ratings = [a for a in trace.info.assessments if a.name == contracts.ASSESSMENT_USER_RATING]
        assert len(ratings) == 1
        assert ratings[0].source.source_type == "HUMAN"
        assert ratings[0].source.source_id == "admin"

        # Optimize: a BootstrapFewShot job with a tiny budget, through the jobs API, ends with a new version.
        job = httpx.post(
            f"{jobs}/v1/jobs",
            json={"optimizer": "bootstrap_fewshot", "budget": 1, "idempotency_key": uuid.uuid4().hex,
                  "dataset": {"include_feedback": True, "train_limit": 4, "dev_limit": 6}},
            timeout=60,
        )  # fmt: skip
        assert job.status_code == 201, job.text
        view = job.json()
        started = time.monotonic()
        while view["state"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() - started < 1800, view
            time.sleep(5)
            view = httpx.get(f"{jobs}/v1/jobs/{view['id']}", timeout=30).json()
        report["job_s"] = round(time.monotonic() - started, 1)
        after_job = memory_mib()
        report["memory_after_job_mib"] = after_job
        report["memory_after_job_total_mib"] = round(sum(after_job.values()))
        report["job"] = {k: view.get(k) for k in ("state", "decision", "reason", "scores", "registered_version")}
        assert view["state"] == "succeeded", view
        assert view["decision"] == "promoted", view  # PROMOTION_MARGIN=-1
        new_version = view["registered_version"]
        assert new_version == "2"
        challenger = mlflow.get_model_version_by_alias(contracts.REGISTERED_MODEL_NAME, contracts.CHALLENGER_ALIAS)
        assert challenger.version == new_version

        # Promote it on the experiment page (admin, with the CSRF token), and qa-api serves it without a restart.
        promoted = browser.post(
            "/experiment/promote", data={"expected_challenger": new_version, "csrf_token": csrf}, follow_redirects=False
        )
        assert promoted.status_code == 303, promoted.text
    champion = mlflow.get_model_version_by_alias(contracts.REGISTERED_MODEL_NAME, contracts.CHAMPION_ALIAS)
    assert champion.version == new_version
    deadline = time.monotonic() + 120
    while True:
        again = httpx.post(f"{qa}/v1/answer", json={"question": "Which header forces a variant?"},
                           headers={contracts.HEADER_SESSION_ID: "e2e-user"}, timeout=120)  # fmt: skip
        assert again.status_code == 200, again.text
        if again.json()["model_version"] == new_version:
            break
        assert time.monotonic() < deadline, again.json()
        time.sleep(3)
    assert again.json()["variant"] == "champion"

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
