"""The QA program: retrieve passages, answer with a typed, grounded output.

Every class implements `forward` (optimizers and evaluation are synchronous) and `aforward` (serving).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import dspy
from dspy.utils.exceptions import AdapterParseError
from pydantic import BaseModel, Field, StringConstraints
from typing_extensions import TypeAliasType

from qa_core.corpus import PASSAGE_ID_PATTERN, CorpusIndex, Passage, cached_index
from qa_core.decoding import constrained_signature
from qa_core.lm import bind_tuned_lms
from qa_core.settings import CoreSettings


def _field_spec(model: type[BaseModel], name: str) -> dict[str, Any]:
    """A pydantic field's description and length limits, as keyword arguments for a DSPy field."""
    field = model.model_fields[name]
    spec: dict[str, Any] = {"desc": field.description}
    for limit in field.metadata:
        for key in ("min_length", "max_length"):
            if hasattr(limit, key):
                spec[key] = getattr(limit, key)
    return spec


# --8<-- [start:signature]
# Limits on the output. JSON-schema constrained decoding turns them into a grammar, so even a
# 135M-parameter model can only write a short answer and one to three citations.
ANSWER_MAX_CHARS = 80
MAX_CITATIONS = 3
# A named alias, so prompts read `list[PassageId]` while the schema carries the pattern.
PassageId = TypeAliasType("PassageId", Annotated[str, StringConstraints(pattern=PASSAGE_ID_PATTERN)])


class GroundedAnswer(BaseModel):
    """The typed result of one question: the answer and the passages it relied on."""

    answer: str = Field(
        min_length=1,
        max_length=ANSWER_MAX_CHARS,
        description="A short answer, usually a few words copied from one passage.",
    )
    citations: list[PassageId] = Field(
        min_length=1,
        max_length=MAX_CITATIONS,
        description="Ids of the passages the answer relies on, like 'doc-id#0'.",
    )


class AnswerFromPassages(dspy.Signature):
    """Answer the question with a short phrase taken from the passages.
    Cite the id in square brackets at the start of each passage you used."""

    passages: list[str] = dspy.InputField(desc="Retrieved passages, each starting with its [id].")
    question: str = dspy.InputField()
    # GroundedAnswer's fields, at top level so `answer` can stream token by token. Citations come
    # first: choosing the passage before the words lifted citation from 0.72 to 0.98 on dev with
    # SmolLM2 (docs/results/program-design.md).
    citations: list[PassageId] = dspy.OutputField(**_field_spec(GroundedAnswer, "citations"))
    answer: str = dspy.OutputField(**_field_spec(GroundedAnswer, "answer"))


# --8<-- [end:signature]


# --8<-- [start:grounding]
_PASSAGE_ID = re.compile(r"^\[([^\]]+)\]")


def passage_ids(passage_lines: list[str]) -> set[str]:
    return {m.group(1) for line in passage_lines if (m := _PASSAGE_ID.match(line))}


def normalize_citations(citations: Any) -> list[str]:
    """Accept what a small model writes for an id: brackets, stray spaces, duplicates."""
    if isinstance(citations, str):
        citations = [citations]
    seen: dict[str, None] = {}
    for raw in citations or []:
        cleaned = str(raw).strip().strip("[]").strip()
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


def grounding_reward(inputs: dict[str, Any], prediction: dspy.Prediction) -> float:
    """1.0 when the answer is non-empty and cites only passages it was given; 0.0 otherwise."""
    cited = normalize_citations(prediction.citations)
    if not str(prediction.answer).strip() or not cited:
        return 0.0
    return 1.0 if set(cited) <= passage_ids(inputs["passages"]) else 0.0


