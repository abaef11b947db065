"""Fine-tuning through DSPy's own interface: a `Provider` that LoRA-trains the bundled model on the CPU.

`dspy.BootstrapFinetune` formats the training conversations with the program's adapter and calls
`lm.finetune(...)`; the LM hands the work to its provider, which runs it in a `TrainingJob` thread
and returns the name of the tuned model. Here that name is the LM server's alias for the adapter:
`<base alias>+<adapter name>`, which the LM server serves from its adapters folder.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import dspy
from dspy.clients.provider import Provider, TrainingJob
from dspy.clients.utils_finetune import TrainDataFormat

from optimizer_worker.errors import FinetuneUnavailable
from optimizer_worker.finetune.gguf_export import export_lora_gguf
from optimizer_worker.finetune.lora import TrainBudget, TrainResult, dequantized_base, train_lora
from optimizer_worker.settings import Settings
from qa_core.lm import LOCAL_PROVIDER, build_lm
from qa_core.lm_server import ADAPTER_SEPARATOR, MODEL_ALIAS


# --8<-- [start:training-job]
class LoRATrainingJob(TrainingJob):
    """A training job whose `status()` says which stage it is in and how the loss goes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stage = "queued"
        self.losses: list[float] = []
        self.result_details: TrainResult | None = None

    def status(self) -> dict[str, Any]:
        return {"stage": self.stage, "steps": len(self.losses), "loss": self.losses[-1] if self.losses else None}


# --8<-- [end:training-job]


# --8<-- [start:provider]
class LoRAProvider(Provider):
    """LoRA fine-tuning of a local GGUF model, exported as a llama.cpp adapter into `adapters_dir`.

    `on_event(stage, detail)` reports each stage (`dequantizing`, `training` with step and loss,
    `exporting`, `done`) to the job's progress.
    """

    def __init__(
        self,
        gguf_path: Path,
        adapters_dir: Path,
        work_dir: Path,
        adapter_name: str,
        budget: TrainBudget,
        on_event: Callable[[str, dict[str, Any]], None] = lambda stage, detail: None,
        lm_api_base: str | None = None,
    ) -> None:
        super().__init__()
        self.lm_api_base = lm_api_base
        self.finetunable = True
        self.TrainingJob = LoRATrainingJob
        self.gguf_path, self.adapters_dir, self.work_dir = gguf_path, adapters_dir, work_dir
        self.adapter_name, self.budget, self.on_event = adapter_name, budget, on_event

    def finetune(  # type: ignore[override]  # an instance method: the provider carries its settings
        self,
        job: LoRATrainingJob,
        model: str,
        train_data: list[dict[str, Any]],
        train_data_format: TrainDataFormat | str | None,
        train_kwargs: dict[str, Any] | None = None,
    ) -> str:
        if train_data_format not in (TrainDataFormat.CHAT, TrainDataFormat.CHAT.value):
            raise ValueError(f"LoRAProvider trains on chat conversations, not {train_data_format!r}")
        job.stage = "dequantizing"
        self.on_event(job.stage, {})
        base_dir = dequantized_base(self.gguf_path, self.work_dir)

        def on_step(step: int, steps: int, loss: float) -> None:
            job.losses.append(loss)
            self.on_event("training", {"step": step, "steps": steps, "loss": loss})

        job.stage = "training"
        peft_dir = self.work_dir / f"{self.adapter_name}-peft"
        # `BootstrapFinetune(train_kwargs=...)` can override the provider's budget, knob by knob.
        budget = replace(self.budget, **(train_kwargs or {}))
        job.result_details = train_lora(train_data, base_dir, peft_dir, budget, on_step)

        job.stage = "exporting"
        self.on_event(job.stage, {})
        self.adapters_dir.mkdir(parents=True, exist_ok=True)
        base_config = json.loads((base_dir / "config.json").read_text())
        export_lora_gguf(peft_dir, base_config, self.adapters_dir / f"{self.adapter_name}.gguf")
        if self.lm_api_base is not None:
            wait_until_served(self.lm_api_base, adapter_model(MODEL_ALIAS, self.adapter_name))
        job.stage = "done"
        self.on_event(job.stage, {"examples": job.result_details.examples, "seconds": job.result_details.seconds})
        return adapter_model(model, self.adapter_name)


def adapter_model(base_model: str, adapter_name: str) -> str:
    """The model name of `base_model` with an adapter: `llamacpp/smollm2-135m-instruct+job-1a2b`."""
    return f"{base_model.split(ADAPTER_SEPARATOR, 1)[0]}{ADAPTER_SEPARATOR}{adapter_name}"


def wait_until_served(lm_api_base: str, model: str, timeout_s: float = 30.0) -> None:
    """Wait until the LM server lists `model`: it picks a new adapter file up within a second."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(f"{lm_api_base}/models", timeout=5) as r:
            if model in {entry.get("id") for entry in json.load(r).get("data", [])}:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the LM server at {lm_api_base} does not serve {model} after {timeout_s:.0f} s: "
                "does it read the same LM_SERVER_ADAPTERS_DIR?"
            )
        time.sleep(0.2)


# --8<-- [end:provider]


def adapter_name(job_id: str) -> str:
    """A job's adapter is named after it, so a served model name leads back to the job that trained it."""
    return f"job-{job_id.replace('-', '')[:12]}"


def check_can_finetune(settings: Settings) -> None:
    """Fine-tuning trains the local GGUF model and hands the adapter to the LM server: both must be there.

    Called when a weight job is submitted (a clear 422) and again when the worker plans it.
    """
    if settings.lm_server_adapters_dir is None:
        raise FinetuneUnavailable("set LM_SERVER_ADAPTERS_DIR to the folder the LM server serves adapters from")
    if settings.gguf_path is None or not settings.lm_model.startswith(f"{LOCAL_PROVIDER}/"):
        raise FinetuneUnavailable(
            f"fine-tuning trains the local GGUF model; LM_MODEL is {settings.lm_model} and the GGUF file is "
            f"{settings.gguf_path or 'not installed'}"
        )


# --8<-- [start:tunable-lm]
def tunable_lm(settings: Settings, adapter_name: str, on_event: Callable[[str, dict[str, Any]], None]) -> dspy.LM:
    """The job's LM with the LoRA provider attached: what `student.set_lm` gives a weight optimizer.

    The adapter lands in the LM server's adapters folder, so the tuned model can be evaluated (and
    later served) by the same server as soon as it is exported.
    """
    # `optimizers.plan` ran `check_can_finetune` for this job.
    assert settings.gguf_path is not None
    assert settings.lm_server_adapters_dir is not None
    budget = TrainBudget(
        epochs=settings.finetune_epochs,
        rank=settings.finetune_rank,
        max_tokens=settings.finetune_max_tokens,
        learning_rate=settings.finetune_learning_rate,
        accumulation=settings.finetune_accumulation,
        threads=settings.finetune_threads,
    )
    provider = LoRAProvider(
        settings.gguf_path,
        settings.lm_server_adapters_dir,
        settings.finetune_work_dir,
        adapter_name,
        budget,
        on_event,
        settings.lm_api_base,
    )
    lm = build_lm(settings)
    lm.provider = provider
    return lm


# --8<-- [end:tunable-lm]
