from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from qa_core.dataset import load_split
from qa_core.evaluation import evaluate_program
from qa_core.program import build_program
from qa_core.settings import CoreSettings


def simulator_env(base: str) -> dict[str, str]:
    return {"LM_MODEL": "openai/lm-simulator", "LM_API_BASE": base, "LM_API_KEY": "sim"}


def test_qa_eval_prints_every_metric_and_writes_a_report(simulator_base: str, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "qa_core.evaluation",
            "--split",
            "dev",
            "--limit",
            "6",
            "--threads",
            "2",
            "--report",
            str(report_path),
        ],
        env={**os.environ, **simulator_env(simulator_base)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    for metric in ("combined", "f1", "exact_match", "citation", "parse failures", "LM calls"):
        assert metric in completed.stdout
    report = json.loads(report_path.read_text())
    assert report["examples"] == 6
    assert report["split"] == "dev"
    assert len(report["per_example"]) == 6
    assert report["parse_failures"] == 0
    assert report["lm_calls"] >= 6
    assert 0.0 <= report["scores"]["combined"] <= 1.0


def test_a_missing_program_file_is_an_error_not_a_silent_fallback(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "qa_core.evaluation", "--program", str(tmp_path / "nope.json"), "--limit", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert "nope.json" in completed.stderr


def test_parse_failures_are_counted_not_hidden(index, tmp_path: Path) -> None:
    """A server that answers garbage: every example is a parse failure, and the report says so."""
    from tests.support.processes import free_port, running

    port = free_port()
    garbage = tmp_path / "garbage.py"
    garbage.write_text(
        "from starlette.applications import Starlette\n"
        "from starlette.responses import JSONResponse\n"
        "from starlette.routing import Route\n"
        "import uvicorn, sys\n"
        "async def chat(request):\n"
        "    return JSONResponse({'id': 'x', 'object': 'chat.completion', 'created': 0, 'model': 'g',\n"
        "        'choices': [{'index': 0, 'finish_reason': 'stop',\n"
        "                     'message': {'role': 'assistant', 'content': 'no idea, sorry'}}],\n"
        "        'usage': {'prompt_tokens': 1, 'completion_tokens': 1, 'total_tokens': 2}})\n"
        "async def ok(request):\n"
        "    return JSONResponse({})\n"
        "app = Starlette(routes=[Route('/v1/chat/completions', chat, methods=['POST']), Route('/health', ok)])\n"
        "uvicorn.run(app, port=int(sys.argv[1]), log_level='warning')\n"
    )
    with running([sys.executable, str(garbage), str(port)], f"http://127.0.0.1:{port}/health"):
        settings = CoreSettings(
            _env_file=None,
            lm_model="openai/garbage",
            lm_api_base=f"http://127.0.0.1:{port}/v1",
            lm_structured_output=False,
            grounding_attempts=1,
        )
        devset = load_split(settings.dataset_dir, "dev", limit=3)
        report = evaluate_program(build_program(settings), devset, settings, threads=1, program_label="baseline")
    assert report.parse_failures == 3
    assert report.parse_failure_rate == 1.0
    assert report.scores["combined"] == 0.0
