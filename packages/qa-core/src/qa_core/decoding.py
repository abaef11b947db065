"""Decoding constraints built for each call from the passages retrieved for it.

A 135M-parameter model cannot be trusted to copy an id or a phrase exactly. The LM server's grammar
can do it for the model: each call's response schema limits the citations to the ids of the passages
retrieved for that question, and the answer to a short run of words taken from those passages. The
LM still chooses which passage to cite and which words to answer with. It can no longer choose
something that is not there, so a citation cannot be ungrounded and an answer cannot ramble.

The constraints travel in each output field's `json_schema_extra` under `RESPONSE_SCHEMA_KEY`: the
adapter merges them into the response schema it sends, and the prompt never shows them.
"""

from __future__ import annotations

import re
from functools import lru_cache

import dspy

from qa_core.corpus import Passage

# The key, in an output field's json_schema_extra, of the JSON-schema keywords to add to that field.
RESPONSE_SCHEMA_KEY = "response_schema"
# Gold answers here are one to six words long; a longer span only adds words the metric counts as wrong.
SPAN_MAX_WORDS = 6

# Characters the regex-to-grammar converters of llama.cpp (C++ and Python) read as syntax. A word with
# a quote, backslash, anchor or control character is left out of the spans: inside a JSON string those
# would need escaping that the converters do not do.
_REGEX_SYNTAX = frozenset("[](){}|*+?")
_UNSAFE = re.compile(r'["\\^$\x00-\x1f]')


# --8<-- [start:span-pattern]
def _escape(word: str) -> str:
    # `\.` is not an escape llama.cpp's grammars know, so a literal dot is the one-character class `[.]`.
    return "".join("[.]" if c == "." else "\\" + c if c in _REGEX_SYNTAX else c for c in word)


def _span_trie(passages: tuple[Passage, ...], max_words: int) -> dict:
    """Every run of 1..max_words consecutive words of the passages, as a trie of words."""
    trie: dict = {}
    for passage in passages:
        # The text only: with the headings in, the model answered with a document's title.
        words = passage.text.split()
        for start in range(len(words)):
            node = trie
            for word in words[start : start + max_words]:
                if _UNSAFE.search(word):
                    break
                node = node.setdefault(word, {})
    return trie


def _alternatives(node: dict) -> str:
    parts = []
    for word, children in node.items():
        parts.append(_escape(word) + (f"( ({_alternatives(children)}))?" if children else ""))
    return "|".join(parts)


def span_pattern(passages: tuple[Passage, ...], max_words: int = SPAN_MAX_WORDS) -> str:
    """A regex that matches exactly the runs of 1..max_words words of `passages`, single-spaced.

    Shared prefixes are written once (a trie), so the pattern grows with the passages' length, not
    with its square.
    """
    return f"^({_alternatives(_span_trie(passages, max_words))})$"


# --8<-- [end:span-pattern]


# --8<-- [start:constrained-signature]
@lru_cache(maxsize=1024)
def constrained_signature(signature: type[dspy.Signature], passages: tuple[Passage, ...]) -> type[dspy.Signature]:
    """`signature` with `citations` limited to the ids of `passages` and `answer` to a span of their words.

    Cached on the passages, so a question asked again costs no new schema (and the adapter's schema
    cache, keyed by signature class, hits too).
    """
    if not passages:
        return signature
    ids = list(dict.fromkeys(p.id for p in passages))
    return signature.with_updated_fields(
        "citations", **{RESPONSE_SCHEMA_KEY: {"items": {"type": "string", "enum": ids}}}
    ).with_updated_fields("answer", **{RESPONSE_SCHEMA_KEY: {"pattern": span_pattern(passages)}})


# --8<-- [end:constrained-signature]
