"""Metrics: answer correctness, citation correctness, and the scores optimizers maximize."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

import dspy

# --8<-- [start:answer-metrics]
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalization: lower case, no punctuation, no articles, single spaces."""
    text = str(text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    overlap = sum((Counter(predicted) & Counter(expected)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


# --8<-- [end:answer-metrics]


# --8<-- [start:citation-metric]
def citation_correct(citations: list[str], gold_doc_id: str) -> float:
    """1.0 when at least one cited passage belongs to the document that supports the gold answer."""
    return float(any(str(c).split("#", 1)[0] == gold_doc_id for c in citations or []))


# --8<-- [end:citation-metric]


# --8<-- [start:combined]
ANSWER_WEIGHT, CITATION_WEIGHT = 0.6, 0.4
# Bootstrapping keeps a demo only if it scores at least this much (e.g. right answer, right citation).
DEMO_THRESHOLD = 0.6


def score_breakdown(example: dspy.Example, pred: Any) -> dict[str, float]:
    answer = getattr(pred, "answer", "") or ""
    citations = getattr(pred, "citations", []) or []
    f1 = token_f1(answer, example.answer)
    cited = citation_correct(citations, example.doc_id)
    return {
        "f1": f1,
        "exact_match": exact_match(answer, example.answer),
        "citation": cited,
        "combined": ANSWER_WEIGHT * f1 + CITATION_WEIGHT * cited,
    }


def combined_metric(example: dspy.Example, pred: Any, trace: Any = None) -> float | bool:
    """The score optimizers maximize. During bootstrapping (`trace` set) it answers: keep this demo?"""
    score = score_breakdown(example, pred)["combined"]
    return score >= DEMO_THRESHOLD if trace is not None else score


# --8<-- [end:combined]


# --8<-- [start:feedback-metric]
def feedback_metric(
    gold: dspy.Example, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
) -> dspy.Prediction:
    """The combined score plus a sentence saying what went wrong, for GEPA's reflection LM."""
    parts = score_breakdown(gold, pred)
    answer = getattr(pred, "answer", "") or ""
    citations = getattr(pred, "citations", []) or []
    notes = []
    if parts["exact_match"] == 1.0:
        notes.append("The answer is exactly right.")
    elif parts["f1"] > 0:
        notes.append(f"The answer {answer!r} partly matches the expected {gold.answer!r} (F1 {parts['f1']:.2f}).")
    else:
        notes.append(f"The answer {answer!r} is wrong; the expected answer is {gold.answer!r}.")
    if parts["citation"] == 1.0:
        notes.append("It cites the right document.")
    elif citations:
        notes.append(f"It cites {citations}, but the answer is in document {gold.doc_id!r}.")
    else:
        notes.append(f"It cites nothing; it should cite a passage of document {gold.doc_id!r}.")
    return dspy.Prediction(score=parts["combined"], feedback=" ".join(notes))


# --8<-- [end:feedback-metric]
