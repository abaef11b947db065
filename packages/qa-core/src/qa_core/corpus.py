"""The markdown corpus: chunked into passages with stable ids, and searched with BM25.

A passage id is `<doc-id>#<n>`: the file stem and the chunk's position in that file. Ids stay stable
as long as a document's text does not change, so citations in logged traces stay meaningful.
"""

from __future__ import annotations

import copy
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import bm25s
import Stemmer
from bm25s.tokenization import Tokenizer

# Doc ids are file stems; passage ids add the chunk number. The pattern also constrains what the LM may cite.
DOC_ID_PATTERN = r"[A-Za-z0-9_.-]{1,60}"
PASSAGE_ID_PATTERN = rf"^{DOC_ID_PATTERN}#[0-9]{{1,3}}$"


class CorpusError(ValueError):
    """The corpus folder is missing, empty or holds a document we cannot read."""


@dataclass(frozen=True, slots=True)
class Passage:
    id: str
    doc_id: str
    title: str
    section: str
    text: str

    def as_prompt_line(self) -> str:
        """How the passage appears to the LM: its id first, so the model can cite it by copying."""
        heading = f"{self.title} / {self.section}" if self.section else self.title
        return f"[{self.id}] {heading}: {self.text}"


# --8<-- [start:chunking]
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def chunk_document(doc_id: str, markdown: str, chunk_words: int) -> list[Passage]:
    """Split one document at its headings, then pack whole sentences into chunks of at most `chunk_words` words.

    Sections keep their heading as context, because a chunk's first sentence often depends on it.
    """
    title, section = doc_id, ""
    sections: list[tuple[str, list[str]]] = []
    paragraph: list[str] = []
    paragraphs: list[str] = []

    def end_paragraph() -> None:
        if paragraph:
            paragraphs.append(" ".join(paragraph))
            paragraph.clear()

    def end_section() -> None:
        end_paragraph()
        if paragraphs:
            sections.append((section, paragraphs.copy()))
            paragraphs.clear()

    for line in markdown.splitlines():
        heading = _HEADING.match(line.strip())
        if heading:
            end_section()
            if len(heading.group(1)) == 1 and title == doc_id:
                title = heading.group(2).strip()
            else:
                section = heading.group(2).strip()
        elif line.strip():
            paragraph.append(line.strip())
        else:
            end_paragraph()
    end_section()

    passages: list[Passage] = []
    for section_name, section_paragraphs in sections:
        words: list[str] = []
        for sentence in _sentences(section_paragraphs):
            if words and len(words) + len(sentence) > chunk_words:
                passages.append(_passage(doc_id, len(passages), title, section_name, words))
                words = []
            words.extend(sentence)
        if words:
            passages.append(_passage(doc_id, len(passages), title, section_name, words))
    return passages


_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+(?=[A-Z`\-*(\[])")


def _sentences(paragraphs: list[str]) -> list[list[str]]:
    """Paragraphs split into sentences (and list items), each as a list of words.

    Small chunks matter here: a 135M-parameter model answers better, and faster, from short passages.
    """
    return [sentence.split() for text in paragraphs for sentence in _SENTENCE_END.split(text) if sentence.strip()]


def _passage(doc_id: str, index: int, title: str, section: str, words: list[str]) -> Passage:
    return Passage(id=f"{doc_id}#{index}", doc_id=doc_id, title=title, section=section, text=" ".join(words))


# --8<-- [end:chunking]


def load_corpus(corpus_dir: Path, chunk_words: int) -> list[Passage]:
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist (set CORPUS_DIR)")
    files = sorted(corpus_dir.glob("*.md"))
    if not files:
        raise CorpusError(f"corpus folder {corpus_dir} holds no .md files")
    passages: list[Passage] = []
    for path in files:
        if not re.fullmatch(DOC_ID_PATTERN, path.stem):
            raise CorpusError(f"{path.name}: rename it; a document name may use only letters, digits, '_', '.', '-'")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise CorpusError(f"{path} is not UTF-8 text: {exc}") from exc
        passages.extend(chunk_document(path.stem, text, chunk_words))
    return passages


# --8<-- [start:search]
class CorpusIndex:
    """BM25 over the corpus passages. Build once per process; `search` is safe to call from many threads."""

    def __init__(self, passages: list[Passage]) -> None:
        if not passages:
            raise CorpusError("cannot index an empty corpus")
        self.passages = passages
        self.by_id = {p.id: p for p in passages}
        self._tokenizer = Tokenizer(stemmer=Stemmer.Stemmer("english"), stopwords="en")
        # The stemmer and the tokenizer's vocabulary lookups are not documented as thread-safe.
        self._lock = threading.Lock()
        corpus_ids = self._tokenizer.tokenize(
            [self._indexed_text(p) for p in passages], update_vocab=True, show_progress=False
        )
        self._bm25 = bm25s.BM25()
        self._bm25.index(corpus_ids, show_progress=False)

    def __deepcopy__(self, memo: dict) -> CorpusIndex:
        # Immutable once built: optimizers deep-copy programs many times, and they can all share one index.
        return self

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]  # locks cannot be pickled (MLflow pickles programs it logs as models)
        # Neither can PyStemmer's C object: pickle the tokenizer without it, and rebuild it on load.
        tokenizer = copy.copy(self._tokenizer)
        tokenizer.stemmer = None
        state["_tokenizer"] = tokenizer
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._tokenizer.stemmer = Stemmer.Stemmer("english").stemWord
        self._lock = threading.Lock()

    @staticmethod
    def _indexed_text(passage: Passage) -> str:
        return f"{passage.title} {passage.section} {passage.text}"

    def search(self, query: str, k: int) -> list[Passage]:
        """The `k` passages that best match `query`, best first. Passages that share no term are left out."""
        k = min(k, len(self.passages))
        with self._lock:
            query_ids = self._tokenizer.tokenize([query], update_vocab=False, show_progress=False)
            # n_threads=0 scores in this thread; any other value starts a thread pool on every call.
            documents, scores = self._bm25.retrieve(query_ids, k=k, show_progress=False, n_threads=0)
        return [self.passages[int(i)] for i, score in zip(documents[0], scores[0], strict=True) if score > 0]


# --8<-- [end:search]


@lru_cache(maxsize=4)
def cached_index(corpus_dir: Path, chunk_words: int) -> CorpusIndex:
    """One index per corpus folder and chunk size, shared by every program instance in the process."""
    return CorpusIndex(load_corpus(corpus_dir, chunk_words))
