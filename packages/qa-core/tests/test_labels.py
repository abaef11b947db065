from __future__ import annotations

import json
import re

import dspy

from qa_core.adapters import JSONAdapter
from qa_core.corpus import CorpusIndex, Passage
from qa_core.dataset import load_split
from qa_core.decoding import constrained_signature, span_pattern
from qa_core.labels import LabelledTeacher, labelled_output
from qa_core.metrics import score_breakdown
from qa_core.program import GroundedQA, prompt_order
from qa_core.settings import CoreSettings

PASSAGE = Passage(
    id="load#0", doc_id="load", title="Load", section="", text="CSV reports go under `loadtests/results/`."
)


def test_a_label_is_widened_to_whole_words_the_grammar_can_write() -> None:
    label = labelled_output(dspy.Example(answer="loadtests/results/"), [PASSAGE])
    assert label == {"citations": ["load#0"], "answer": "`loadtests/results/`."}
    assert re.fullmatch(span_pattern((PASSAGE,)), label["answer"])
    assert labelled_output(dspy.Example(answer="not there"), [PASSAGE]) is None


def test_labels_of_the_train_split_score_full_marks(settings: CoreSettings, index: CorpusIndex) -> None:
    program = GroundedQA(index)
    train = load_split(settings.dataset_dir, "train")
    labelled = 0
    for example in train:
        passages = program.retrieve(example.question)
        label = labelled_output(example, passages)
        if label is None:
            continue
        labelled += 1
        assert score_breakdown(example, dspy.Prediction(**label))["combined"] == 1.0
        # Every label is one the served grammar lets the model write.
        if label["answer"] != example.answer:  # widened: then it is one the served grammar lets the model write
            assert re.fullmatch(span_pattern(tuple(prompt_order(passages))), label["answer"]), label
    assert labelled >= 0.9 * len(train)


def test_the_teacher_records_the_inputs_a_served_call_sends(settings: CoreSettings, index: CorpusIndex) -> None:
    train = load_split(settings.dataset_dir, "train", limit=3)
    teacher = LabelledTeacher(index, train)
    with dspy.context(trace=[]):
        prediction = teacher(question=train[0].question)
        trace = list(dspy.settings.trace)
    assert score_breakdown(train[0], prediction)["combined"] == 1.0
    [(predictor, inputs, outputs)] = trace
    assert predictor is teacher.answer
    served = {k: v for k, v in teacher._inputs(train[0].question, teacher.retrieve(train[0].question)).items()}
    assert served.pop("signature") is constrained_signature(
        teacher.answer.signature, tuple(prompt_order(teacher.retrieve(train[0].question)))
    )
    assert inputs == served
    assert dict(outputs) == labelled_output(train[0], teacher.retrieve(train[0].question))


def test_an_unknown_question_gives_the_teacher_nothing_to_teach(index: CorpusIndex) -> None:
    teacher = LabelledTeacher(index, [])
    with dspy.context(trace=[]):
        prediction = teacher(question="What is not in the training set?")
        assert dspy.settings.trace == []
    assert prediction.answer == ""


def test_finetune_data_is_the_served_prompt_plus_one_line_of_json(index: CorpusIndex) -> None:
    program = GroundedQA(index)
    question = "Which SIMBA setting is the mini-batch size?"
    inputs = {k: v for k, v in program._inputs(question, program.retrieve(question)).items() if k != "signature"}
    outputs = {"answer": "`bsize`", "citations": ["optimizer-simba#3"]}
    adapter = JSONAdapter()
    data = adapter.format_finetune_data(program.answer.signature, [], inputs, outputs)
    *prompt, reply = data["messages"]
    assert prompt == adapter.format(program.answer.signature, [], inputs)
    assert reply == {"role": "assistant", "content": '{"citations": ["optimizer-simba#3"], "answer": "`bsize`"}'}
    assert adapter.parse(program.answer.signature, reply["content"]) == {
        "citations": ["optimizer-simba#3"],
        "answer": "`bsize`",
    }
    assert "\n" not in json.dumps(json.loads(reply["content"]))
