from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa_core.dataset import SPLITS, DatasetError, load_split, normalized_question, read_pairs
from qa_core.settings import CoreSettings

GOOD = {"id": "dev-001", "question": "Which port?", "answer": "8000", "doc_id": "ports"}


def write_lines(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


@pytest.mark.parametrize("split", SPLITS)
def test_each_split_has_at_least_50_valid_pairs(settings: CoreSettings, split: str) -> None:
    examples = load_split(settings.dataset_dir, split)
    assert len(examples) >= 50
    assert set(examples[0].inputs().keys()) == {"question"}


def test_every_gold_answer_appears_in_its_supporting_document(settings: CoreSettings) -> None:
    for split in SPLITS:
        for pair in read_pairs(settings.dataset_dir / f"{split}.jsonl"):
            document = settings.corpus_dir / f"{pair.doc_id}.md"
            assert document.is_file(), f"{pair.id}: unknown document {pair.doc_id}"
            assert pair.answer.lower() in document.read_text().lower(), f"{pair.id}: answer not in {pair.doc_id}"


def test_held_out_questions_do_not_appear_in_train(settings: CoreSettings) -> None:
    train = {normalized_question(p.question) for p in read_pairs(settings.dataset_dir / "train.jsonl")}
    for split in ("dev", "test"):
        held_out = {normalized_question(p.question) for p in read_pairs(settings.dataset_dir / f"{split}.jsonl")}
        assert not train & held_out


def test_a_bad_field_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "dev.jsonl", GOOD, {**GOOD, "id": "dev-002", "answer": ""})
    with pytest.raises(DatasetError, match=r"dev\.jsonl:2: answer: String should have at least 1 character"):
        read_pairs(path)


def test_invalid_json_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", GOOD, "", '{"id": "x", ')
    with pytest.raises(DatasetError, match=r"train\.jsonl:3: not valid JSON"):
        read_pairs(path)


def test_unknown_and_missing_fields_are_rejected(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.jsonl", {**GOOD, "extra": 1})
    with pytest.raises(DatasetError, match=r"a\.jsonl:1: extra: Extra inputs are not permitted"):
        read_pairs(path)
    path = write_lines(tmp_path / "b.jsonl", {k: v for k, v in GOOD.items() if k != "doc_id"})
    with pytest.raises(DatasetError, match=r"b\.jsonl:1: doc_id: Field required"):
        read_pairs(path)


def test_duplicate_ids_and_empty_or_missing_files_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="already used on line 1"):
        read_pairs(write_lines(tmp_path / "dup.jsonl", GOOD, GOOD))
    with pytest.raises(DatasetError, match="no QA pairs"):
        read_pairs(write_lines(tmp_path / "empty.jsonl", ""))
    with pytest.raises(DatasetError, match="file not found"):
        read_pairs(tmp_path / "missing.jsonl")


def test_limit_takes_the_first_examples(settings: CoreSettings) -> None:
    assert [e.id for e in load_split(settings.dataset_dir, "dev", limit=3)] == ["dev-001", "dev-002", "dev-003"]
