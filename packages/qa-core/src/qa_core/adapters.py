"""A JSON adapter whose response schema carries every constraint the signature declares.

DSPy 3.4 builds the response schema from each output field's bare annotation, so a limit declared on a
top-level field (`Annotated[str, StringConstraints(max_length=80)]`, `Field(min_length=1)` on a list)
never reaches the server; limits inside nested types do. For a grammar-constrained local model those
limits are the point: they stop a small model from rambling or citing nothing.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Any

import dspy
from dspy.adapters.json_adapter import _get_structured_outputs_response_format
from dspy.adapters.utils import serialize_for_json
from pydantic import BaseModel, TypeAdapter

from qa_core.decoding import RESPONSE_SCHEMA_KEY

# JSON-schema keywords that express a constraint (not a type); the ones llama.cpp turns into grammar.
CONSTRAINT_KEYWORDS = frozenset(
    {"minLength", "maxLength", "pattern", "minItems", "maxItems", "minimum", "maximum", "enum"}
)


# --8<-- [start:constrained-format]
@lru_cache(maxsize=1024)
def constrained_response_format(signature: type[dspy.Signature]) -> type[BaseModel]:
    """DSPy's response model for `signature`, with each top-level field's constraints put back, and the
    per-call constraints a program attached to the field (`qa_core.decoding`) added.

    Cached per signature class: building a pydantic model per request would cost CPU on every call.
    """
    model = _get_structured_outputs_response_format(signature)
    schema = model.model_json_schema()
    for name, field in signature.output_fields.items():
        properties = schema.get("properties", {})
        if name not in properties:
            continue
        if field.metadata:
            declared = TypeAdapter(Annotated[field.annotation, *field.metadata]).json_schema()
            properties[name].update({k: v for k, v in declared.items() if k in CONSTRAINT_KEYWORDS})
        properties[name].update((field.json_schema_extra or {}).get(RESPONSE_SCHEMA_KEY, {}))
    model.model_json_schema = lambda *args, **kwargs: schema  # the same override DSPy itself uses
    return model


# Named like its parent on purpose: DSPy's StreamListener looks adapters up by class name.
class JSONAdapter(dspy.JSONAdapter):
    """`dspy.JSONAdapter` that sends the full, constrained schema when the LM accepts one."""

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[dspy.Signature]) -> None:
        super()._prepare_response_format(lm, lm_kwargs, signature)
        response_format = lm_kwargs.get("response_format")
        if isinstance(response_format, type) and issubclass(response_format, BaseModel):
            lm_kwargs["response_format"] = constrained_response_format(signature)

    def format_finetune_data(
        self,
        signature: type[dspy.Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
        outputs: dict[str, Any],
    ) -> dict[str, list[Any]]:
        """One training conversation: the served prompt, then the reply as the grammar lets a model write it.

        DSPy 3.4's JSONAdapter leaves this unimplemented. The prompt is `format`'s, the same messages a
        served call sends; the reply is one line of JSON with single spaces (llama.cpp's JSON grammar
        allows no newlines between tokens), with the fields in the signature's order.
        """
        reply = {name: outputs[name] for name in signature.output_fields}
        content = json.dumps(serialize_for_json(reply), ensure_ascii=False)
        return {"messages": [*self.format(signature, demos, inputs), {"role": "assistant", "content": content}]}


# --8<-- [end:constrained-format]
