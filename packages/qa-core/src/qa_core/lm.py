"""Build the DSPy language model and adapter from settings.

Any LiteLLM/OpenAI-compatible endpoint works. The default is the bundled local llama.cpp server, which
DSPy does not know: we declare it as a provider so DSPy sends each signature's JSON schema, and the
server turns the schema into a grammar that constrains decoding.
"""

from __future__ import annotations

import threading

import dspy
from dspy.lm15 import (
    AccessPolicy,
    EndpointSupport,
    ModelSupport,
    OpenAIChatCompat,
    ProviderDefinition,
    register_provider,
)

from qa_core.adapters import JSONAdapter
from qa_core.lm_server import ADAPTER_NAME, ADAPTER_SEPARATOR
from qa_core.settings import CoreSettings

LOCAL_PROVIDER = "llamacpp"
_registered = threading.Lock()


# --8<-- [start:register-provider]
def register_local_provider(default_base_url: str = "http://127.0.0.1:8080/v1") -> None:
    """Declare the llama.cpp server to DSPy's native LM engine, once per process.

    The declaration states that models behind it honour a response schema, which is what makes
    `JSONAdapter` send `response_format: {"type": "json_schema", ...}` instead of plain JSON mode.
    """
    with _registered:
        access = AccessPolicy(
            provider=LOCAL_PROVIDER,
            supports=EndpointSupport(complete=True, stream=True, models=True),
            auth_modes=("bearer",),
            env_keys=("LM_API_KEY",),
            base_url=default_base_url,
        )
        definition = ProviderDefinition.chat(
            access,
            # llama.cpp speaks the same Chat Completions dialect as vLLM.
            compat=OpenAIChatCompat.preset("vllm"),
            note="llama-cpp-python server with JSON-schema grammars",
        )
        register_provider(definition, supports=ModelSupport(response_schema=True))


# --8<-- [end:register-provider]


# --8<-- [start:build-lm]
def build_lm(settings: CoreSettings, lm_class: type[dspy.LM] = dspy.LM) -> dspy.LM:
    """The LM every program call goes through; one instance per process is enough.

    `lm_class` lets a service add behaviour around every call (qa-api times them) without DSPy callbacks.
    """
    if settings.lm_model.startswith(f"{LOCAL_PROVIDER}/"):
        register_local_provider()
    assert settings.lm_api_key is not None  # the settings validator fills the dev placeholder
    return lm_class(
        settings.lm_model,
        api_base=settings.lm_api_base or None,
        # Local servers need a non-empty key; hosted ones need the real one.
        api_key=settings.lm_api_key.get_secret_value(),
        temperature=settings.lm_temperature,
        max_tokens=settings.lm_max_tokens,
        timeout=settings.lm_timeout_s,
        num_retries=settings.lm_num_retries,
        cache=settings.lm_cache,
    )


# --8<-- [start:bind-tuned]
def adapter_of(model: str) -> str | None:
    """`llamacpp/smollm2-135m-instruct+job-1a2b` -> `job-1a2b`; None for a model without an adapter."""
    _, separator, adapter = model.partition(ADAPTER_SEPARATOR)
    return adapter if separator else None


def bind_tuned_lms(program: dspy.Module, settings: CoreSettings, lm_class: type[dspy.LM] = dspy.LM) -> None:
    """Give each predictor whose saved state names a tuned model a working LM for it.

    A fine-tuned version saves its model name (`<LM_MODEL>+<adapter>`), never a URL or a key: DSPy
    drops the URL on load, and the key belongs to whoever serves it. The LM is rebuilt from this
    service's settings with that model name. A state naming any other model is refused, so a
    registered version cannot send this deployment's key to an endpoint it did not choose.
    """
    base = settings.lm_model.partition(ADAPTER_SEPARATOR)[0]
    for predictor in program.predictors():
        if predictor.lm is None:
            continue
        model = predictor.lm.model
        named, tuned, adapter = model.partition(ADAPTER_SEPARATOR)
        if named != base or (tuned and not ADAPTER_NAME.fullmatch(adapter)):
            raise ValueError(f"program state names the LM {model!r}; this deployment serves {base!r} and its adapters")
        # The base model itself: use the LM of the call's context, like an untuned program.
        predictor.lm = build_lm(settings.model_copy(update={"lm_model": model}), lm_class) if tuned else None


# --8<-- [end:bind-tuned]


def build_adapter(settings: CoreSettings) -> dspy.Adapter:
    """JSON with a schema when the server can constrain decoding; plain chat markers otherwise.

    The chat adapter's silent fallback to JSON is off, so a parse failure is counted, not hidden.
    """
    if settings.lm_structured_output:
        return JSONAdapter()
    return dspy.ChatAdapter(use_json_adapter_fallback=False)


def configure_dspy(settings: CoreSettings) -> dspy.LM:
    """Configure DSPy's process-wide defaults. Call once, at import time, in the main thread."""
    lm = build_lm(settings)
    dspy.configure(lm=lm, adapter=build_adapter(settings))
    return lm


# --8<-- [end:build-lm]
