"""`make learn`'s table: a run of some rows (`--only`) replaces their lines and keeps everyone else's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from qa_core.evaluation import EvaluationReport

LEARN = Path(__file__).resolve().parents[1] / "bench" / "learn.py"


def load_learn():  # bench/ is a script folder, not a package
    spec = importlib.util.spec_from_file_location("learn", LEARN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["learn"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def report(split: str, combined: float) -> EvaluationReport:
    scores = {"combined": combined, "f1": combined / 2, "exact_match": 0.0, "citation": 1.0}
    per_example = [{"combined": combined}, {"combined": combined}]
    return EvaluationReport(split, 2, "p", "m", True, 1, scores, 0, 0.0, 0, 0, 2, 1.0, per_example)


def row(learn, label: str, combined: float):
    return learn.Row(label, {split: report(split, combined) for split in learn.SPLITS}, 1.0)


def combined_by_line(text: str) -> list[tuple[str, str, str]]:
    lines = [line.split(" | ") for line in text.splitlines() if " | dev | " in line or " | test | " in line]
    return [(cells[0].removeprefix("| "), cells[1], cells[2].split()[0]) for cells in lines]


def test_a_partial_run_keeps_the_other_rows_and_replaces_its_own(tmp_path: Path) -> None:
    learn, out = load_learn(), tmp_path / "learning.md"
    baseline = "baseline: shipped program, 2 labelled demos"
    learn.write_table([row(learn, baseline, 0.4), row(learn, "gepa, budget 30", 0.3)], out)
    learn.write_table([row(learn, baseline, 0.5), row(learn, "bootstrap_finetune, budget 80", 0.6)], out)

    assert combined_by_line(out.read_text()) == [
        (baseline, "dev", "**0.500**"),
        ("bootstrap_finetune, budget 80", "dev", "**0.600**"),
        ("gepa, budget 30", "dev", "**0.300**"),
        (baseline, "test", "**0.500**"),
        ("bootstrap_finetune, budget 80", "test", "**0.600**"),
        ("gepa, budget 30", "test", "**0.300**"),
    ]
