from __future__ import annotations

import json
import re

import httpx
import pytest

from qa_core.adapters import JSONAdapter, constrained_response_format
from qa_core.corpus import CorpusIndex, Passage
from qa_core.decoding import SPAN_MAX_WORDS, constrained_signature, span_pattern
from qa_core.lm import build_lm
from qa_core.program import AnswerFromPassages, GroundedQA, prompt_order
from qa_core.settings import CoreSettings

TRICKY = Passage(
    id="tricky#0",
    doc_id="tricky",
    title="Tricky",
    section="",
    text='Run `make lint` (ruff) on v1.2 [beta] | a+b? {x} *y* say "hi" C:\\path ^start end$',
)
PLAIN = Passage(id="plain#1", doc_id="plain", title="Plain", section="", text="one two three four five six seven eight")


def test_the_span_pattern_matches_every_short_run_of_words_and_nothing_else() -> None:
    pattern = re.compile(span_pattern((PLAIN,)))
    words = PLAIN.text.split()
    for start in range(len(words)):
        for length in range(1, SPAN_MAX_WORDS + 1):
            if start + length <= len(words):
                assert pattern.fullmatch(" ".join(words[start : start + length]))
    assert not pattern.fullmatch(" ".join(words[: SPAN_MAX_WORDS + 1]))  # too long
    assert not pattern.fullmatch("two four")  # not consecutive
    assert not pattern.fullmatch("nine")  # not in the passage
    assert not pattern.fullmatch("one  two")  # single spaces only
    assert not pattern.fullmatch("")


def test_regex_syntax_in_a_passage_is_matched_literally() -> None:
    pattern = re.compile(span_pattern((TRICKY,)))
    for span in ["`make lint` (ruff)", "v1.2 [beta] |", "a+b? {x} *y*"]:
        assert pattern.fullmatch(span), span
    assert not pattern.fullmatch("v1x2")  # the dot is literal, not "any character"
    # Words a JSON string or the grammar converters would need escaped are never offered.
    for word in ['"hi"', "C:\\path", "^start", "end$"]:
        assert not pattern.fullmatch(word)


@pytest.mark.slow
@pytest.mark.lm
def test_llama_server_turns_the_pattern_into_a_grammar_and_keeps_to_it(llama_base: str) -> None:
    """llama.cpp's own converter reads the pattern (a 400 if it could not), and what it decodes is a span."""
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "pattern": span_pattern((TRICKY, PLAIN))}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    reply = httpx.post(
        f"{llama_base}/chat/completions",
        json={
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "Quote a few words of the manual."}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}},
            "max_tokens": 48,
            "temperature": 0,
        },
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    answer = json.loads(reply.json()["choices"][0]["message"]["content"])["answer"]
    assert re.fullmatch(span_pattern((TRICKY, PLAIN)), answer), answer


def test_the_response_schema_limits_citations_to_the_passages_of_this_call(index: CorpusIndex) -> None:
    passages = tuple(prompt_order(index.search("Which port does the MLflow tracking server listen on?", 3)))
    schema = constrained_response_format(constrained_signature(AnswerFromPassages, passages)).model_json_schema()
    citations, answer = schema["properties"]["citations"], schema["properties"]["answer"]
    assert citations["items"] == {"type": "string", "enum": [p.id for p in passages]}
    assert (citations["minItems"], citations["maxItems"]) == (1, 3)
    assert re.fullmatch(answer["pattern"], " ".join(passages[-1].text.split()[:3]))
    # The declared signature keeps its general schema: the narrowing is per call.
    general = constrained_response_format(AnswerFromPassages).model_json_schema()
    assert "pattern" not in general["properties"]["answer"]


def test_the_constraints_never_reach_the_prompt(index: CorpusIndex) -> None:
    """Serving formats with the narrowed signature, fine-tuning data with the declared one: same messages."""
    program = GroundedQA(index)
    passages = index.search("Which SIMBA setting is the mini-batch size?", 3)
    inputs = {"passages": [p.as_prompt_line() for p in prompt_order(passages)], "question": "Which SIMBA setting?"}
    narrowed = constrained_signature(program.answer.signature, tuple(prompt_order(passages)))
    adapter = JSONAdapter()
    assert adapter.format(narrowed, [], inputs) == adapter.format(program.answer.signature, [], inputs)


def test_the_same_passages_reuse_one_constrained_signature(index: CorpusIndex) -> None:
    passages = tuple(index.search("What does SIMBA stand for?", 3))
    assert constrained_signature(AnswerFromPassages, passages) is constrained_signature(AnswerFromPassages, passages)
    assert constrained_signature(AnswerFromPassages, ()) is AnswerFromPassages


def test_the_program_asks_the_lm_server_for_the_narrowed_schema(index: CorpusIndex) -> None:
    program = GroundedQA(index)
    question = "Which SIMBA setting is the mini-batch size?"
    inputs = program._inputs(question, program.retrieve(question))
    lm_kwargs: dict = {}
    JSONAdapter()._prepare_response_format(build_lm(CoreSettings(_env_file=None)), lm_kwargs, inputs["signature"])
    schema = lm_kwargs["response_format"].model_json_schema()
    ids = [line.split("]")[0].lstrip("[") for line in inputs["passages"]]
    assert schema["properties"]["citations"]["items"]["enum"] == ids
    assert "pattern" in schema["properties"]["answer"]
