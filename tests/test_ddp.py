"""Data-parallel Step-DPO: two real torchrun processes (gloo, CPU) against one process, same global batch.

The DDP run must end with the single-process weights and log the same losses, with rank 0 alone
writing files; sharding is checked as pure logic.
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from treesearch.train import StepDPOConfig, train_step_dpo
from treesearch.train.data import loss_norm
from treesearch.train.ddp import DistContext, launch, setup, shard

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def make_pairs(tok, n: int, seed: int = 0) -> list[dict]:
    """Chosen = the reference solution's next step, rejected = that step with its first number changed."""
    from tasks.arithmetic import ArithmeticTask
    from treesearch.prompting import render_prompt

    rng = random.Random(seed)
    out = []
    for pr in ArithmeticTask().problems("train", n, seed=seed, n_ops=2):
        steps = pr.solution.split("\n")
        k = rng.randrange(len(steps))
        m = re.search(r"\d+", steps[k])
        bad = steps[k][: m.start()] + str(int(m.group()) + rng.randint(1, 9)) + steps[k][m.end():]
        last = k == len(steps) - 1
        out.append({"prompt": render_prompt(tok, pr.prompt) + "".join(s + "\n" for s in steps[:k]),
                    "chosen": steps[k] + ("" if last else "\n"), "rejected": bad + ("" if last else "\n"),
                    "chosen_eos": last, "rejected_eos": last})
    return out


def test_shards_are_disjoint_ordered_slices_covering_the_batch():
    idx = np.array([7, 3, 9, 1, 4])
    for world in (1, 2, 3, 5):
        parts = [shard(idx, r, world) for r in range(world)]
        assert all(w == 1.0 for _, w in parts)
        assert np.concatenate([p for p, _ in parts]).tolist() == idx.tolist()  # same order, each pair once
        assert max(len(p) for p, _ in parts) - min(len(p) for p, _ in parts) <= 1
    # a micro-batch smaller than the world: the idle rank runs a weight-0 stand-in
    assert [(p.tolist(), w) for p, w in (shard(np.array([5]), r, 2) for r in range(2))] == [([5], 1.0), ([5], 0.0)]


def test_single_process_context_and_norm():
    ctx = setup("cpu")
    assert ctx == DistContext(device="cpu") and not ctx.active and ctx.is_main
    assert ctx.all_true(True) and not ctx.all_true(False)

    class TP:
        chosen_ids = [[1, 2], [3], [4, 5, 6]]

    assert loss_norm(TP, [0, 2]) == (2.0, 5.0)


@pytest.mark.parametrize("setting", [
    # global micro-batch 8 over 9 pairs: steps of 8 pairs (4 per rank) and of 1 pair (rank 1 runs a stand-in)
    dict(batch_size=8, grad_accum=1, rpo_alpha=0.5, learning_rate=5e-4),
    # 2 micro-batches of 4 per step (gradients all-reduced once per step), a LoRA adapter
    dict(batch_size=4, grad_accum=2, lora=True, lora_r=4, learning_rate=2e-3),
    # FSDP2: weights, gradients and AdamW state sharded over the 2 ranks, gradient checkpointing,
    # 2 micro-batches per step (gradients reduce-scattered after each), RPO's per-token term
    dict(batch_size=4, grad_accum=2, rpo_alpha=0.5, learning_rate=5e-4, sharding="fsdp",
         gradient_checkpointing=True),
], ids=["full-rpo", "lora-accum", "fsdp-ckpt-accum"])
def test_two_ranks_match_one_process_on_the_same_global_batch(tmp_path, setting):
    from treesearch.policy import load_policy

    model, tok = load_policy("embedded", device="cpu", dtype="float32")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pairs_path = tmp_path / "pairs.jsonl"
    pairs_path.write_text("".join(json.dumps(p) + "\n" for p in make_pairs(tok, 9)))
    cfg = StepDPOConfig(epochs=1, warmup_ratio=0.0, save_steps=1, progress=False, device="cpu", **setting)

    one = train_step_dpo(model, pairs_path, cfg, tmp_path / "one", tokenizer=tok)  # one process: no sharding
    info = launch("embedded", pairs_path, cfg, tmp_path / "two", nproc=2, env={"OMP_NUM_THREADS": "1"}, timeout=300)

    assert one.steps == info["steps"] == 2
    log = (tmp_path / "two" / "launch.log").read_text()
    assert '"world_size": 2' in log  # rank 0's summary: both processes trained
    held = info["metrics"]["train/params_on_rank0"] / one.metrics["train/params_on_rank0"]
    assert held == pytest.approx(0.5, abs=0.01) if setting.get("sharding") == "fsdp" else held == 1.0
    from transformers import AutoModelForCausalLM

    two = AutoModelForCausalLM.from_pretrained(tmp_path / "two" / "model").state_dict()
    mine = one.model.state_dict()
    assert two.keys() == mine.keys()
    moved = max((mine[k] - before[k]).abs().max().item() for k in mine)
    diff = max((mine[k] - two[k]).abs().max().item() for k in mine)
    print(f"{setting}: max |weight change| {moved:.2e}, max |1 process - 2 ranks| {diff:.2e}")
    # AdamW's first steps are ~lr·sign(g), so a weight whose gradient is ~0 amplifies summation-order
    # noise up to lr: the learning rates here keep that well under the tolerance
    assert moved > 1e-4, moved  # training did change the weights ...
    assert diff < 1e-5, diff  # ... identically in both runs

    # the logged statistics are the global micro-batch's, written once (rank 0), per step
    m1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in m2] == [1, 2]
    print(f"losses 1 process {[a['loss'] for a in m1]}, 2 ranks {[b['loss'] for b in m2]}")
    for a, b in zip(m1, m2):
        assert a.keys() == b.keys()
        for key in ("loss", "dpo_loss", "rewards/chosen", "rewards/accuracy", "rewards/margin", "grad_norm", "lr"):
            assert b[key] == pytest.approx(a[key], abs=1e-5, rel=1e-5), key
        if "nll" in a:
            assert b["nll"] == pytest.approx(a["nll"], abs=1e-5, rel=1e-5)
    # the reference pass was split over the ranks and summed: the same values as one process
    r1 = torch.load(tmp_path / "one" / "ref_logps.pt")
    r2 = torch.load(tmp_path / "two" / "ref_logps.pt")
    assert torch.allclose(r1["chosen"], r2["chosen"], atol=1e-6)
    assert torch.allclose(r1["rejected"], r2["rejected"], atol=1e-6)
    # only rank 0 wrote: no stray temporary directories of the other rank, one checkpoint
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        ["checkpoint-1", "launch.log", "launch_config.yaml", "metrics.jsonl", "model", "ref_logps.pt"])


