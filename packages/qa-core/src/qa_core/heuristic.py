"""The reference row of every quality table: copy the best sentence of the best passage, with no LM.

It retrieves like the QA program, picks the passage that shares most words with the question, and
answers with that passage's sentence that shares most words with the question. An LM earns its
place only by scoring above this.
"""

from __future__ import annotations

import re
import string

import dspy

from qa_core.corpus import CorpusIndex, Passage

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_TO_SPACE = str.maketrans({c: " " for c in string.punctuation})
_STOPWORD_TEXT = """a an and are as at be by can do does for from how i in is it its of on or that the this to was
what when where which who why will with you your"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# The simulator and this reference trim the same way, so their rows agree.
MAX_ANSWER_WORDS = 30


def _content_words(text: str) -> set[str]:
    return set(text.lower().translate(_TO_SPACE).split()) - _STOPWORDS


# --8<-- [start:best-sentence]
def best_sentence(question: str, passages: list[Passage]) -> tuple[str, Passage | None]:
    """The sentence with most question words, from the passage with most question words (ties: rank)."""
    if not passages:
        return "", None
    wanted = _content_words(question)
    passage = max(passages, key=lambda p: len(wanted & _content_words(p.text)))
    sentences = [s.strip() for s in _SENTENCE.findall(passage.text) if s.strip()] or [passage.text]
    sentence = max(sentences, key=lambda s: len(wanted & _content_words(s)))
    return " ".join(sentence.split()[:MAX_ANSWER_WORDS]), passage


class BestSentence(dspy.Module):
    """The copy-the-best-sentence heuristic as a program, so `qa-eval` scores it like any other."""

    def __init__(self, index: CorpusIndex, k: int = 3) -> None:
        super().__init__()
        self.index = index
        self.k = k

    def forward(self, question: str) -> dspy.Prediction:
        passages = self.index.search(question, self.k)
        answer, passage = best_sentence(question, passages)
        return dspy.Prediction(
            answer=answer, citations=[passage.id] if passage else [], passages=passages, grounded=passage is not None
        )


# --8<-- [end:best-sentence]
