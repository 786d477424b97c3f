"""The small trainers' optimizer step (`train.precision.AdamWStep`) and checkpointing toggle, on real torch
and a real transformers model."""
import pytest
import torch

from treesearch.train.precision import AdamWStep, checkpointing


def test_bf16_steps_accumulate_in_the_fp32_masters_below_bf16_resolution():
    """lr 1e-4 moves a weight of 1 by far less than bf16's spacing there (2^-7): plain bf16 AdamW loses every
    step, the masters keep them and the rounded weight moves once they add up. Gradients are cleared after
    each step, and a step at lr 0 (the lr argument) changes nothing."""
    def run(bf16_masters):
        lin = torch.nn.Linear(4, 1, bias=False).to(torch.bfloat16)
        torch.nn.init.ones_(lin.weight)
        opt = AdamWStep(lin, lr=1e-4, bf16=bf16_masters, clip=1.0)
        for _ in range(60):
            lin.weight.sum().backward()
            opt.step()
            assert lin.weight.grad is None
        return lin, opt

    plain, _ = run(False)
    assert torch.all(plain.weight == 1.0)  # every 1e-4 step rounded away
    kept, opt = run(True)
    assert opt.master.params[0].dtype == torch.float32
    assert float(opt.master.params[0].detach()[0, 0]) == pytest.approx(1 - 60e-4, abs=2e-4)
    assert torch.all(kept.weight < 1.0) and kept.weight.dtype == torch.bfloat16
    before = opt.master.params[0].detach().clone()
    kept.weight.sum().backward()
    opt.step(lr=0.0)
    assert torch.equal(opt.master.params[0], before)


def test_checkpointing_is_on_inside_the_block_only():
    from treesearch.policy import load_policy

    model, _ = load_policy("embedded", device="cpu")  # its own copy: the block turns the model's KV cache off
    with checkpointing(model, enabled=False):
        assert not model.is_gradient_checkpointing
    with pytest.raises(RuntimeError):
        with checkpointing(model):
            assert model.is_gradient_checkpointing and model.config.use_cache is False
            raise RuntimeError("a failing step")
    assert not model.is_gradient_checkpointing  # turned off even when the block raised