def test_script_entry_point_runs():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "ddp_train.py"), "--help"], capture_output=True,
                         text=True, check=True)
    assert "--pairs" in out.stdout


def test_launch_reports_bad_input_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="pairs file does not exist"):
        launch("embedded", tmp_path / "missing.jsonl", StepDPOConfig(), tmp_path / "out", nproc=2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "chosen": "y"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing required field 'rejected'"):
        launch("embedded", bad, StepDPOConfig(), tmp_path / "out", nproc=2)
    ok = tmp_path / "ok.jsonl"
    ok.write_text('{"prompt": "x", "chosen": "y", "rejected": "z"}\n')
    with pytest.raises(ValueError, match="no-such-policy: checkpoint directory does not exist"):
        launch(str(tmp_path / "no-such-policy"), ok, StepDPOConfig(), tmp_path / "out", nproc=2)
    # a failure inside the ranks (corrupt weights) names its cause, not just torchrun's exit summary
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(RuntimeError, match=r"torchrun exited with 1: \S*PolicyError: .*broken: cannot load"):
        launch(str(broken), ok, StepDPOConfig(device="cpu", progress=False), tmp_path / "out", nproc=2, timeout=120)


def test_fsdp_bf16_master_run_resumes_to_the_same_weights(tmp_path):
    """FSDP2 with bf16 compute over fp32 shards (the master weights): a run resumed from its step-1
    checkpoint (bf16 model file + fp32 values and AdamW state in optimizer.pt) ends where the
    uninterrupted run ends."""
    import shutil

    from safetensors.torch import load_file

    from treesearch.policy import load_policy

    _, tok = load_policy("embedded", device="cpu", dtype="float32")
    pairs_path = tmp_path / "pairs.jsonl"
    pairs_path.write_text("".join(json.dumps(p) + "\n" for p in make_pairs(tok, 8)))
    cfg = StepDPOConfig(epochs=1, batch_size=4, warmup_ratio=0.0, save_steps=1, progress=False, device="cpu",
                        learning_rate=1e-3, sharding="fsdp", dtype="bfloat16", master_weights=True)
    env = {"OMP_NUM_THREADS": "1"}
    launch("embedded", pairs_path, cfg, tmp_path / "a", nproc=2, env=env, timeout=300)
    ckpt = tmp_path / "a" / "checkpoint-1"
    assert {v.dtype for v in load_file(str(ckpt / "model.safetensors")).values()} == {torch.bfloat16}
    assert all(v.dtype == torch.float32 for v in torch.load(ckpt / "optimizer.pt")["master_full"].values())
    b = tmp_path / "b"
    b.mkdir()
    shutil.copytree(ckpt, b / "checkpoint-1")
    shutil.copy(tmp_path / "a" / "ref_logps.pt", b / "ref_logps.pt")
    launch("embedded", pairs_path, cfg, b, nproc=2, env=env, timeout=300)
    assert [json.loads(x)["step"] for x in (b / "metrics.jsonl").read_text().splitlines()] == [2]  # resumed at 1
    wa = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    wb = load_file(str(b / "model" / "model.safetensors"))
    before = load_file(str(ckpt / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], before[k]) for k in wa)  # step 2 did change the weights
