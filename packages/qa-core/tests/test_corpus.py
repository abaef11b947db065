from __future__ import annotations

from pathlib import Path

import pytest

from qa_core.corpus import CorpusError, CorpusIndex, chunk_document, load_corpus
from qa_core.dataset import read_pairs
from qa_core.settings import CoreSettings

DOCUMENT = """# Ports

## Services

qa-api listens on port 8000. The feedback UI listens on port 8002.

The worker API listens on port 8001.

## Storage

MLflow keeps runs in PostgreSQL.
"""


def test_chunks_keep_title_and_section_and_get_positional_ids() -> None:
    passages = chunk_document("ports", DOCUMENT, chunk_words=12)
    assert [p.id for p in passages] == ["ports#0", "ports#1", "ports#2"]
    assert {p.title for p in passages} == {"Ports"}
    assert passages[0].section == "Services"
    assert passages[-1].section == "Storage"
    assert passages[0].as_prompt_line().startswith("[ports#0] Ports / Services: qa-api listens")


def test_chunk_ids_are_stable_across_loads(settings: CoreSettings) -> None:
    first = [p.id for p in load_corpus(settings.corpus_dir, settings.chunk_words)]
    second = [p.id for p in load_corpus(settings.corpus_dir, settings.chunk_words)]
    assert first == second
    assert len(set(first)) == len(first)


def test_the_shipped_corpus_has_at_least_30_documents(settings: CoreSettings) -> None:
    assert len(list(settings.corpus_dir.glob("*.md"))) >= 30


def test_search_returns_the_best_passages_first(index: CorpusIndex) -> None:
    results = index.search("Which port does the MLflow tracking server listen on?", 3)
    assert len(results) == 3
    assert results[0].doc_id == "mlflow-tracking"
    assert "5000" in results[0].text


def test_search_leaves_out_passages_that_share_no_term(index: CorpusIndex) -> None:
    assert index.search("zyxxyzzy qwertyuiop", 3) == []


def test_retrieval_finds_the_supporting_document_for_dev_questions(settings: CoreSettings, index) -> None:
    pairs = read_pairs(settings.dataset_dir / "dev.jsonl")
    hits = sum(
        any(p.doc_id == pair.doc_id for p in index.search(pair.question, settings.retriever_k)) for pair in pairs
    )
    assert hits / len(pairs) >= 0.9


def test_a_fork_can_point_at_its_own_corpus(tmp_path: Path) -> None:
    (tmp_path / "pets.md").write_text("# Pets\n\n## Cats\n\nCats sleep sixteen hours a day.\n")
    (tmp_path / "plants.md").write_text("# Plants\n\n## Ferns\n\nFerns like shade and moist soil.\n")
    index = CorpusIndex(load_corpus(tmp_path, 45))
    assert index.search("how long do cats sleep", 1)[0].id == "pets#0"


def test_missing_or_empty_corpus_folders_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nope", 45)
    with pytest.raises(CorpusError, match=r"no \.md files"):
        load_corpus(tmp_path, 45)
