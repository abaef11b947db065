"""The question/answer splits: JSONL files validated line by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import dspy
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")


class DatasetError(ValueError):
    """A dataset file is missing or holds a line that is not a valid QA pair."""


# --8<-- [start:qa-pair]
class QAPair(BaseModel):
    """One line of a split file."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64)
    question: str = Field(min_length=3, max_length=1000)
    answer: str = Field(min_length=1, max_length=500, description="The gold answer, a short span.")
    doc_id: str = Field(min_length=1, description="The corpus document that supports the answer.")

    def to_example(self) -> dspy.Example:
        return dspy.Example(id=self.id, question=self.question, answer=self.answer, doc_id=self.doc_id).with_inputs(
            "question"
        )


# --8<-- [end:qa-pair]


def read_pairs(path: Path) -> list[QAPair]:
    """Parse a JSONL file; the error names the file, the line and what is wrong with it."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (set DATASET_DIR)")
    pairs: list[QAPair] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            pair = QAPair.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'line'}: {err['msg']}" for err in exc.errors()
            )
            raise DatasetError(f"{path}:{number}: {problems}") from exc
        if pair.id in seen:
            raise DatasetError(f"{path}:{number}: id {pair.id!r} already used on line {seen[pair.id]}")
        seen[pair.id] = number
        pairs.append(pair)
    if not pairs:
        raise DatasetError(f"{path}: no QA pairs")
    return pairs


def load_split(dataset_dir: Path, split: Split, limit: int | None = None) -> list[dspy.Example]:
    pairs = read_pairs(dataset_dir / f"{split}.jsonl")
    return [pair.to_example() for pair in pairs[:limit]]


def normalized_question(text: str) -> str:
    """The key used to keep held-out questions out of training data."""
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())
