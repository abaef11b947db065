"""Write a PEFT LoRA adapter of a Llama-architecture model as a llama.cpp LoRA GGUF file.

This is what llama.cpp's `convert_lora_to_gguf.py` does for Llama models, in the few lines that model
needs: rename each LoRA matrix to llama.cpp's tensor name, apply the row permutation llama.cpp's
rotary embedding expects to the query and key projections, and write the adapter metadata. The
`gguf` package on PyPI writes the file, so no llama.cpp source tree is needed at training time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

# PEFT's module name (under model.layers.N) -> llama.cpp's tensor name (under blk.N).
LLAMA_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
_PEFT_KEY = re.compile(r"(?:.*\.)?layers\.(\d+)\.(.+)\.lora_([AB])\.weight$")


# --8<-- [start:permute]
def permute_rows(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's order of a query/key projection's output rows (its `LlamaModel.permute`).

    Hugging Face Llama checkpoints store each head's rotary halves one after the other; llama.cpp
    interleaves them. For a LoRA update B @ A only B's rows are output rows, so only B is permuted.
    """
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


# --8<-- [end:permute]


def gguf_tensors(adapter: dict[str, np.ndarray], n_head: int, n_kv_head: int) -> dict[str, np.ndarray]:
    """The adapter's matrices under llama.cpp's names, q/k B matrices permuted."""
    tensors: dict[str, np.ndarray] = {}
    for key, value in adapter.items():
        match = _PEFT_KEY.match(key)
        if match is None or match.group(2) not in LLAMA_TENSORS:
            raise ValueError(f"adapter tensor {key!r} is not a LoRA matrix of a Llama projection")
        layer, module, side = match.groups()
        if side == "B" and module == "self_attn.q_proj":
            value = permute_rows(value, n_head)
        elif side == "B" and module == "self_attn.k_proj":
            value = permute_rows(value, n_kv_head)
        tensors[f"blk.{layer}.{LLAMA_TENSORS[module]}.weight.lora_{side.lower()}"] = value
    return tensors


# --8<-- [start:export]
def export_lora_gguf(adapter_dir: Path, base_config: dict, out_path: Path) -> Path:
    """`adapter_dir` (PEFT's `save_pretrained` output) as a llama.cpp adapter at `out_path`, in f16."""
    import gguf
    from safetensors.numpy import load_file

    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if base_config.get("model_type") != "llama":
        raise ValueError(f"only Llama-architecture models are supported, not {base_config.get('model_type')!r}")
    n_head = base_config["num_attention_heads"]
    n_kv_head = base_config.get("num_key_value_heads", n_head)
    tensors = gguf_tensors(load_file(str(adapter_dir / "adapter_model.safetensors")), n_head, n_kv_head)

    # Written beside the target, then renamed: the LM server watches the folder and must never see half a file.
    partial = out_path.with_name(f".{out_path.name}.partial")
    writer = gguf.GGUFWriter(str(partial), arch="llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(adapter_config["lora_alpha"]))
    for name in sorted(tensors):
        writer.add_tensor(name, tensors[name].astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(out_path)
    return out_path


# --8<-- [end:export]
