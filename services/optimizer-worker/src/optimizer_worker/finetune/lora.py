"""LoRA fine-tuning of the bundled model on the CPU: the weight step of BootstrapFinetune and BetterTogether.

The training stack (torch, transformers, peft) is imported inside the functions, so the worker, its
API and its tests import this module without it; only a fine-tuning job pays for loading it.
"""

from __future__ import annotations

import json
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Every projection of every block: attention and MLP.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
END_OF_TURN = "<|im_end|>"


# --8<-- [start:budget]
@dataclass(frozen=True)
class TrainBudget:
    """How much training a job buys. The worker's settings bound each knob (`finetune_*`)."""

    epochs: int = 2
    rank: int = 16
    max_tokens: int = 1024  # longer conversations are left out, never cut: a cut prompt is not a served one
    max_examples: int = 80
    learning_rate: float = 1e-3
    accumulation: int = 8  # conversations per optimizer step; each goes through alone to keep memory low
    threads: int = 2
    seed: int = 0


# --8<-- [end:budget]


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # one per optimizer step
    examples: int = 0
    skipped_too_long: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --8<-- [start:dequantize]
def dequantized_base(gguf_path: Path, cache_dir: Path) -> Path:
    """The GGUF model as a Hugging Face folder (fp32), made once and cached: peft trains on this."""
    target = cache_dir / f"{gguf_path.stem}-hf"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    # The weights are plain fp32 now, but transformers keeps its GGUF quantizer attached, which makes
    # the model "not serializable" and "not trainable". Detach it, as transformers does on dequantize.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)
    return target


# --8<-- [end:dequantize]


# --8<-- [start:encode]
def encode(tokenizer: Any, messages: list[dict[str, str]], max_tokens: int) -> tuple[list[int], list[int]] | None:
    """Token ids and labels for one conversation, as the LM server sees it; None if longer than `max_tokens`.

    The prompt is the model's chat template over the system and user messages with the generation
    prompt, exactly what llama.cpp renders for a served call. The reply follows as the server would
    generate it, and only the reply (with the end-of-turn token) carries a loss.
    """
    *prompt_messages, reply = messages
    if reply["role"] != "assistant":
        raise ValueError("a training conversation ends with the assistant's reply")
    prompt = tokenizer.apply_chat_template(prompt_messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(reply["content"], add_special_tokens=False)["input_ids"]
    reply_ids.append(tokenizer.convert_tokens_to_ids(END_OF_TURN))
    if len(prompt_ids) + len(reply_ids) > max_tokens:
        return None
    return prompt_ids + reply_ids, [-100] * len(prompt_ids) + reply_ids


# --8<-- [end:encode]


# --8<-- [start:train]
def train_lora(
    conversations: list[dict[str, Any]],
    base_dir: Path,
    out_dir: Path,
    budget: TrainBudget,
    on_step: Callable[[int, int, float], None] = lambda step, steps, loss: None,
) -> TrainResult:
    """Train a LoRA adapter on `conversations` ({"messages": [...]}) and save it to `out_dir` (PEFT format).

    Micro-batches of one conversation, `budget.accumulation` per optimizer step; a step's loss is the
    mean over the reply tokens of its conversations. `on_step(step, steps, loss)` reports progress.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    torch.set_num_threads(budget.threads)
    torch.manual_seed(budget.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)

    encoded = [encode(tokenizer, c["messages"], budget.max_tokens) for c in conversations[: budget.max_examples]]
    data = [e for e in encoded if e is not None]
    result = TrainResult(examples=len(data), skipped_too_long=len(encoded) - len(data))
    if not data:
        raise ValueError(f"no training conversation fits in {budget.max_tokens} tokens")

    lora = LoraConfig(r=budget.rank, lora_alpha=2 * budget.rank, lora_dropout=0.0, target_modules=list(LORA_TARGETS))
    model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=budget.learning_rate)
    order = random.Random(budget.seed)
    batches = [
        data[i : i + budget.accumulation]
        for epoch_data in (order.sample(data, len(data)) for _ in range(budget.epochs))
        for i in range(0, len(epoch_data), budget.accumulation)
    ]
    model.train()
    for step, batch in enumerate(batches, start=1):
        reply_tokens = sum(sum(label != -100 for label in labels) for _, labels in batch)
        loss = 0.0
        for ids, labels in batch:
            weight = sum(label != -100 for label in labels) / reply_tokens
            part = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss * weight
            part.backward()
            loss += part.item()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        result.losses.append(loss)
        on_step(step, len(batches), loss)
    model.save_pretrained(out_dir)
    (out_dir / "training.json").write_text(json.dumps({"budget": budget.__dict__, "losses": result.losses}))
    result.seconds = time.perf_counter() - started
    result.peak_rss_mb = peak_rss_mb()
    return result


# --8<-- [end:train]
