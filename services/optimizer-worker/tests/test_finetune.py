"""Weight optimization on the CPU: BootstrapFinetune with the LoRA provider, on a tiny budget."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import numpy as np
import pytest

from optimizer_worker.finetune.gguf_export import gguf_tensors, permute_rows
from qa_core.adapters import JSONAdapter
from qa_core.settings import CoreSettings


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


@pytest.mark.slow
@pytest.mark.lm
@pytest.mark.timeout(1200)
def test_bootstrap_finetune_trains_an_adapter_that_changes_the_answers(tmp_path: Path) -> None:
    """The CI check of the whole weight path: labelled traces -> LoRA on the CPU -> GGUF -> served by llama.cpp."""
    pytest.importorskip("peft")
    from optimizer_worker.finetune.lora import TrainBudget
    from optimizer_worker.finetune.provider import LoRAProvider
    from qa_core.corpus import cached_index
    from qa_core.dataset import load_split
    from qa_core.labels import LabelledTeacher
    from qa_core.lm import build_lm
    from qa_core.metrics import combined_metric
    from qa_core.program import build_program
    from tests.support import processes

    settings = CoreSettings(_env_file=None)
    assert settings.gguf_path is not None
    train = load_split(settings.dataset_dir, "train", limit=4)
    events: list[tuple[str, dict]] = []
    budget = TrainBudget(epochs=3, rank=8, max_tokens=1024, max_examples=4, learning_rate=2e-3, accumulation=2)
    adapters, work = tmp_path / "adapters", tmp_path / "work"
    provider = LoRAProvider(settings.gguf_path, adapters, work, "ci-tiny", budget, lambda s, d: events.append((s, d)))
    student = build_program(settings)
    lm = build_lm(settings)
    lm.provider = provider
    student.set_lm(lm)
    teacher = LabelledTeacher(cached_index(settings.corpus_dir, settings.chunk_words), train)
    optimizer = dspy.BootstrapFinetune(metric=combined_metric, adapter=JSONAdapter(), exclude_demos=True, num_threads=1)
    with dspy.context(adapter=JSONAdapter()):
        tuned = optimizer.compile(student, trainset=train, teacher=teacher)

    losses = [detail["loss"] for stage, detail in events if stage == "training"]
    assert len(losses) == 6  # 3 epochs of 4 conversations, 2 per step
    assert losses[-1] < 0.5 * losses[0], losses
    assert [stage for stage, _ in events if stage != "training"] == ["dequantizing", "exporting", "done"]
    assert (adapters / "ci-tiny.gguf").is_file()
    assert tuned.answer.lm.model == "llamacpp/smollm2-135m-instruct+ci-tiny"
    assert tuned.answer.demos == []
    assert json.loads((work / "ci-tiny-peft" / "training.json").read_text())["losses"] == losses

    # Served by the LM server next to the base model: the tuned weights answer differently.
    with processes.llama_server(LM_SERVER_ADAPTERS_DIR=str(adapters)) as base:
        served = settings.model_copy(update={"lm_api_base": base})
        base_program = build_program(served)
        base_program.answer.demos = []
        tuned_lm = build_lm(served.model_copy(update={"lm_model": tuned.answer.lm.model}))
        tuned.answer.lm = tuned_lm
        with dspy.context(lm=build_lm(served), adapter=JSONAdapter()):
            before = [base_program(question=ex.question).answer for ex in train]
            after = [tuned(question=ex.question).answer for ex in train]
    assert before != after
