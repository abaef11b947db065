"""The training set of a job: the shipped train split plus what people said about real answers.

- A trace rated good (every `user_rating` on it True) becomes a positive example: its answer is the label.
- A `corrected_answer` expectation becomes a labelled example with the human's answer.
- Synthetic traffic (load tests) is ignored, and no dev or test question may ever enter training.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import dspy
import mlflow
from mlflow.entities import Trace

from optimizer_worker.errors import DatasetUnavailable
from qa_core import contracts
from qa_core.dataset import DatasetError, load_split, normalized_question
from qa_core.labels import labelled_demos
from qa_core.program import GroundedQA

FeedbackKind = Literal["corrected", "rated_good"]
# Which source wins when one question arrives from several: a human correction is the newest label,
# the shipped split is curated, and a thumbs-up only confirms what a weak model wrote.
PRIORITY: dict[str, int] = {"corrected": 0, "train": 1, "rated_good": 2}
# The order of the training set: human feedback first, so a train_limit keeps the newest signal.
ORDER: dict[str, int] = {"corrected": 0, "rated_good": 1, "train": 2}


@dataclass(frozen=True)
class FeedbackItem:
    """One trace's human verdict, reduced to a question and the answer to learn from."""

    trace_id: str
    question: str
    answer: str
    citations: tuple[str, ...]
    kind: FeedbackKind
    at_ms: int


@dataclass
class TrainingData:
    examples: list[dspy.Example]
    counts: dict[str, int]
    dataset_hash: str
    rows: list[dict[str, Any]] = field(default_factory=list)


# --8<-- [start:read-feedback]
def feedback_from_trace(trace: Trace) -> tuple[FeedbackItem | None, str]:
    """The verdict on one trace, or None and why it was skipped."""
    if trace.info.tags.get(contracts.TRACE_TAG_SYNTHETIC, "").lower() == "true":
        return None, "synthetic"
    valid = [a for a in trace.info.assessments or [] if a.valid is not False]
    corrections = [a for a in valid if a.name == contracts.ASSESSMENT_CORRECTED_ANSWER]
    ratings = [a for a in valid if a.name == contracts.ASSESSMENT_USER_RATING]
    if not corrections and not ratings:
        return None, "unrated"
    root = trace.data.spans[0] if trace.data and trace.data.spans else None
    inputs = (root.inputs if root else None) or {}
    outputs = (root.outputs if root else None) or {}
    question = str(inputs.get("question") or "").strip()
    if not question:
        return None, "no_question"
    # qa-api logs citations as objects ({"id": "doc#2", "doc_id": ...}); keep their passage ids.
    citations = tuple(str(c.get("id", "") if isinstance(c, dict) else c) for c in outputs.get("citations") or [] if c)
    if corrections:
        latest = max(corrections, key=lambda a: a.create_time_ms or 0)
        answer = str(latest.value or "").strip()
        kind: FeedbackKind = "corrected"
        at_ms = latest.create_time_ms or 0
    elif all(a.value is True for a in ratings):
        answer = str(outputs.get("answer") or "").strip()
        kind = "rated_good"
        at_ms = max(a.create_time_ms or 0 for a in ratings)
    else:
        return None, "rated_bad"
    if not answer:
        return None, "empty_answer"
    return FeedbackItem(trace.info.trace_id, question, answer, citations, kind, at_ms), kind


def read_feedback(experiment_name: str, max_traces: int) -> tuple[list[FeedbackItem], Counter[str]]:
    """Human feedback on qa-api's traces, newest first; the counter says what was skipped and why."""
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is None:
        return [], Counter()
    traces = mlflow.search_traces(
        locations=[experiment.experiment_id],
        max_results=max_traces,
        order_by=["timestamp_ms DESC"],
        return_type="list",
    )
    items, seen = [], Counter()
    for trace in traces:
        item, outcome = feedback_from_trace(trace)
        seen[outcome] += 1
        if item is not None:
            items.append(item)
    return items, seen


# --8<-- [end:read-feedback]


# --8<-- [start:build]
def held_out_questions(settings_dataset_dir: Any) -> set[str]:
    """Every dev and test question, normalized: the keys that must never appear in training."""
    return {
        normalized_question(ex.question) for split in ("dev", "test") for ex in load_split(settings_dataset_dir, split)
    }


def build_trainset(
    program: GroundedQA,
    dataset_dir: Any,
    feedback: list[FeedbackItem],
    train_limit: int | None = None,
    include_train: bool = True,
) -> TrainingData:
    """Merge, dedupe and filter; every example gets the passages and citation that make it a full demo."""
    try:
        held_out = held_out_questions(dataset_dir)
        shipped = load_split(dataset_dir, "train") if include_train else []
    except DatasetError as exc:
        raise DatasetUnavailable(str(exc)) from exc
    counts: Counter[str] = Counter()
    candidates: list[tuple[str, int, dspy.Example]] = []
    for item in feedback:
        doc_id = _supporting_doc(program, item)
        if doc_id is None:
            counts["unsupported"] += 1
            continue
        example = dspy.Example(
            id=f"trace:{item.trace_id}", question=item.question, answer=item.answer, doc_id=doc_id, source=item.kind
        )
        candidates.append((item.kind, -item.at_ms, example))
    candidates += [("train", 0, ex.copy(source="train")) for ex in shipped]

    chosen: dict[str, dspy.Example] = {}
    for source, _, example in sorted(candidates, key=lambda c: (PRIORITY[c[0]], c[1])):
        key = normalized_question(example.question)
        if key in held_out:
            counts["held_out_dropped"] += 1
        elif key in chosen:
            counts["duplicates_dropped"] += 1
        else:
            chosen[key] = example
            counts[source] += 1
    # Feedback first: with a train_limit, the newest human signal is what we keep.
    examples = sorted(chosen.values(), key=lambda ex: ORDER[ex.source])[:train_limit]
    counts["limited_away"] = len(chosen) - len(examples)
    examples = [_with_support(program, ex) for ex in examples]
    counts["total"] = len(examples)
    rows = [{k: ex[k] for k in ("id", "question", "answer", "doc_id", "source")} for ex in examples]
    return TrainingData(examples, dict(counts), dataset_hash(rows), rows)


def dataset_hash(rows: list[dict[str, Any]]) -> str:
    """sha256 of the examples' content, independent of order, so equal training sets hash equal."""
    lines = sorted(json.dumps([r["question"], r["answer"], r["doc_id"]], ensure_ascii=False) for r in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# --8<-- [end:build]


def _supporting_doc(program: GroundedQA, item: FeedbackItem) -> str | None:
    """The document that supports an answer: the retrieved passage that holds it, else the one the answer cited."""
    for passage in program.retrieve(item.question):
        if item.answer.lower() in passage.text.lower():
            return passage.doc_id
    for citation in item.citations:
        if "#" in citation:
            return citation.split("#", 1)[0]
    return None


def _with_support(program: GroundedQA, example: dspy.Example) -> dspy.Example:
    """Add the retrieved passages and the citation, so a labelled demo shows the whole task, not half of it."""
    demos = labelled_demos(program, [example], 1)
    extra = {"passages": demos[0].passages, "citations": demos[0].citations} if demos else {}
    return dspy.Example(**dict(example.items()), **extra).with_inputs("question")
