from __future__ import annotations

import dspy
import pytest

from qa_core.metrics import (
    citation_correct,
    combined_metric,
    exact_match,
    feedback_metric,
    normalize_answer,
    score_breakdown,
    token_f1,
)

GOLD = dspy.Example(question="Which port?", answer="port 5000", doc_id="mlflow-tracking").with_inputs("question")


def test_normalization_drops_case_punctuation_and_articles() -> None:
    assert normalize_answer("  The Port: 5000! ") == "port 5000"


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("port 5000", "port 5000", 1.0),
        ("5000", "port 5000", 2 * (1.0 * 0.5) / 1.5),
        ("it is port 5000", "port 5000", 2 * (2 / 4 * 1.0) / (2 / 4 + 1.0)),
        ("8080", "port 5000", 0.0),
        ("", "port 5000", 0.0),
    ],
)
def test_token_f1(prediction: str, gold: str, expected: float) -> None:
    assert token_f1(prediction, gold) == pytest.approx(expected)


def test_exact_match_after_normalization() -> None:
    assert exact_match("The port 5000.", "port 5000") == 1.0
    assert exact_match("5000", "port 5000") == 0.0


def test_a_citation_is_correct_when_any_cited_passage_belongs_to_the_gold_document() -> None:
    assert citation_correct(["docker-compose#1", "mlflow-tracking#3"], "mlflow-tracking") == 1.0
    assert citation_correct(["mlflow-tracking-extra#0"], "mlflow-tracking") == 0.0
    assert citation_correct([], "mlflow-tracking") == 0.0


def test_combined_score_weights_answer_and_citation() -> None:
    right = dspy.Prediction(answer="port 5000", citations=["mlflow-tracking#0"])
    wrong_citation = dspy.Prediction(answer="port 5000", citations=["other#0"])
    assert combined_metric(GOLD, right) == pytest.approx(1.0)
    assert combined_metric(GOLD, wrong_citation) == pytest.approx(0.6)
    assert score_breakdown(GOLD, wrong_citation)["citation"] == 0.0


def test_during_bootstrapping_the_metric_decides_whether_to_keep_a_demo() -> None:
    good = dspy.Prediction(answer="port 5000", citations=["mlflow-tracking#0"])
    poor = dspy.Prediction(answer="8080", citations=["mlflow-tracking#0"])
    assert combined_metric(GOLD, good, trace=[]) is True
    assert combined_metric(GOLD, poor, trace=[]) is False


def test_a_failed_prediction_scores_zero() -> None:
    assert combined_metric(GOLD, dspy.Prediction()) == 0.0


def test_feedback_metric_says_what_went_wrong_for_gepa() -> None:
    result = feedback_metric(GOLD, dspy.Prediction(answer="8080", citations=["local-lm#2"]))
    assert result.score == 0.0
    assert "expected answer is 'port 5000'" in result.feedback
    assert "'mlflow-tracking'" in result.feedback
    perfect = feedback_metric(GOLD, dspy.Prediction(answer="port 5000", citations=["mlflow-tracking#1"]))
    assert perfect.score == pytest.approx(1.0)
    assert "exactly right" in perfect.feedback
