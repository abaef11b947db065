"""`make dev`'s supervisor: it brings the whole stack up as local processes, it answers, and Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.infra.tools import ROOT
from tests.support.processes import QUIET_ENV, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_make_dev_starts_every_service_answers_and_stops_them_all_on_ctrl_c(tmp_path: Path) -> None:
    ports = {
        name: free_port() for name in ("QA_API_PORT", "WORKER_API_PORT", "FEEDBACK_UI_PORT", "MLFLOW_PORT", "LM_PORT")
    }
    log = (tmp_path / "dev.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "infra/dev/run.py", "--lm", "simulator", "--state", str(tmp_path / "state")],
        cwd=ROOT, env={**os.environ, **QUIET_ENV, **{k: str(v) for k, v in ports.items()}},
        stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 480
        while "The stack is up" not in (tmp_path / "dev.log").read_text():
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "dev.log").read_text()[-3000:]
            time.sleep(0.5)
        output = (tmp_path / "dev.log").read_text()
        for port in (ports["FEEDBACK_UI_PORT"], ports["QA_API_PORT"], ports["MLFLOW_PORT"]):
            assert f"http://127.0.0.1:{port}" in output

        answer = httpx.post(f"http://127.0.0.1:{ports['QA_API_PORT']}/v1/answer", json={"question": "Which port?"},
                            timeout=60)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "1"  # the bootstrap registered the baseline as the champion
        assert answer.json()["trace_id"]
        jobs = httpx.get(f"http://127.0.0.1:{ports['WORKER_API_PORT']}/health/ready", timeout=10)
        assert jobs.json()["checks"] == {"database": "ok", "queue": "ok"}  # embedded SQLite queue and jobs table
        ui = httpx.get(f"http://127.0.0.1:{ports['FEEDBACK_UI_PORT']}/health/ready", timeout=10)
        assert ui.status_code == 200
        assert (tmp_path / "state" / "feedback-ui.db").exists()
        assert (tmp_path / "state" / "mlartifacts").is_dir()
        children = subprocess.run(["pgrep", "-f", str(tmp_path / "state")], capture_output=True, text=True).stdout
        assert children.split(), "the services run with the state folder in their arguments or environment"

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0
        assert "stopped." in (tmp_path / "dev.log").read_text()
        left = subprocess.run(["pgrep", "-f", str(tmp_path / "state")], capture_output=True, text=True).stdout
        assert not left.split(), f"processes left running: {left}"
        for port in ports.values():
            with pytest.raises(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