class GroundedBestOfN(dspy.BestOfN):
    """`dspy.BestOfN` with the grounding reward, tuned for serving a small model.

    Unlike the stock class it (1) makes the first attempt with the configured LM and temperature and
    samples (temperature 1.0, a new rollout id) only to recover from a failed check, (2) calls the same
    predictor instead of a deep copy, so optimizers can attribute traces to it, (3) retries only
    answers that failed the check or did not parse (an LM outage is not retried here), and (4) runs
    under `acall` too.
    """

    def __init__(self, module: dspy.Module, attempts: int, reward_fn: Callable[..., float] = grounding_reward):
        super().__init__(module=module, N=attempts, reward_fn=reward_fn, threshold=1.0)

    def _attempt_lm(self, attempt: int) -> dspy.LM | None:
        if attempt == 0:
            return None
        lm = self.module.get_lm() or dspy.settings.lm
        return lm.copy(rollout_id=attempt, temperature=1.0)

    def _keep(self, best: tuple | None, pred: dspy.Prediction, trace: list, kwargs: dict) -> tuple:
        reward = self.reward_fn(kwargs, pred)
        return (reward, pred, trace) if best is None or reward > best[0] else best

    def _finish(self, best: tuple | None, error: AdapterParseError | None) -> dspy.Prediction:
        if best is None:
            assert error is not None
            raise error
        reward, pred, trace = best
        if trace and dspy.settings.trace is not None:
            dspy.settings.trace.extend(trace)
        pred.grounded = reward >= self.threshold
        return pred

    def forward(self, **kwargs: Any) -> dspy.Prediction:
        best, error = None, None
        for attempt in range(self.N):
            lm = self._attempt_lm(attempt)
            try:
                with dspy.context(trace=[], **({"lm": lm} if lm else {})):
                    pred = self.module(**kwargs)
                    best = self._keep(best, pred, dspy.settings.trace.copy(), kwargs)
            except AdapterParseError as exc:
                error = exc
                continue
            if best[0] >= self.threshold:
                break
        return self._finish(best, error)

    async def aforward(self, **kwargs: Any) -> dspy.Prediction:
        best, error = None, None
        for attempt in range(self.N):
            lm = self._attempt_lm(attempt)
            try:
                with dspy.context(trace=[], **({"lm": lm} if lm else {})):
                    pred = await self.module.acall(**kwargs)
                    best = self._keep(best, pred, dspy.settings.trace.copy(), kwargs)
            except AdapterParseError as exc:
                error = exc
                continue
            if best[0] >= self.threshold:
                break
        return self._finish(best, error)


# --8<-- [end:grounding]


# --8<-- [start:prompt-order]
def prompt_order(passages: list[Passage]) -> list[Passage]:
    """The retrieved passages as the prompt lists them: the best one last, next to the question.

    A small model favours what it read last. In retrieval order it cited the third passage 29 times in
    50, though the answer was in the first one 48 times; best-last lifted citation from 0.50 to 0.72.
    """
    return passages[::-1]


# --8<-- [end:prompt-order]


# --8<-- [start:program]
class GroundedQA(dspy.Module):
    """Retrieve `k` passages with BM25, then answer and cite with one grounded LM call."""

    def __init__(self, index: CorpusIndex, k: int = 3, attempts: int = 2) -> None:
        super().__init__()
        self.index = index
        self.k = k
        self.answer = dspy.Predict(AnswerFromPassages)
        self.grounded_answer = GroundedBestOfN(self.answer, attempts=attempts)

    def retrieve(self, question: str) -> list[Passage]:
        return self.index.search(question, self.k)

    def _inputs(self, question: str, passages: list[Passage]) -> dict[str, Any]:
        """The answer predictor's inputs, with its signature constrained to these passages for this call."""
        in_prompt = prompt_order(passages)
        return {
            "signature": constrained_signature(self.answer.signature, tuple(in_prompt)),
            "passages": [p.as_prompt_line() for p in in_prompt],
            "question": question,
        }

    def forward(self, question: str) -> dspy.Prediction:
        passages = self.retrieve(question)
        pred = self.grounded_answer(**self._inputs(question, passages))
        return self._result(pred, passages)

    async def aforward(self, question: str) -> dspy.Prediction:
        passages = self.retrieve(question)
        pred = await self.grounded_answer.acall(**self._inputs(question, passages))
        return self._result(pred, passages)

    @staticmethod
    def _result(pred: dspy.Prediction, passages: list[Passage]) -> dspy.Prediction:
        """Never return a citation to a passage the program did not retrieve."""
        known = {p.id for p in passages}
        citations = [c for c in normalize_citations(pred.citations) if c in known]
        return dspy.Prediction(
            answer=str(pred.answer).strip(),
            citations=citations,
            passages=passages,
            grounded=bool(getattr(pred, "grounded", False)),
        )


# --8<-- [end:program]


def as_grounded_answer(pred: dspy.Prediction) -> GroundedAnswer:
    return GroundedAnswer(answer=pred.answer, citations=pred.citations)


# --8<-- [start:load-program]
def load_program(state_path: Path, index: CorpusIndex, k: int = 3, attempts: int = 2) -> GroundedQA:
    """A fresh program instance with saved state (demos, instructions) loaded into it.

    This is how services load a registered version: never through `mlflow.dspy.load_model`, which
    would replace the process-wide DSPy settings.
    """
    program = GroundedQA(index, k=k, attempts=attempts)
    program.load(str(state_path))
    return program


# --8<-- [end:load-program]


def build_program(
    settings: CoreSettings, state_path: Path | None = None, lm_class: type[dspy.LM] = dspy.LM
) -> GroundedQA:
    """The program the settings describe, with `state_path` (or the shipped baseline) loaded into it.

    A fine-tuned version's predictors get an `lm_class` LM of their tuned model (`bind_tuned_lms`).
    """
    index = cached_index(settings.corpus_dir, settings.chunk_words)
    path = state_path or settings.baseline_program_path
    if not path.is_file():
        raise FileNotFoundError(f"program state {path} not found")
    program = load_program(path, index, settings.retriever_k, settings.grounding_attempts)
    bind_tuned_lms(program, settings, lm_class)
    return program
