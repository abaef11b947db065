"""Build the shipped baseline program: the plain program plus a few hand-labelled demos.

A 135M-parameter model follows the output format far better after seeing it done. The demos come
from the train split, with the passages the retriever really returns, the gold answer, and the id of
the passage that holds it: what BootstrapFewShot would produce from a perfect teacher.
"""

from __future__ import annotations

import dspy

from qa_core.dataset import load_split
from qa_core.program import GroundedQA, prompt_order
from qa_core.settings import CoreSettings


# --8<-- [start:labelled-demos]
def labelled_demos(program: GroundedQA, trainset: list[dspy.Example], count: int) -> list[dspy.Example]:
    """Demos for the answer predictor: train questions whose gold answer sits in a retrieved passage."""
    demos: list[dspy.Example] = []
    for example in trainset:
        if len(demos) >= count:
            break
        passages = program.retrieve(example.question)
        holding = [p for p in passages if example.answer.lower() in p.text.lower()]
        if not holding:
            continue
        demos.append(
            dspy.Example(
                passages=[p.as_prompt_line() for p in prompt_order(passages)],
                question=example.question,
                answer=example.answer,
                citations=[holding[0].id],
            )
        )
    return demos


# --8<-- [end:labelled-demos]


def build_baseline(settings: CoreSettings, demo_count: int) -> GroundedQA:
    from qa_core.corpus import cached_index

    program = GroundedQA(cached_index(settings.corpus_dir, settings.chunk_words), settings.retriever_k)
    program.answer.demos = labelled_demos(program, load_split(settings.dataset_dir, "train"), demo_count)
    return program
