"""OpenAI wire format: completion bodies, SSE chunks, usage and error bodies, all encoded with orjson."""

from __future__ import annotations

import itertools
import re
from typing import Any

import orjson

_TOKEN = re.compile(r"\s*\S+|\s+")
_ids = itertools.count(1)


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def new_id() -> str:
    return f"chatcmpl-sim{next(_ids):010d}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def error_body(message: str, type_: str, code: str | None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def completion_body(cid: str, created: int, model: str, content: str, n: int, prompt_tokens: int) -> bytes:
    message = {"role": "assistant", "content": content}
    choices = [{"index": i, "message": message, "logprobs": None, "finish_reason": "stop"} for i in range(n)]
    return orjson.dumps(
        {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": usage(prompt_tokens, estimate_tokens(content) * n),
        }
    )


def split_tokens(text: str) -> list[str]:
    """Stream pieces: one word with its leading whitespace, like a tokenizer's word pieces."""
    return _TOKEN.findall(text)


class ChunkEncoder:
    """SSE `data:` lines of one chat.completion.chunk stream; the fixed envelope is encoded once."""

    def __init__(self, cid: str, created: int, model: str) -> None:
        envelope = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
        head = orjson.dumps(envelope)
        self._head = b"data: " + head[:-1]  # without the closing brace, choices follow
        self._content_prefix = self._head + b',"choices":[{"index":0,"delta":{"content":'
        self._content_suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'

    def _line(self, extra: dict[str, Any]) -> bytes:
        return self._head + b"," + orjson.dumps(extra)[1:] + b"\n\n"

    def role(self) -> bytes:
        delta = {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._line({"choices": [choice]})

    def content(self, piece: str) -> bytes:
        return self._content_prefix + orjson.dumps(piece) + self._content_suffix

    def finish(self) -> bytes:
        return self._line({"choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return self._line({"choices": [], "usage": usage(prompt_tokens, completion_tokens)})


DONE = b"data: [DONE]\n\n"
