"""Measure weight optimization on the bundled model: BootstrapFinetune with the CPU LoRA provider.

    .venv/bin/python services/optimizer-worker/bench/finetune.py [--epochs 2] [--rank 16] [--examples 80]

Trains on the labelled train split, starts an LM server that serves the base model and the new
adapter, evaluates the prompt-only baseline, the tuned program and the copy-the-best-sentence
reference on dev and test, and writes docs/results/finetune.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dspy

from optimizer_worker.finetune.lora import TrainBudget
from optimizer_worker.finetune.provider import LoRAProvider
from qa_core.adapters import JSONAdapter
from qa_core.corpus import cached_index
from qa_core.dataset import load_split
from qa_core.evaluation import EvaluationReport, evaluate_program
from qa_core.heuristic import BestSentence
from qa_core.labels import LabelledTeacher
from qa_core.lm import build_lm
from qa_core.metrics import combined_metric
from qa_core.program import build_program
from qa_core.settings import CoreSettings

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "docs" / "results" / "finetune.md"


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


def row(label: str, split: str, report: EvaluationReport, train_s: float | None) -> str:
    s = report.scores
    train = f"{train_s:.0f} s" if train_s is not None else "-"
    return (
        f"| {label} | {split} | {s['combined']:.3f} | {s['f1']:.3f} | {s['exact_match']:.3f} | {s['citation']:.3f} "
        f"| {report.parse_failures} | {report.ungrounded} | {report.lm_calls} | {train} | {report.wall_time_s:.0f} s |"
    )


def main() -> None:
    defaults = TrainBudget()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--rank", type=int, default=defaults.rank)
    parser.add_argument("--examples", type=int, default=defaults.max_examples)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    settings = CoreSettings()
    assert settings.gguf_path is not None, "no GGUF model installed"
    work = Path(tempfile.mkdtemp(prefix="finetune-"))
    budget = TrainBudget(
        epochs=args.epochs, rank=args.rank, max_examples=args.examples, learning_rate=args.learning_rate
    )
    steps: list[float] = []

    def report(stage: str, detail: dict) -> None:
        if stage == "training":
            steps.append(detail["loss"])
        print(stage, detail, flush=True)

    provider = LoRAProvider(settings.gguf_path, work / "adapters", work, "bench", budget, report)
    index = cached_index(settings.corpus_dir, settings.chunk_words)
    train = load_split(settings.dataset_dir, "train", args.examples)
    student = build_program(settings)
    lm = build_lm(settings)
    lm.provider = provider
    student.set_lm(lm)
    optimizer = dspy.BootstrapFinetune(metric=combined_metric, adapter=JSONAdapter(), exclude_demos=True, num_threads=1)
    started = time.perf_counter()
    with dspy.context(adapter=JSONAdapter()):
        tuned = optimizer.compile(student, trainset=train, teacher=LabelledTeacher(index, train))
    train_s = time.perf_counter() - started

    lines = []
    with lm_server(work / "adapters", args.port) as base:
        served = settings.model_copy(update={"lm_api_base": base})
        tuned_settings = served.model_copy(update={"lm_model": tuned.answer.lm.model})
        tuned.answer.lm = None  # evaluate_program sets the tuned model as the context LM
        for split in ("dev", "test"):
            devset = load_split(settings.dataset_dir, split)
            lines.append(
                row(
                    "reference: copy the best sentence (no LM)", split, _eval(BestSentence(index), devset, served), None
                )
            )
            lines.append(
                row("prompt only: shipped baseline, 2 demos", split, _eval(build_program(served), devset, served), None)
            )
            lines.append(row("BootstrapFinetune: LoRA, no demos", split, _eval(tuned, devset, tuned_settings), train_s))
    header = (
        "| program | split | combined | token F1 | exact match | citation | parse failures | ungrounded | LM calls "
        "| train time | eval time |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    losses = ", ".join(f"{loss:.3f}" for loss in steps)
    text = (
        f"Measured {time.strftime('%Y-%m-%d')} on the 2-core reference machine, SmolLM2-135M-Instruct (Q4_1), "
        f"`qa-eval --threads 1` on the full splits. LoRA budget: {budget.epochs} epochs, rank {budget.rank}, "
        f"{len(train)} labelled train examples, learning rate {budget.learning_rate:g}, "
        f"{budget.accumulation} conversations per step.\n\n{header}\n"
        + "\n".join(lines)
        + f"\n\nLoss per step: {losses}.\n\n"
        "Reproduce: `.venv/bin/python services/optimizer-worker/bench/finetune.py`.\n"
    )
    args.out.write_text(text)
    print(text)


def _eval(program: dspy.Module, devset: list[dspy.Example], settings: CoreSettings) -> EvaluationReport:
    return evaluate_program(program, devset, settings, 1, "bench")


if __name__ == "__main__":
    main()
