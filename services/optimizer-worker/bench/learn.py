"""The learning benchmark (`make learn`): every job optimizer on the bundled model, evaluated on dev and test.

    .venv/bin/python services/optimizer-worker/bench/learn.py [--only miprov2,gepa] [--finetune-examples 80]

Each row is built the way a job builds its candidate: `optimizers.plan(...)` from the worker's own
settings, the shipped baseline as the student and teacher, the train split as the training set, and
`plan.optimizer.compile(...)`. The weight optimizers train LoRA adapters on the CPU, which an LM
server started here serves from its adapters folder. Every row is scored on the full dev and test
splits with `evaluate_program`, and carries a 95 % bootstrap interval of its combined score.
The table goes to docs/results/learning.md, which module 4 includes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import dspy

from optimizer_worker import optimizers, trainset
from optimizer_worker.finetune.provider import tunable_lm
from optimizer_worker.settings import Settings
from qa_core.dataset import load_split
from qa_core.evaluation import EvaluationReport, evaluate_program
from qa_core.heuristic import BestSentence
from qa_core.lm import build_adapter, build_lm
from qa_core.program import build_program

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "docs" / "results" / "learning.md"
# (optimizer, budget): the weight optimizers on the whole train split; the prompt optimizers at the low end of
# their ranges (the sizes of the jobs in module 4's examples), so each costs minutes.
ROWS: list[tuple[str, int]] = [
    ("bootstrap_finetune", 80),
    ("better_together", 80),
    ("bootstrap_fewshot", 2),
    ("bootstrap_random_search", 2),
    ("simba", 2),
    ("gepa", 30),
    ("miprov2", 1),
]


SPLITS = ("dev", "test")


@dataclass
class Row:
    label: str
    reports: dict[str, EvaluationReport]
    train_s: float | None


@contextlib.contextmanager
def lm_server(adapters_dir: Path, port: int) -> Iterator[str]:
    """`qa-core lm serve` with the adapters folder; yields its base URL once it answers."""
    env = {**os.environ, "LM_SERVER_PORT": str(port), "LM_SERVER_ADAPTERS_DIR": str(adapters_dir)}
    process = subprocess.Popen([sys.executable, "-m", "qa_core.cli", "lm", "serve"], env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{base}/models", timeout=2)
                break
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def bootstrap_interval(scores: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean, resampling the questions."""
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(scores, k=len(scores))) / len(scores) for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def table_line(row: Row, split: str) -> str:
    report = row.reports[split]
    s = report.scores
    low, high = bootstrap_interval([example["combined"] for example in report.per_example])
    train = f"{row.train_s:.0f} s" if row.train_s is not None else "-"
    return (
        f"| {row.label} | {split} | **{s['combined']:.3f}** ({low:.2f}-{high:.2f}) | {s['f1']:.3f} "
        f"| {s['exact_match']:.3f} | {s['citation']:.3f} | {report.parse_failures} | {report.ungrounded} "
        f"| {report.lm_calls} | {train} | {report.wall_time_s:.0f} s |"
    )


def evaluate_both(
    program: dspy.Module, settings: Settings, label: str, limit: int | None = None
) -> dict[str, EvaluationReport]:
    return {
        split: evaluate_program(program, load_split(settings.dataset_dir, split, limit), settings, 1, label)
        for split in SPLITS
    }


# --8<-- [start:optimize]
def optimize(settings: Settings, name: str, budget: int) -> tuple[dspy.Module, float]:
    """One job's optimize step, exactly as `pipeline.run_pipeline` runs it, without MLflow and the queue."""
    baseline = build_program(settings)
    data = trainset.build_trainset(baseline, settings.dataset_dir, [], None)
    plan = optimizers.plan(settings, name, budget, data.examples, teacher=baseline)  # type: ignore[arg-type]
    student = baseline.deepcopy()
    if plan.tunes_weights:
        student.set_lm(tunable_lm(settings, f"learn-{name.replace('_', '-')}", print_event))
    started = time.perf_counter()
    with dspy.context(lm=build_lm(settings), adapter=build_adapter(settings)):
        candidate = optimizers.compile_plan(plan, student)
    return candidate, time.perf_counter() - started


# --8<-- [end:optimize]


def print_event(stage: str, detail: dict) -> None:
    print(f"  {stage} {json.dumps(detail)}", flush=True)


