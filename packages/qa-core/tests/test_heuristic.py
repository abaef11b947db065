from __future__ import annotations

from qa_core.corpus import CorpusIndex, Passage
from qa_core.dataset import load_split
from qa_core.evaluation import evaluate_program
from qa_core.heuristic import BestSentence, best_sentence
from qa_core.settings import CoreSettings


def _passage(pid: str, text: str) -> Passage:
    return Passage(id=pid, doc_id=pid.split("#")[0], title="T", section="", text=text)


def test_the_best_sentence_comes_from_the_passage_sharing_most_question_words() -> None:
    passages = [
        _passage("a#0", "Bananas are yellow. The worker is slow."),
        _passage("b#1", "Nothing here. The worker retries failed jobs three times. Redis holds the queue."),
    ]
    answer, passage = best_sentence("How many times does the worker retry failed jobs?", passages)
    assert passage is passages[1]
    assert answer == "The worker retries failed jobs three times."
    assert best_sentence("anything", []) == ("", None)


def test_the_reference_row_needs_no_lm_and_cites_what_it_copied(settings: CoreSettings, index: CorpusIndex) -> None:
    devset = load_split(settings.dataset_dir, "dev", limit=10)
    report = evaluate_program(BestSentence(index), devset, settings, threads=1, program_label="heuristic")
    assert report.lm_calls == 0
    assert report.other_errors == 0
    for row in report.per_example:
        cited = index.by_id[row["citations"][0]]
        assert row["answer"] in cited.text
    assert report.scores["citation"] >= 0.8
