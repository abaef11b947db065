"""Weight optimization on the CPU: the exporter's tensor layout and the cancel path.

The whole path (labelled traces, LoRA steps, export, serving, a registered version answering with its
adapter) runs as a real job in test_real_model.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from optimizer_worker.finetune.gguf_export import gguf_tensors, permute_rows


def test_only_the_query_and_key_b_matrices_are_permuted() -> None:
    b = np.arange(12, dtype=np.float32).reshape(6, 2)  # 6 output rows: one head of 6, or three of 2
    adapter = {
        "base_model.model.model.layers.3.self_attn.q_proj.lora_B.weight": b,
        "base_model.model.model.layers.3.self_attn.k_proj.lora_B.weight": b,
        "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight": b.T,
        "base_model.model.model.layers.3.mlp.down_proj.lora_B.weight": b,
    }
    tensors = gguf_tensors(adapter, n_head=1, n_kv_head=3)
    # One head of 6 rows: the halves [0 1 2 | 3 4 5] interleave to 0 3 1 4 2 5.
    assert tensors["blk.3.attn_q.weight.lora_b"][:, 0].tolist() == [0, 6, 2, 8, 4, 10]
    np.testing.assert_array_equal(tensors["blk.3.attn_k.weight.lora_b"], permute_rows(b, 3))
    np.testing.assert_array_equal(tensors["blk.3.attn_q.weight.lora_a"], b.T)
    np.testing.assert_array_equal(tensors["blk.3.ffn_down.weight.lora_b"], b)


def test_a_tensor_that_is_not_a_llama_projection_is_refused() -> None:
    with pytest.raises(ValueError, match="not a LoRA matrix"):
        gguf_tensors({"base_model.model.lm_head.lora_A.weight": np.zeros((2, 2))}, 1, 1)


def test_a_cancel_reaches_the_training_thread_as_an_exception_the_training_job_reports() -> None:
    """DSPy's TrainingJob thread reports an `Exception` as the job's result; a `BaseException` (JobAborted)
    would end the thread and leave `BootstrapFinetune` waiting forever."""
    from types import SimpleNamespace

    from optimizer_worker.errors import JobAborted
    from optimizer_worker.pipeline import training_reporter
    from optimizer_worker.progress import Progress, TrainingStopped

    progress = Progress()
    report = training_reporter(progress, SimpleNamespace(info=SimpleNamespace(run_id="run-1")))
    report("dequantizing", {})
    assert progress.stage == "dequantizing"
    progress.abort = JobAborted("cancelled", "cancelled on request")
    with pytest.raises(TrainingStopped, match="cancelled on request") as stopped:
        report("training", {"step": 1, "steps": 4, "loss": 1.0})
    assert isinstance(stopped.value, Exception)
