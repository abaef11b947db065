"""`make bench BENCH_ARGS=--quick`: the benchmark's smoke run, every simulator row in one short run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_bench_writes_every_row_with_no_failed_request(tmp_path: Path) -> None:
    table = tmp_path / "load.md"
    subprocess.run(
        [sys.executable, str(ROOT / "loadtests/bench.py"), "--quick", "--markdown", str(table)],
        check=True,
        capture_output=True,
        timeout=540,
    )
    rows = [line.split("|")[1:-1] for line in table.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0]]
    by_app = {cells[0].strip(): dict(zip(header, (c.strip() for c in cells), strict=True)) for cells in rows[1:]}
    assert set(by_app) == {"qa-api (tracing 0.01)", "qa-api (tracing 1)", "minimal", "tutorial"}
    for app, row in by_app.items():
        assert row["failures"] == "0", app
        assert float(row["requests/s"]) > 0, app
        assert float(row["ready s"]) > 0, app
        assert float(row["memory MB"]) > 0, app
    assert by_app["minimal"]["vs minimal"] == "1.00x"
    # Tracing every answer costs MLflow's server CPU; at 1 % it hardly does.
    assert float(by_app["qa-api (tracing 1)"]["MLflow CPU ms/request"]) > float(
        by_app["qa-api (tracing 0.01)"]["MLflow CPU ms/request"]
    )
