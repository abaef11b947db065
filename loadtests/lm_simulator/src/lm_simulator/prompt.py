"""Reading DSPy prompts: the output fields the system message asks for, and the inputs of the user message.

Formats follow dspy 3.x ChatAdapter / JSONAdapter (adapters/chat_adapter.py, json_adapter.py, utils.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

_FIELD_LINE = re.compile(r"^\d+\. `(\w+)` \((.*?)\):", re.MULTILINE)
_NOTE_PREFIX = "# note: the value you produce "
_RAW_NOTE = re.compile(r"^\{(\w+)\}\s+# note: the value you produce (.*)$")
# JSONAdapter shows the note inside a JSON string: `  "name": "{name}   # note: ...",`
_JSON_NOTE = re.compile(r'^\s*"\w+":\s*(".*")\s*,?\s*$')
_LEADING_ID = re.compile(r"^\s*\[([^\]\n]{1,200})\]\s*(.*)$", re.DOTALL)
_LINE_ID = re.compile(r"^\[([^\]\n]{1,200})\]\s?(.*)$")

JSON_OUTPUT_MARKER = "Outputs will be a JSON object with the following fields."
JSON_REQUEST_MARKER = "Respond with a JSON object"
_CONTEXT_TEXT = """passages passage context contexts documents docs retrieved snippets sources evidence chunks
search_results retrieved_passages knowledge"""
CONTEXT_NAMES = frozenset(_CONTEXT_TEXT.split())
QUESTION_NAMES = ("question", "query", "q", "prompt", "claim", "request")
_PASSAGE_ID_KEYS = ("id", "pid", "passage_id", "doc_id", "chunk_id")
_PASSAGE_TEXT_KEYS = ("text", "content", "passage", "long_text", "chunk", "body")


@dataclass(slots=True)
class OutputField:
    name: str
    type_name: str  # as DSPy prints it: "str", "list[str]", "Literal['a', 'b']", "Cite", ...
    schema: dict[str, Any] | None = None  # from "must adhere to the JSON schema: {...}"
    choices: tuple[str, ...] = ()  # from "must be one of: a; b" (enums) or Literal notes


@dataclass(slots=True)
class PromptSpec:
    inputs: tuple[str, ...] = ()
    outputs: tuple[OutputField, ...] = ()
    json_mode: bool = False  # JSONAdapter prompt: the answer is a JSON object


@dataclass(slots=True)
class Passage:
    pid: str | None
    text: str


@dataclass(slots=True)
class UserInputs:
    question: str
    passages: list[Passage] = field(default_factory=list)


def message_text(message: Any) -> str:
    """Text of an OpenAI message whose content is a string or a list of content parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        return "\n".join(texts)
    return ""


def _section(text: str, start: str, end: str) -> str:
    i = text.find(start)
    if i < 0:
        return ""
    i += len(start)
    j = text.find(end, i)
    return text[i:] if j < 0 else text[i:j]


def _read_note(line: str) -> tuple[str, str] | None:
    """(field name, note text) of one '# note:' line, in ChatAdapter or JSON-escaped JSONAdapter form."""
    line = line.strip()
    m = _JSON_NOTE.match(line)
    if m:
        try:
            line = orjson.loads(m.group(1))
        except orjson.JSONDecodeError:
            return None
        if not isinstance(line, str):
            return None
    m = _RAW_NOTE.match(line)
    return (m.group(1), m.group(2)) if m else None


def _apply_note(f: OutputField, note: str) -> None:
    if note.startswith("must adhere to the JSON schema: "):
        try:
            schema = orjson.loads(note[len("must adhere to the JSON schema: ") :])
        except orjson.JSONDecodeError:
            return
        if isinstance(schema, dict):
            f.schema = schema
    elif "one of: " in note:
        f.choices = tuple(note.split("one of: ", 1)[1].split("; "))


@lru_cache(maxsize=256)
def parse_system(text: str) -> PromptSpec:
    """Fields of a DSPy system message; cached because a program sends the same one for every request."""
    ins = _section(text, "Your input fields are:", "Your output fields are:")
    inputs = tuple(m.group(1) for m in _FIELD_LINE.finditer(ins))
    outs = _section(text, "Your output fields are:", "All interactions will be structured")
    fields = {m.group(1): OutputField(m.group(1), m.group(2).strip()) for m in _FIELD_LINE.finditer(outs)}
    if _NOTE_PREFIX in text:
        for line in text.splitlines():
            if _NOTE_PREFIX in line and (note := _read_note(line)) and note[0] in fields:
                _apply_note(fields[note[0]], note[1])
    return PromptSpec(inputs=inputs, outputs=tuple(fields.values()), json_mode=JSON_OUTPUT_MARKER in text)


