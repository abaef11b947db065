"""Human feedback in MLflow becomes training data: exactly the expected examples, and never a held-out question."""

from __future__ import annotations

import mlflow
import pytest

from optimizer_worker import optimizers, trainset
from optimizer_worker.errors import DatasetUnavailable
from qa_core import registry
from qa_core.dataset import load_split, normalized_question
from qa_core.program import build_program


def test_feedback_becomes_exactly_the_expected_examples(deployment, qa_trace) -> None:
    settings = deployment.settings
    registry.configure_mlflow(settings)
    experiment = settings.mlflow_experiment_name
    dev_q = load_split(settings.dataset_dir, "dev")[0].question
    test_q = load_split(settings.dataset_dir, "test")[0].question
    train = load_split(settings.dataset_dir, "train")
    new_q = "Which library turns a DSPy compile into an MLflow run?"
    cite = ["mlflow-tracking#0"]

    qa_trace(experiment, new_q, "first answer", cite, ratings=[True])
    qa_trace(experiment, new_q.upper() + "!!", "mlflow autolog", cite, ratings=[True, True])  # same question, newer
    qa_trace(experiment, "What does SIMBA's bsize set?", "no idea", cite, ratings=[True, False])  # disputed
    qa_trace(experiment, "How many demos does the baseline carry?", "three", cite, ratings=[False], correction="two")
    qa_trace(experiment, dev_q, "leaked", cite, ratings=[True])  # held out: dev
    qa_trace(experiment, f"  {test_q.lower()} ", "leaked", cite, correction="leaked")  # held out: test
    qa_trace(experiment, "What is a load test question?", "synthetic", cite, ratings=[True], synthetic=True)
    qa_trace(experiment, "Was this ever rated?", "no", cite)
    qa_trace(experiment, train[0].question, "wrong gold", cite, correction="the mini-batch size")

    items, seen = trainset.read_feedback(experiment, max_traces=100)
    assert seen == {"rated_good": 3, "corrected": 3, "rated_bad": 1, "synthetic": 1, "unrated": 1}
    program = build_program(settings)
    data = trainset.build_trainset(program, settings.dataset_dir, items)

    from_feedback = {(ex.question, ex.answer, ex.source) for ex in data.examples if ex.source != "train"}
    assert from_feedback == {
        (new_q.upper() + "!!", "mlflow autolog", "rated_good"),  # the newest of the two ratings of one question
        ("How many demos does the baseline carry?", "two", "corrected"),
        (train[0].question, "the mini-batch size", "corrected"),  # a correction beats the shipped gold answer
    }
    assert data.counts == {
        "corrected": 2,
        "rated_good": 1,
        "train": len(train) - 1,
        "held_out_dropped": 2,
        "duplicates_dropped": 2,
        "limited_away": 0,
        "total": len(train) + 2,
    }
    held_out = trainset.held_out_questions(settings.dataset_dir)
    assert not any(normalized_question(ex.question) in held_out for ex in data.examples)
    # Feedback comes first, so a train_limit keeps the human signal.
    limited = trainset.build_trainset(program, settings.dataset_dir, items, train_limit=3)
    assert [ex.source for ex in limited.examples] == ["corrected", "corrected", "rated_good"]


def test_examples_become_full_demos_and_the_hash_depends_only_on_content(deployment) -> None:
    settings = deployment.settings
    program = build_program(settings)
    data = trainset.build_trainset(program, settings.dataset_dir, [], train_limit=5)
    same = trainset.build_trainset(program, settings.dataset_dir, [], train_limit=5)
    other = trainset.build_trainset(program, settings.dataset_dir, [], train_limit=4)
    assert data.dataset_hash == same.dataset_hash != other.dataset_hash
    assert trainset.dataset_hash(list(reversed(data.rows))) == data.dataset_hash
    supported = [ex for ex in data.examples if "citations" in ex]
    assert supported, "at least one train answer should sit in a retrieved passage"
    for example in supported:
        assert set(example.inputs().keys()) == {"question"}
        assert example.citations[0].split("#")[0] in {
            p.split("]")[0].strip("[").split("#")[0] for p in example.passages
        }


def test_no_trace_experiment_means_no_feedback(deployment) -> None:
    registry.configure_mlflow(deployment.settings)
    assert mlflow.get_experiment_by_name(deployment.settings.mlflow_experiment_name) is None
    assert trainset.read_feedback(deployment.settings.mlflow_experiment_name, 10) == ([], {})


def test_an_empty_or_fully_held_out_train_split_is_a_dataset_error(deployment, tmp_path) -> None:
    settings = deployment.settings
    dev = [{"id": "d1", "question": "What is held out here?", "answer": "dev", "doc_id": "x"}]
    folder = deployment.write_dataset(tmp_path / "qa", train=dev, dev=dev, test=dev)
    program = build_program(settings)
    data = trainset.build_trainset(program, folder, [])
    assert data.examples == []
    assert data.counts["held_out_dropped"] == 1
    with pytest.raises(DatasetUnavailable, match="needs at least 2 training examples; the job has 0"):
        optimizers.plan(settings, "bootstrap_fewshot", 2, data.examples, program)
    empty = deployment.write_dataset(tmp_path / "empty", train=[], dev=dev, test=dev)
    with pytest.raises(DatasetUnavailable, match="no QA pairs"):
        trainset.build_trainset(program, empty, [])


def test_an_answer_outside_the_retrieved_passages_takes_its_document_from_the_citation(deployment, qa_trace) -> None:
    """qa-api logs citations as objects; the passage id in them names the supporting document."""
    settings = deployment.settings
    registry.configure_mlflow(settings)
    qa_trace(settings.mlflow_experiment_name, "Which step comes last in a job?", "zyxwv", ["optimizer-simba#0"],
             ratings=[True])  # fmt: skip
    items, seen = trainset.read_feedback(settings.mlflow_experiment_name, max_traces=10)
    assert seen == {"rated_good": 1}
    assert items[0].citations == ("optimizer-simba#0",)
    data = trainset.build_trainset(build_program(settings), settings.dataset_dir, items)
    [example] = [ex for ex in data.examples if ex.source == "rated_good"]
    assert example.doc_id == "optimizer-simba"
