"""Clean answer tokens out of a streamed JSON string value.

With `JSONAdapter`, DSPy's StreamListener passes on the raw JSON text of the field: the opening quote,
escape sequences, and, in the last chunk, the closing quote and the start of the next key. A client
wants the answer text only, so we decode the string as it arrives and stop at its closing quote.
"""

from __future__ import annotations

import json

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


# --8<-- [start:json-tokens]
class JsonStringTokens:
    """Feed raw chunks; get back the decoded text of the first JSON string in them, chunk by chunk."""

    def __init__(self) -> None:
        self.state = "before"  # before the opening quote, inside the string, or done after the closing one
        self.pending = ""  # an escape sequence split across chunks

    def feed(self, chunk: str) -> str:
        out: list[str] = []
        for char in chunk:
            if self.state == "before":
                if char == '"':
                    self.state = "inside"
            elif self.state == "inside":
                if self.pending:
                    self.pending += char
                    decoded = self._decode_escape()
                    if decoded is not None:
                        out.append(decoded)
                elif char == "\\":
                    self.pending = char
                elif char == '"':
                    self.state = "done"
                else:
                    out.append(char)
        return "".join(out)

    def _decode_escape(self) -> str | None:
        if self.pending[1] != "u":
            decoded, self.pending = _ESCAPES.get(self.pending[1], self.pending[1]), ""
            return decoded
        if len(self.pending) < 6:
            return None
        decoded, self.pending = json.loads(f'"{self.pending}"'), ""
        return decoded


# --8<-- [end:json-tokens]


class PlainTokens:
    """Chat-format streams are already plain text."""

    def feed(self, chunk: str) -> str:
        return chunk
