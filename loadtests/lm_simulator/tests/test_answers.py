"""Prompt reading and answer building, in process: real DSPy prompts in, DSPy's own parsers on the way out."""

from __future__ import annotations

import enum
import json
from typing import Any, Literal

import dspy
import pydantic
import pytest
from dspy.adapters.json_adapter import _get_structured_outputs_response_format

from lm_simulator.answers import MAX_ANSWER_WORDS, NO_CONTEXT_ANSWER, answer_messages
from lm_simulator.prompt import parse_passages, parse_system, parse_user

LONG = " ".join(f"word{i}" for i in range(60))
PASSAGES = [
    "[a#0] Bananas are yellow when they are ripe.",
    f"[b#1] # Deploying\n\nThe worker pulls jobs from Redis and retries failed jobs three times. {LONG}.",
]
QUESTION = "How many times does the worker retry failed jobs?"


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Source(pydantic.BaseModel):
    id: str
    score: float
    pages: list[int]


class Cited(pydantic.BaseModel):
    answer: str
    sources: list[Source]
    note: str | None = None


class EverythingSignature(dspy.Signature):
    """Exercise every output type DSPy can print."""

    passages: list[str] = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()
    citations: list[str] = dspy.OutputField()
    count: int = dspy.OutputField()
    ratio: float = dspy.OutputField()
    ok: bool = dspy.OutputField()
    kind: Literal["fact", "opinion"] = dspy.OutputField()
    colour: Colour = dspy.OutputField()
    cited: Cited = dspy.OutputField()
    maybe: str | None = dspy.OutputField()
    scores: dict[str, int] = dspy.OutputField()
    many: list[Source] = dspy.OutputField()


Reply = tuple[str, dict[str, Any]]


def _reply(adapter: dspy.Adapter, signature: type[dspy.Signature], **inputs: Any) -> Reply:
    messages = adapter.format(signature, demos=[], inputs=inputs)
    text = answer_messages(messages)
    return text, adapter.parse(signature, text)


@pytest.mark.parametrize("adapter", [dspy.ChatAdapter(), dspy.JSONAdapter()], ids=["chat", "json"])
def test_every_output_type_parses(adapter: dspy.Adapter) -> None:
    signature = dspy.ChainOfThought(EverythingSignature).predict.signature
    _, out = _reply(adapter, signature, passages=PASSAGES, question=QUESTION)
    assert out["answer"] in PASSAGES[1]
    assert out["citations"] == ["b#1"]
    assert out["reasoning"]
    assert out["kind"] == "fact"
    assert out["colour"] is Colour.RED
    assert out["ok"] is True
    assert out["cited"].answer == out["answer"]
    assert out["cited"].sources[0].pages
    assert isinstance(out["count"], int)
    assert isinstance(out["many"][0], Source)


def test_answer_is_the_best_sentence_trimmed() -> None:
    signature = dspy.Signature("passages: list[str], question -> answer, citations: list[str]")
    text, out = _reply(dspy.ChatAdapter(), signature, passages=PASSAGES, question=QUESTION)
    assert out["answer"].startswith("The worker pulls jobs from Redis and retries failed jobs three times.")
    assert len(out["answer"].split()) <= MAX_ANSWER_WORDS
    assert out["answer"] in PASSAGES[1]
    assert text.endswith("[[ ## completed ## ]]")


def test_structured_output_schema_from_dspy_validates() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    signature = EverythingSignature.delete("scores")  # open-ended dicts have no structured-output schema
    model = _get_structured_outputs_response_format(signature)
    schema = model.model_json_schema()
    adapter = dspy.JSONAdapter()
    messages = adapter.format(signature, demos=[], inputs={"passages": PASSAGES, "question": QUESTION})
    json_schema = {"name": "DSPyProgramOutputs", "strict": True, "schema": schema}
    response_format = {"type": "json_schema", "json_schema": json_schema}
    value = json.loads(answer_messages(messages, response_format))
    jsonschema.validate(value, schema)
    parsed = model.model_validate(value)
    assert parsed.citations == ["b#1"]
    assert adapter.parse(signature, json.dumps(value))["answer"] in PASSAGES[1]


def test_str_annotated_passages_numbered_blobs() -> None:
    # A list given to a `str` input is printed as `[1] «...»` lines, multi-line items as «««...»»» blocks.
    signature = dspy.Signature("context: str, query: str -> answer: str, citations: list[str]")
    context = ["[x#1] Nothing here.", "[y#2] Line one about queues.\nRedis retries jobs three times."]
    _, out = _reply(dspy.ChatAdapter(), signature, context=context, query="how many times are jobs retried?")
    assert out["citations"] == ["y#2"]
    assert out["answer"] == "Redis retries jobs three times."


def test_parse_passages_formats() -> None:
    from_dicts = parse_passages(json.dumps([{"id": "d1", "text": "alpha"}, {"text": "[d2] beta"}]))
    assert [(p.pid, p.text) for p in from_dicts] == [("d1", "alpha"), ("d2", "beta")]
    lines = parse_passages("[doc#1] first passage\ncontinues here\n[doc#2] second")
    expected = [("doc#1", "first passage\ncontinues here"), ("doc#2", "second")]
    assert [(p.pid, p.text) for p in lines] == expected
    assert parse_passages("N/A") == []
    assert parse_passages("«[only#1] one passage»")[0].pid == "only#1"


def test_question_falls_back_to_last_non_context_field() -> None:
    user = '[[ ## query ## ]]\nwhat colour?\n\n[[ ## documents ## ]]\n["[k#1] Red."]\n\nRespond with ...'
    spec = parse_system("Your input fields are:\n1. `query` (str):\n2. `documents` (list[str]):\n")
    inputs = parse_user(user, spec)
    assert inputs.question == "what colour?"
    assert inputs.passages[0].pid == "k#1"


def test_no_passages_and_plain_chat() -> None:
    signature = dspy.Signature("question -> answer")
    _, out = _reply(dspy.ChatAdapter(), signature, question="anything?")
    assert out["answer"] == NO_CONTEXT_ANSWER
    assert answer_messages([{"role": "user", "content": "hello"}]) == NO_CONTEXT_ANSWER


def test_same_request_same_text_and_schema_notes_cached() -> None:
    signature = dspy.ChainOfThought(EverythingSignature).predict.signature
    messages = dspy.ChatAdapter().format(signature, demos=[], inputs={"passages": PASSAGES, "question": "q"})
    assert answer_messages(messages) == answer_messages(json.loads(json.dumps(messages)))
    spec = parse_system(messages[0]["content"])
    assert spec is parse_system(messages[0]["content"])
    fields = {f.name: f for f in spec.outputs}
    assert fields["cited"].schema is not None
    assert fields["colour"].choices == ("red", "green")


def test_citations_limited_to_an_enum_cite_the_best_passage_not_the_first_id() -> None:
    signature = dspy.Signature("passages: list[str], question -> citations: list[str], answer")
    messages = dspy.JSONAdapter().format(signature, demos=[], inputs={"passages": PASSAGES, "question": QUESTION})
    schema = _get_structured_outputs_response_format(signature).model_json_schema()
    schema["properties"]["citations"]["items"] = {"type": "string", "enum": ["a#0", "b#1"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}
    assert json.loads(answer_messages(messages, response_format))["citations"] == ["b#1"]
