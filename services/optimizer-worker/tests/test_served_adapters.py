"""A fine-tuning job's adapter is served by the running LM server as soon as its file exists.

The adapter here is random (no training, so no torch): what is tested is the serving path, the
exporter's file format and the per-request switch between the base weights and the adapter.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from optimizer_worker.finetune.gguf_export import export_lora_gguf
from optimizer_worker.finetune.lora import LORA_TARGETS
from qa_core.lm_server import ADAPTER_SEPARATOR, MODEL_ALIAS
from qa_core.settings import CoreSettings
from tests.support import processes

# SmolLM2-135M: 30 blocks, width 576, MLP 1536, 9 query heads and 3 key/value heads of 64.
SHAPES = {
    "q_proj": (576, 576),
    "k_proj": (192, 576),
    "v_proj": (192, 576),
    "o_proj": (576, 576),
    "gate_proj": (1536, 576),
    "up_proj": (1536, 576),
    "down_proj": (576, 1536),
}
BASE_CONFIG = {"model_type": "llama", "num_attention_heads": 9, "num_key_value_heads": 3}


def random_adapter(folder: Path, out: Path, seed: int, rank: int = 4) -> Path:
    """A PEFT-format adapter with random weights, big enough to change every answer, exported to GGUF."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(30):
        for target in LORA_TARGETS:
            rows, cols = SHAPES[target]
            block = "self_attn" if target.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            prefix = f"base_model.model.model.layers.{layer}.{block}.{target}"
            tensors[f"{prefix}.lora_A.weight"] = rng.normal(0, 0.5, (rank, cols)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.normal(0, 0.5, (rows, rank)).astype(np.float32)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"lora_alpha": 2 * rank, "r": rank}))
    return export_lora_gguf(folder, BASE_CONFIG, out)


def ask(client: httpx.Client, model: str) -> httpx.Response:
    return client.post(
        "/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 12,
            "temperature": 0,
        },
    )


def wait_for_models(client: httpx.Client, count: int, timeout_s: float = 10) -> list[str]:
    """The served model names, once there are `count` of them (the server follows the folder twice a second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        listed = [m["id"] for m in client.get("/models").json()["data"]]
        if len(listed) >= count or time.monotonic() > deadline:
            return listed
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.lm
@pytest.mark.timeout(300)
def test_an_adapter_written_after_start_is_served_without_a_restart(tmp_path: Path) -> None:
    assert CoreSettings(_env_file=None).gguf_path is not None
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    tuned = f"{MODEL_ALIAS}{ADAPTER_SEPARATOR}job-0123456789ab"
    with (
        processes.llama_server(LM_SERVER_ADAPTERS_DIR=str(adapters)) as base_url,
        httpx.Client(base_url=base_url, timeout=60, headers={"Authorization": "Bearer dev"}) as client,
    ):
        base_before = ask(client, MODEL_ALIAS)
        assert base_before.status_code == 200
        missing = ask(client, tuned)
        # A tuned model whose adapter is not there is refused, never answered by the base weights.
        assert missing.status_code == 400, missing.text
        assert "job-0123456789ab" in missing.text

        random_adapter(tmp_path / "peft", adapters / "job-0123456789ab.gguf", seed=0)
        listed = wait_for_models(client, 2)
        assert listed == [MODEL_ALIAS, tuned]
        # Only `<base alias>+<safe name>` reaches the folder: no other alias, no path in the name.
        for other in ("other-model+job-0123456789ab", f"{MODEL_ALIAS}+../adapters/job-0123456789ab"):
            assert ask(client, other).status_code == 400, other
        answers = [ask(client, model) for model in (tuned, MODEL_ALIAS, tuned)]
    assert [r.status_code for r in answers] == [200, 200, 200]
    text = [r.json()["choices"][0]["message"]["content"] for r in answers]
    base_text = base_before.json()["choices"][0]["message"]["content"]
    assert text[0] != base_text  # the adapter changes the weights
    assert text[1] == base_text  # switching back restores the base model exactly
    assert text[2] == text[0]  # and switching again is deterministic
