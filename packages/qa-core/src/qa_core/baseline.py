"""Build the shipped baseline program: the plain program plus a few labelled demos (`qa_core.labels`).

A 135M-parameter model follows the output format far better after seeing it done.
"""

from __future__ import annotations

from qa_core.dataset import load_split
from qa_core.labels import labelled_demos
from qa_core.program import GroundedQA
from qa_core.settings import CoreSettings


def build_baseline(settings: CoreSettings, demo_count: int) -> GroundedQA:
    from qa_core.corpus import cached_index

    program = GroundedQA(cached_index(settings.corpus_dir, settings.chunk_words), settings.retriever_k)
    program.answer.demos = labelled_demos(program, load_split(settings.dataset_dir, "train"), demo_count)
    return program
