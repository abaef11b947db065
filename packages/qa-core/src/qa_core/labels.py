"""Labelled data from the train split (and human corrections): what a perfect reader would answer.

Bootstrapping keeps only the traces where the model itself scored well; with a 135M-parameter model
there are few. Labels fill the gap: demos for prompt optimizers, and traces for fine-tuning. They
come from the passages the retriever really returns, in the order the program shows them, so a
labelled call looks exactly like a served one.
"""

from __future__ import annotations

from typing import Any

import dspy

from qa_core.corpus import CorpusIndex, Passage
from qa_core.decoding import SPAN_MAX_WORDS
from qa_core.metrics import normalize_answer
from qa_core.program import GroundedQA, prompt_order


# --8<-- [start:labelled-demos]
def labelled_output(example: dspy.Example, passages: list[Passage]) -> dict[str, Any] | None:
    """What a perfect reader answers from `passages`: the passage that holds the gold answer, and the answer.

    Passages of the example's supporting document (`doc_id`) are preferred, then retrieval order.

    The answer is widened to whole words of that passage, because the grammar only lets a model write
    whole words (`loadtests/results/` is written as `` `loadtests/results/`. ``); the metric strips the
    punctuation again. None when no retrieved passage holds the answer.
    """
    gold = str(example.answer)
    # A passage of the supporting document first: the same words can appear in another document too.
    supporting = example.get("doc_id")
    for passage in sorted(passages, key=lambda p: p.doc_id != supporting):
        start = passage.text.lower().find(gold.lower())
        if start < 0:
            continue
        text = passage.text
        begin = text.rfind(" ", 0, start) + 1
        end = text.find(" ", start + len(gold))
        span = text[begin : end if end >= 0 else len(text)]
        # Keep the gold words when widening would change them (`SQuAD` inside `SQuAD-style`).
        writable = len(span.split()) <= SPAN_MAX_WORDS and normalize_answer(span) == normalize_answer(gold)
        return {"citations": [passage.id], "answer": span if writable else gold}
    return None


def labelled_demos(program: GroundedQA, trainset: list[dspy.Example], count: int) -> list[dspy.Example]:
    """Demos for the answer predictor: train questions whose gold answer sits in a retrieved passage."""
    demos: list[dspy.Example] = []
    for example in trainset:
        if len(demos) >= count:
            break
        passages = program.retrieve(example.question)
        label = labelled_output(example, passages)
        if label is None:
            continue
        shown = [p.as_prompt_line() for p in prompt_order(passages)]
        # Demos keep the gold words: widened to whole words they scored 0.425 on dev against 0.432.
        demo = {**label, "answer": example.answer}
        demos.append(dspy.Example(passages=shown, question=example.question, **demo))
    return demos


# --8<-- [end:labelled-demos]


# --8<-- [start:labelled-teacher]
class LabelledTeacher(GroundedQA):
    """The program, answering known questions with their labels instead of an LM.

    It is the teacher `dspy.BootstrapFinetune` (and BetterTogether's weight step) bootstraps traces
    from: each trace holds the answer predictor's real inputs and the labelled output, so the training
    data is formatted by the same adapter, from the same inputs, as a served call.
    """

    def __init__(self, index: CorpusIndex, examples: list[dspy.Example], k: int = 3) -> None:
        super().__init__(index, k=k, attempts=1)
        self.examples = {str(example.question): example for example in examples}

    def forward(self, question: str) -> dspy.Prediction:
        passages = self.retrieve(question)
        example = self.examples.get(question)
        label = labelled_output(example, passages) if example is not None else None
        if label is None:  # no retrieved passage holds the answer: nothing to learn from this question
            return self._result(dspy.Prediction(answer="", citations=[]), passages)
        inputs = {key: value for key, value in self._inputs(question, passages).items() if key != "signature"}
        prediction = dspy.Prediction(**label)
        if dspy.settings.trace is not None:
            dspy.settings.trace.append((self.answer, inputs, prediction))
        return self._result(prediction, passages)


# --8<-- [end:labelled-teacher]
