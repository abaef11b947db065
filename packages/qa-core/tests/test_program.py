from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dspy
import pytest
from dspy.utils import DummyLM

from qa_core.baseline import build_baseline
from qa_core.corpus import CorpusIndex
from qa_core.program import (
    GroundedQA,
    as_grounded_answer,
    grounding_reward,
    load_program,
    normalize_citations,
)
from qa_core.settings import CoreSettings

# No silent JSON fallback: a parse failure must be visible to the retry logic, as in production.
CHAT = dspy.ChatAdapter(use_json_adapter_fallback=False)
QUESTION = "Which port does the MLflow tracking server listen on?"


@pytest.fixture(autouse=True)
def lm_history() -> Iterator[None]:
    # These tests count LM calls through the DummyLM's history; qa-api's module (imported when its tests are
    # collected in the same run) turns history off for the process, as a server should.
    with dspy.context(disable_history=False):
        yield


def answers(*outputs: dict) -> DummyLM:
    return DummyLM(list(outputs))


@pytest.fixture
def program(index: CorpusIndex) -> GroundedQA:
    return GroundedQA(index, k=3, attempts=2)


def test_forward_retrieves_then_answers_with_citations(program: GroundedQA) -> None:
    lm = answers({"answer": "port 5000", "citations": ["mlflow-tracking#0"]})
    with dspy.context(lm=lm, adapter=CHAT):
        result = program(question=QUESTION)
    assert result.answer == "port 5000"
    assert result.citations == ["mlflow-tracking#0"]
    assert result.grounded is True
    assert result.passages[0].id == "mlflow-tracking#0"
    assert as_grounded_answer(result).citations == ["mlflow-tracking#0"]
    assert len(lm.history) == 1


async def test_aforward_gives_the_same_result_under_acall(program: GroundedQA) -> None:
    lm = answers({"answer": "port 5000", "citations": ["mlflow-tracking#0"]})
    with dspy.context(lm=lm, adapter=CHAT):
        result = await program.acall(question=QUESTION)
    assert (result.answer, result.citations, result.grounded) == ("port 5000", ["mlflow-tracking#0"], True)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_answer_citing_an_unknown_passage_is_rejected_and_retried(program: GroundedQA, mode: str) -> None:
    lm = answers(
        {"answer": "5000", "citations": ["made-up#9"]},
        {"answer": "port 5000", "citations": ["mlflow-tracking#0"]},
    )
    with dspy.context(lm=lm, adapter=CHAT):
        result = program(question=QUESTION) if mode == "sync" else await program.acall(question=QUESTION)
    assert result.answer == "port 5000"
    assert result.citations == ["mlflow-tracking#0"]
    assert result.grounded is True


def test_a_malformed_citation_is_a_parse_failure_that_is_retried(program: GroundedQA) -> None:
    lm = answers(
        {"answer": "5000", "citations": ["see [mlflow-tracking#0]"]},
        {"answer": "port 5000", "citations": ["mlflow-tracking#0"]},
    )
    with dspy.context(lm=lm, adapter=CHAT):
        result = program(question=QUESTION)
    assert (result.answer, result.grounded) == ("port 5000", True)


def test_when_every_attempt_fails_the_check_no_unknown_citation_is_returned(program: GroundedQA) -> None:
    lm = answers(
        {"answer": "5000", "citations": ["made-up#9"]},
        {"answer": "5000", "citations": ["also-made-up#1", "mlflow-tracking#99"]},
    )
    with dspy.context(lm=lm, adapter=CHAT):
        result = program(question=QUESTION)
    assert result.grounded is False
    assert result.citations == []


def test_a_retry_samples_with_a_new_rollout_at_temperature_one(program: GroundedQA) -> None:
    lm = answers({"answer": "x", "citations": []}, {"answer": "port 5000", "citations": ["mlflow-tracking#0"]})
    with dspy.context(lm=lm, adapter=CHAT):
        program(question=QUESTION)
    assert lm.history[0]["kwargs"].get("rollout_id") is None
    assert lm.kwargs["temperature"] == 0.0


def test_grounding_reward() -> None:
    inputs = {"passages": ["[a#0] text", "[b#1] more"]}
    assert grounding_reward(inputs, dspy.Prediction(answer="x", citations=["a#0"])) == 1.0
    assert grounding_reward(inputs, dspy.Prediction(answer="x", citations=["a#0", "c#2"])) == 0.0
    assert grounding_reward(inputs, dspy.Prediction(answer="x", citations=[])) == 0.0
    assert grounding_reward(inputs, dspy.Prediction(answer=" ", citations=["a#0"])) == 0.0


def test_citations_are_normalized() -> None:
    assert normalize_citations([" [a#0] ", "a#0", "", "b#1"]) == ["a#0", "b#1"]
    assert normalize_citations("a#0") == ["a#0"]
    assert normalize_citations(None) == []


def test_optimizers_can_attribute_traces_to_the_answer_predictor(program: GroundedQA) -> None:
    lm = answers({"answer": "port 5000", "citations": ["mlflow-tracking#0"]})
    with dspy.context(lm=lm, adapter=CHAT, trace=[]):
        program(question=QUESTION)
        trace = dspy.settings.trace
    assert [step[0] for step in trace] == [program.answer]
    assert [name for name, _ in program.named_predictors()] == ["answer"]


def test_state_round_trips_through_json_into_a_fresh_instance(tmp_path: Path, index: CorpusIndex) -> None:
    settings = CoreSettings(_env_file=None)
    original = build_baseline(settings, demo_count=2)
    original.answer.signature = original.answer.signature.with_instructions("Answer tersely.")
    path = tmp_path / "program.json"
    original.save(str(path))
    state = json.loads(path.read_text())
    assert set(state) >= {"answer", "metadata"}

    before = dspy.settings.lm
    loaded = load_program(path, index)
    assert dspy.settings.lm is before  # loading never touches global settings
    assert loaded.answer.signature.instructions == "Answer tersely."
    assert [d["answer"] for d in loaded.answer.demos] == [d["answer"] for d in original.answer.demos]
    assert loaded.dump_state() == original.dump_state()


def test_the_shipped_baseline_loads_and_has_demos(settings: CoreSettings, index: CorpusIndex) -> None:
    program = load_program(settings.baseline_program_path, index)
    assert 1 <= len(program.answer.demos) <= 4
    for demo in program.answer.demos:
        assert demo["citations"]
        assert demo["answer"].lower() in " ".join(demo["passages"]).lower()
