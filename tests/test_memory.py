"""The memory estimate: its formula on known shapes, the one-line warning before any weights load,
and the docs table being the formula's output."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from treesearch.train import StepDPOConfig, memory, train_step_dpo

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
GiB = 2 ** 30


def test_parameter_count_of_known_shapes():
    # Qwen2.5-7B is 7.6B parameters, Qwen2.5-1.5B 1.5B (norms and biases left out: < 0.1%)
    assert memory.known_shape("Qwen2.5-7B").params == pytest.approx(7.62e9, rel=0.01)
    assert memory.known_shape("Qwen2.5-1.5B").params == pytest.approx(1.54e9, rel=0.01)


def test_shape_from_a_loaded_model_counts_its_parameters():
    from treesearch.policy import load_policy

    model, _ = load_policy("embedded", device="cpu", dtype="float32")
    exact = memory.ModelShape.from_model(model)
    from_config = memory.ModelShape.from_hf_config(model.config)
    assert exact.params == sum(p.numel() for p in model.parameters())
    assert from_config.params == pytest.approx(exact.params, rel=0.01)  # the formula misses only the norms


def test_options_shrink_the_right_parts():
    shape = memory.known_shape("Qwen2.5-7B")
    base = StepDPOConfig()
    full = memory.estimate(shape, base, world=8, rows=1, width=2048)
    # fp32 AdamW training replicated: 16 bytes per parameter before activations
    assert full.parts["weights"] + full.parts["grads"] + full.parts["optimizer"] == 16 * shape.params
    ckpt = memory.estimate(shape, dataclasses.replace(base, gradient_checkpointing=True), world=8, rows=1, width=2048)
    assert ckpt.parts["activations"] < full.parts["activations"] / 10
    fsdp = memory.estimate(shape, dataclasses.replace(base, sharding="fsdp", dtype="bfloat16"), world=8, rows=1,
                           width=2048)
    assert fsdp.parts["optimizer"] == full.parts["optimizer"] / 8  # sharded over 8 ranks
    pure = memory.estimate(shape, dataclasses.replace(base, dtype="bfloat16", master_weights=False), rows=1,
                           width=2048)
    assert pure.parts["weights"] + pure.parts["grads"] + pure.parts["optimizer"] == 8 * shape.params
    lora = memory.estimate(shape, dataclasses.replace(base, lora=True, dtype="bfloat16"), rows=1, width=2048)
    assert lora.parts["optimizer"] < 0.01 * full.parts["optimizer"]
    # the chunked log-probs cost a constant, not tokens × vocabulary
    long = memory.estimate(shape, base, rows=8, width=2048)
    assert long.parts["logits"] == full.parts["logits"] < 0.5 * GiB


def test_check_names_the_options_that_fit():
    shape = memory.known_shape("Qwen2.5-7B")
    line = memory.check(shape, StepDPOConfig(), world=8, rows=1, width=2048, packed=True, device="cuda:0",
                        available=80 * GiB)
    assert line is not None and "\n" not in line
    assert line.startswith("warning: estimated peak memory 126.9 GiB per device")
    assert "exceeds cuda:0's 80.0 GiB" in line
    assert "sharding=fsdp dtype=bfloat16 gradient_checkpointing=true (19.3 GiB)" in line
    assert memory.check(shape, StepDPOConfig(sharding="fsdp", dtype="bfloat16", gradient_checkpointing=True),
                        world=8, rows=1, width=2048, packed=True, device="cuda:0", available=80 * GiB) is None


def test_trainer_warns_before_loading_weights(tmp_path, monkeypatch, capsys):
    """A run estimated over the device's memory prints the one-line warning, and it does so before
    the weights load (here the weight loading itself is made to fail)."""
    from treesearch.train import trainer

    monkeypatch.setattr(memory, "device_bytes", lambda device, local_world=1: 0.5 * GiB)

    def no_weights(*a, **k):
        raise RuntimeError("weights would load now")

    monkeypatch.setattr(trainer, "_load_model", no_weights)
    pairs = [{"prompt": "Q: 1+1=?\n", "chosen": "2\n", "rejected": "3\n"}] * 2
    with pytest.raises(RuntimeError, match="weights would load now"):
        train_step_dpo("embedded", pairs, StepDPOConfig(progress=False, device="cpu"), tmp_path / "out")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train_step_dpo: warning: estimated peak memory")
    assert "exceeds cpu's 0.5 GiB" in err[0] and "options that would fit:" in err[0]


def test_docs_table_is_the_formula():
    table = memory.table()
    assert table in (ROOT / "docs" / "scaling.md").read_text(), "docs/scaling.md: regenerate the table with " \
        "python -m treesearch.train.memory"
