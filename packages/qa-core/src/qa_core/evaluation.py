"""Evaluate a program on a split: `qa-eval --split dev [--program FILE] [--limit N] [--threads N]`."""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import AdapterParseError

from qa_core.corpus import cached_index
from qa_core.dataset import SPLITS, load_split
from qa_core.heuristic import BestSentence
from qa_core.lm import build_adapter, build_lm
from qa_core.metrics import combined_metric, score_breakdown
from qa_core.program import build_program
from qa_core.settings import CoreSettings


class LMCallCounter(BaseCallback):
    """Counts LM calls and tokens across threads, so a report can say what an evaluation cost."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            self.calls += 1


class ErrorRecorder(dspy.Module):
    """Wraps a program to remember why an example failed; `dspy.Evaluate` only keeps the score."""

    def __init__(self, program: dspy.Module) -> None:
        super().__init__()
        self.program = program
        self.errors: dict[str, str] = {}

    def forward(self, question: str) -> dspy.Prediction:
        try:
            return self.program(question=question)
        except Exception as exc:
            self.errors[question] = type(exc).__name__
            raise


@dataclass
class EvaluationReport:
    split: str
    examples: int
    program: str
    lm_model: str
    structured_output: bool
    grounding_attempts: int
    scores: dict[str, float]
    parse_failures: int
    parse_failure_rate: float
    other_errors: int
    ungrounded: int
    lm_calls: int
    wall_time_s: float
    per_example: list[dict[str, Any]] = field(default_factory=list)


# --8<-- [start:evaluate]
def evaluate_program(
    program: dspy.Module,
    devset: list[dspy.Example],
    settings: CoreSettings,
    threads: int,
    program_label: str,
    callbacks: list[BaseCallback] | None = None,
) -> EvaluationReport:
    """Run `dspy.Evaluate` with the combined metric, then break the score down per metric.

    `callbacks` run next to the process's own (MLflow's autolog callback, when on) and the call counter
    (the optimizer-worker passes its progress reporter).
    """
    counter = LMCallCounter()
    recorder = ErrorRecorder(program)
    lm = build_lm(settings)
    started = time.perf_counter()
    everyone = [*dspy.settings.callbacks, counter, *(callbacks or [])]
    with dspy.context(lm=lm, adapter=build_adapter(settings), callbacks=everyone):
        result = dspy.Evaluate(
            devset=devset,
            metric=combined_metric,
            num_threads=threads,
            display_progress=True,
            max_errors=len(devset) + 1,  # a parse failure is a data point here, not a reason to stop
            provide_traceback=False,
        )(recorder)
    wall = time.perf_counter() - started

    per_example, totals = [], {"combined": 0.0, "f1": 0.0, "exact_match": 0.0, "citation": 0.0}
    for example, pred, _score in result.results:
        parts = score_breakdown(example, pred)
        for name in totals:
            totals[name] += parts[name]
        per_example.append(
            {
                "id": example.id,
                "question": example.question,
                "gold": example.answer,
                "answer": getattr(pred, "answer", None),
                "citations": getattr(pred, "citations", None),
                "grounded": getattr(pred, "grounded", None),
                "error": recorder.errors.get(example.question),
                **parts,
            }
        )
    n = len(devset)
    errors = list(recorder.errors.values())
    parse_failures = errors.count(AdapterParseError.__name__)
    return EvaluationReport(
        split="",
        examples=n,
        program=program_label,
        lm_model=settings.lm_model,
        structured_output=settings.lm_structured_output,
        grounding_attempts=settings.grounding_attempts,
        scores={name: round(total / n, 4) for name, total in totals.items()},
        parse_failures=parse_failures,
        parse_failure_rate=round(parse_failures / n, 4),
        other_errors=len(errors) - parse_failures,
        ungrounded=sum(1 for row in per_example if row["grounded"] is False),
        lm_calls=counter.calls,
        wall_time_s=round(wall, 2),
        per_example=per_example,
    )


# --8<-- [end:evaluate]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="qa-eval", description=__doc__)
    parser.add_argument("--split", choices=SPLITS, default="dev")
    parser.add_argument("--program", type=Path, help="Program state JSON (default: the shipped baseline).")
    parser.add_argument(
        "--heuristic", action="store_true", help="Score the copy-the-best-sentence reference (no LM) instead."
    )
    parser.add_argument("--limit", type=int, help="Evaluate only the first N examples.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", type=Path, help="Where to write the JSON report.")
    parser.add_argument(
        "--no-structured-output", action="store_true", help="Free-form text (ChatAdapter) instead of JSON schema."
    )
    parser.add_argument("--attempts", type=int, help="Override GROUNDING_ATTEMPTS (1 = one LM call per question).")
    args = parser.parse_args(argv)

    overrides: dict[str, Any] = {}
    if args.no_structured_output:
        overrides["lm_structured_output"] = False
    if args.attempts:
        overrides["grounding_attempts"] = args.attempts
    settings = CoreSettings(**overrides)
    program_path = args.program or settings.baseline_program_path
    program: dspy.Module
    if args.heuristic:
        program, program_path = BestSentence(cached_index(settings.corpus_dir, settings.chunk_words)), Path("heuristic")
    else:
        program = build_program(settings, program_path)
    devset = load_split(settings.dataset_dir, args.split, args.limit)

    report = evaluate_program(program, devset, settings, args.threads, str(program_path))
    report.split = args.split
    path = args.report or Path("reports") / f"eval-{args.split}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(report), indent=2))

    print(f"\n{args.split}: {report.examples} examples, program {program_path.name}, LM {settings.lm_model}")
    for name, value in report.scores.items():
        print(f"  {name:<12} {value:.3f}")
    print(
        f"  parse failures {report.parse_failures} ({report.parse_failure_rate:.1%}), other errors "
        f"{report.other_errors}, ungrounded {report.ungrounded}"
    )
    print(f"  LM calls {report.lm_calls}, wall time {report.wall_time_s:.1f} s")
    print(f"report: {path}")


if __name__ == "__main__":
    main()