def _headers(text: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of each `[[ ## name ## ]]` line; str.find is much faster than a MULTILINE regex."""
    found, pos = [], 0
    while (i := text.find("[[ ## ", pos)) >= 0:
        j = text.find(" ## ]]", i + 6)
        if j < 0:
            break
        name, end = text[i + 6 : j], j + 6
        own_line = (i == 0 or text[i - 1] == "\n") and (end == len(text) or text[end] == "\n")
        if own_line and name.isidentifier():
            found.append((name, i, end))
            pos = end
        else:
            pos = i + 6
    return found


def parse_input_fields(text: str) -> dict[str, str]:
    """`[[ ## name ## ]]\\nvalue` blocks of a user message, without the trailing format reminder."""
    headers = _headers(text)
    values: dict[str, str] = {}
    for k, (name, _, end) in enumerate(headers):
        last = k + 1 == len(headers)
        value = text[end : len(text) if last else headers[k + 1][1]]
        if last and (cut := value.rfind("\n\nRespond with ")) >= 0:
            value = value[:cut]
        values[name] = value.strip()
    return values


def _split_leading_id(text: str) -> tuple[str | None, str]:
    m = _LEADING_ID.match(text)
    return (m.group(1).strip(), m.group(2).strip()) if m else (None, text.strip())


def _unblob(text: str) -> str:
    # DSPy wraps list items as «text» or «««\n    text\n»»» when the input field is annotated str.
    text = text.strip()
    if text.startswith("«««") and text.endswith("»»»"):
        return "\n".join(line.strip() for line in text[3:-3].strip().splitlines())
    if text.startswith("«") and text.endswith("»"):
        return text[1:-1]
    return text


def _passage_from_item(item: Any) -> Passage | None:
    if isinstance(item, str):
        pid, text = _split_leading_id(item)
        return Passage(pid, text) if text else None
    if isinstance(item, dict):
        text = next((item[k] for k in _PASSAGE_TEXT_KEYS if isinstance(item.get(k), str)), "")
        pid = next((str(item[k]) for k in _PASSAGE_ID_KEYS if item.get(k) is not None), None)
        if pid is None:
            pid, text = _split_leading_id(text)
        return Passage(pid, text) if text else None
    return None if item is None else Passage(None, str(item))


def parse_passages(value: str) -> list[Passage]:
    """Passages from a JSON list (of strings or {id, text} objects) or from `[id] text` lines."""
    value = value.strip()
    if not value or value == "N/A":
        return []
    if value[0] == "[":
        try:
            items = orjson.loads(value)
        except orjson.JSONDecodeError:
            items = None
        if isinstance(items, list):
            return [p for p in map(_passage_from_item, items) if p is not None]
    blocks: list[list[Any]] = []  # [id, lines]
    for line in value.splitlines():
        m = _LINE_ID.match(line)
        if m:
            blocks.append([m.group(1).strip(), [m.group(2)]])
        elif blocks:
            blocks[-1][1].append(line)
        else:
            blocks.append([None, [line]])
    passages = []
    for pid, lines in blocks:
        text = _unblob("\n".join(lines))
        inner_id, inner_text = _split_leading_id(text)
        # DSPy numbers list items "[1] «[doc#2] ...»": the id inside wins over the position.
        if inner_id is not None and (pid is None or pid.isdigit()):
            pid, text = inner_id, inner_text
        if text.strip():
            passages.append(Passage(pid, text.strip()))
    return passages


def _is_context_name(name: str) -> bool:
    return name in CONTEXT_NAMES or name.endswith(("passages", "context", "contexts", "documents", "docs"))


def parse_user(text: str, spec: PromptSpec) -> UserInputs:
    """The question and the passages of the last user message."""
    values = parse_input_fields(text)
    if not values:
        return UserInputs(question=text.strip())
    qname = next((n for n in QUESTION_NAMES if n in values), None)
    if qname is None:  # else the last input field that does not hold context, else the last one
        ordered = [n for n in spec.inputs if n in values] or list(values)
        qname = next((n for n in reversed(ordered) if not _is_context_name(n)), ordered[-1])
    names = [n for n in values if n != qname and _is_context_name(n)] or [n for n in values if n != qname]
    passages = [p for n in names for p in parse_passages(values[n])]
    return UserInputs(question=values[qname], passages=passages)