def write_table(rows: list[Row], out: Path) -> None:
    header = (
        "| program | split | combined (95 % interval) | token F1 | exact match | citation | parse failures "
        "| ungrounded | LM calls | train time | eval time |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    measured = {row.label for row in rows}
    kept = [line for line in earlier_lines(out) if line_label(line) not in measured]
    lines = [table_line(row, split) for split in SPLITS for row in rows] + kept
    lines.sort(key=line_order)
    out.write_text(
        f"Last run {time.strftime('%Y-%m-%d')} (a run of some rows keeps the others' lines) on the 2-core "
        "reference machine with SmolLM2-135M-Instruct (Q4_1): "
        "each optimizer as a job runs it (`optimizers.plan` with the worker's default settings, "
        "the 80 train questions, no feedback), every row on the full dev (50) and test (50) splits, one "
        "thread. The interval is a 95 % bootstrap over the questions; rows whose intervals overlap are "
        "not distinguishable at this size. LM calls and eval time are for the evaluation, train time "
        f"for the optimizer.\n\n{header}\n" + "\n".join(lines) + "\n\n"
        'Reproduce: `make learn` (about two hours on 2 cores; `LEARN_ARGS="--only gepa"` runs one row).\n'
    )


def earlier_lines(out: Path) -> list[str]:
    """The rows of the table already written: a run of some optimizers (`--only`) keeps the others' rows."""
    if not out.is_file():
        return []
    return [line for line in out.read_text().splitlines() if line.startswith("| ") and line_split(line) in SPLITS]


def in_table(out: Path, label: str) -> bool:
    return {line_split(line) for line in earlier_lines(out) if line_label(line) == label} == set(SPLITS)


def line_label(line: str) -> str:
    return line.split(" | ")[0].removeprefix("| ")


def line_split(line: str) -> str:
    return line.split(" | ")[1] if line.count(" | ") > 1 else ""


def line_order(line: str) -> tuple[int, int]:
    """dev before test; within a split the references, then ROWS' order."""
    names = ["reference", "baseline"] + [name for name, _ in ROWS]
    label = line_label(line)
    position = next((i for i, name in enumerate(names) if label.startswith((f"{name}:", f"{name},"))), len(names))
    return SPLITS.index(line_split(line)), position


def cached_row(path: Path, build: Callable[[], Row]) -> Row:
    """A finished row is kept as JSON next to the adapters, so an interrupted run resumes where it stopped."""
    if path.is_file():
        data = json.loads(path.read_text())
        reports = {split: EvaluationReport(**report) for split, report in data["reports"].items()}
        return Row(data["label"], reports, data["train_s"])
    row = build()
    reports = {split: asdict(report) for split, report in row.reports.items()}
    path.write_text(json.dumps({"label": row.label, "reports": reports, "train_s": row.train_s}))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated optimizers (default: all)")
    parser.add_argument("--finetune-examples", type=int, help="override the weight optimizers' budget")
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--work-dir", type=Path, default=ROOT / ".state" / "learn")
    parser.add_argument("--limit", type=int, help="score only the first N questions of each split (a smoke run)")
    parser.add_argument("--fresh", action="store_true", help="forget the rows of an earlier run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    # A stopped run (kill, CI timeout) unwinds like Ctrl-C, so its LM server stops too instead of holding the port.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chosen = set(args.only.split(",")) if args.only else None

    adapters, done = args.work_dir / "adapters", args.work_dir / "rows"
    if args.fresh:
        for path in done.glob("*.json"):
            path.unlink()
    adapters.mkdir(parents=True, exist_ok=True)
    done.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with lm_server(adapters, args.port) as base:
        settings = Settings(
            _env_file=None,
            lm_model="llamacpp/smollm2-135m-instruct",
            lm_api_base=base,
            lm_server_adapters_dir=adapters,
            finetune_work_dir=args.work_dir / "finetune",
            optimizer_threads=1,
        )
        dspy.configure(lm=build_lm(settings), adapter=build_adapter(settings))
        index = build_program(settings).index
        reference = "reference: copy the best sentence (no LM)"
        rows.append(
            cached_row(
                done / "reference.json",
                lambda: Row(reference, evaluate_both(BestSentence(index), settings, "ref", args.limit), None),
            )
        )
        baseline = "baseline: shipped program, 2 labelled demos"
        # The baseline costs a quarter of an hour and a repeat gives identical scores (temperature 0), so a run
        # of some rows keeps the table's baseline lines when there are any.
        if chosen is None or (done / "baseline.json").is_file() or not in_table(args.out, baseline):
            rows.append(
                cached_row(
                    done / "baseline.json",
                    lambda: Row(baseline, evaluate_both(build_program(settings), settings, "base", args.limit), None),
                )
            )
        for name, budget in ROWS:
            if chosen is not None and name not in chosen:
                continue
            if name in optimizers.TUNES_WEIGHTS and args.finetune_examples:
                budget = args.finetune_examples

            def build(name: str = name, budget: int = budget) -> Row:
                print(f"== {name} (budget {budget})", flush=True)
                candidate, train_s = optimize(settings, name, budget)
                return Row(f"{name}, budget {budget}", evaluate_both(candidate, settings, name, args.limit), train_s)

            rows.append(cached_row(done / f"{name}-{budget}.json", build))
            print(table_line(rows[-1], "dev"), flush=True)
            write_table(rows, args.out)  # after every row: a long run shows its progress, and keeps it
    write_table(rows, args.out)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
