"""DSPy's ChatAdapter and JSONAdapter against the simulator: sync, async and streaming."""

from __future__ import annotations

import asyncio
import json

import dspy
import pytest

PASSAGES = [
    "[guide#1] The optimizer worker consumes jobs from a Redis queue. It records every run in MLflow.",
    "[serving#3] The qa-api service answers questions over HTTP. Champion and challenger are aliases of one "
    "registered model, and a sticky hash assigns each session to a variant.",
    "[corpus#2] The corpus is a folder of markdown documents indexed with bm25s.",
]
QUESTION = "Which aliases of the registered model does the qa-api service route between?"
BEST = PASSAGES[1]
BEST_ID = "serving#3"


class AnswerWithCitations(dspy.Signature):
    """Answer the question from the passages and cite the passages used."""

    passages: list[str] = dspy.InputField()
    question: str = dspy.InputField()
    answer: str = dspy.OutputField()
    citations: list[str] = dspy.OutputField()


ADAPTERS = {"chat": dspy.ChatAdapter, "json": dspy.JSONAdapter}


@pytest.fixture
def lm(api_base: str) -> dspy.LM:
    return dspy.LM("openai/lm-simulator", api_base=api_base, api_key="sim", cache=False)


def _check(prediction: dspy.Prediction) -> None:
    assert prediction.answer
    assert prediction.answer in BEST
    assert prediction.citations == [BEST_ID]


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_sync_predict(lm: dspy.LM, adapter: str) -> None:
    with dspy.context(lm=lm, adapter=ADAPTERS[adapter]()):
        prediction = dspy.Predict(AnswerWithCitations)(passages=PASSAGES, question=QUESTION)
    _check(prediction)


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_async_chain_of_thought(lm: dspy.LM, adapter: str) -> None:
    async def run() -> dspy.Prediction:
        predictor = dspy.ChainOfThought(AnswerWithCitations)
        with dspy.context(lm=lm, adapter=ADAPTERS[adapter]()):
            return await predictor.acall(passages=PASSAGES, question=QUESTION)

    prediction = asyncio.run(run())
    _check(prediction)
    assert prediction.reasoning


def test_same_request_same_answer(lm: dspy.LM) -> None:
    with dspy.context(lm=lm):
        first = dspy.Predict(AnswerWithCitations)(passages=PASSAGES, question=QUESTION)
        second = dspy.Predict(AnswerWithCitations)(passages=PASSAGES, question=QUESTION)
    assert first.toDict() == second.toDict()


def test_no_passages_gives_fixed_answer(lm: dspy.LM) -> None:
    with dspy.context(lm=lm):
        prediction = dspy.Predict(AnswerWithCitations)(passages=[], question=QUESTION)
    assert prediction.answer
    assert prediction.citations == []


def _stream(lm: dspy.LM, adapter: str, tokens_per_second: float = 0) -> tuple[list[str], dspy.Prediction]:
    async def run() -> tuple[list[str], dspy.Prediction]:
        program = dspy.streamify(
            dspy.Predict(AnswerWithCitations),
            stream_listeners=[dspy.streaming.StreamListener(signature_field_name="answer")],
        )
        chunks: list[str] = []
        final = None
        with dspy.context(lm=lm, adapter=ADAPTERS[adapter]()):
            async for item in program(passages=PASSAGES, question=QUESTION):
                if isinstance(item, dspy.streaming.StreamResponse):
                    assert item.signature_field_name == "answer"
                    chunks.append(item.chunk)
                elif isinstance(item, dspy.Prediction):
                    final = item
        assert final is not None
        return chunks, final

    return asyncio.run(run())


def test_streaming_chat_adapter(lm: dspy.LM) -> None:
    chunks, final = _stream(lm, "chat")
    _check(final)
    assert len(chunks) > 3  # token by token, not one blob
    assert "".join(chunks) == final.answer


def test_streaming_json_adapter(lm: dspy.LM) -> None:
    chunks, final = _stream(lm, "json")
    _check(final)
    assert len(chunks) > 3
    # dspy 3.4.1's JSON listener passes the raw JSON text of the value through, quotes included, up to the
    # next key (its own test_stream_listener_returns_correct_chunk_json_adapter expects '"To' ... '!"'). So
    # the chunks start with the JSON string literal of the answer, which must decode to the final answer.
    streamed = "".join(chunks).strip()
    value, _ = json.JSONDecoder().raw_decode(streamed)
    assert value == final.answer


def test_streaming_with_pacing(simulator) -> None:  # type: ignore[no-untyped-def]
    with simulator(tokens_per_second=2000) as base:
        lm = dspy.LM("openai/lm-simulator", api_base=base, api_key="sim", cache=False)
        chunks, final = _stream(lm, "chat")
    _check(final)
    assert "".join(chunks) == final.answer
