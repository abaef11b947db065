"""A 20-second headless Locust run against qa-api on the LM simulator must end with zero failures."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import processes

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_a_short_mixed_load_ends_with_zero_failures(tmp_path: Path) -> None:
    with processes.lm_simulator(latency_ms=100, tokens_per_second=200) as lm:
        env = {"LM_MODEL": "llamacpp/lm-simulator", "LM_API_BASE": lm, "LM_API_KEY": "sim", "USE_REGISTRY": "false"}
        with processes.qa_api(env) as api:
            completed = subprocess.run(
                [
                    os.path.join(os.path.dirname(sys.executable), "locust"),
                    "-f",
                    str(ROOT / "loadtests/locustfile.py"),
                    "--headless",
                    "-u",
                    "12",
                    "-r",
                    "12",
                    "-t",
                    "20s",
                    "--host",
                    api.url,
                    "--csv",
                    str(tmp_path / "smoke"),
                    "--only-summary",
                ],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            metrics = httpx.get(f"{api.url}/metrics", timeout=10).text
    with open(tmp_path / "smoke_stats.csv") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert completed.returncode == 0, completed.stderr[-2000:]
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 50
    assert int(total["Failure Count"]) == 0, (tmp_path / "smoke_failures.csv").read_text()
    for name in ("/v1/answer", "/v1/answer/stream", "/v1/answer/batch"):
        assert int(rows[name]["Request Count"]) > 0, name
    # Every request was marked synthetic, so dashboards of real traffic can leave all of them out.
    assert 'qa_requests_total{endpoint="answer",status="ok",synthetic="true",variant="champion"}' in metrics
    assert 'synthetic="false"' not in metrics
