"""Step-DPO checkpoints on disk: what a checkpoint holds, written atomically, pruned, read back.

    checkpoint-N/
        model.safetensors, config.json   the model in its training dtype (bf16 or fp32); under LoRA
                                         adapter_model.safetensors + adapter_config.json instead
        tokenizer files
        trainer_state.pt                 run id, step, scheduler, RNG, config (+ the LoRA adapter state)
        optimizer.pt                     AdamW state, and the fp32 master weights of a bf16 model
                                         (`MasterWeights`, or the fp32 FSDP shards gathered); only the
                                         newest checkpoint keeps it, since only it is resumed from

The final model directory has the model and tokenizer alone. Under FSDP every rank joins the
gathering of the weights and optimizer state and rank 0 writes.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

STATE = "trainer_state.pt"
OPTIM = "optimizer.pt"


def atomic_dir(dst: Path, write) -> None:
    """Call write(tmp_dir), then move tmp_dir to `dst` (replacing it), so readers never see half a directory."""
    tmp = dst.parent / f".tmp-{dst.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    if dst.exists():
        old = dst.parent / f".old-{dst.name}-{os.getpid()}"
        os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old)
    else:
        os.replace(tmp, dst)


def list_checkpoints(out: Path, *, resumable: bool = True) -> list[tuple[int, Path]]:
    """(step, dir) of the checkpoints under `out`, oldest first; resumable: only those with optimizer state."""
    found = []
    for p in out.glob("checkpoint-*"):
        tail = p.name.removeprefix("checkpoint-")
        if tail.isdigit() and (p / STATE).is_file() and (not resumable or (p / OPTIM).is_file()):
            found.append((int(tail), p))
    return sorted(found)


def prune(out: Path, keep: int) -> None:
    """Keep the `keep` newest checkpoints; all but the newest become model snapshots (their optimizer
    state, as large as the model twice over, is deleted: resuming only ever reads the newest)."""
    ckpts = list_checkpoints(out, resumable=False)
    for _, old in ckpts[:-keep]:
        shutil.rmtree(old)
    for _, old in ckpts[-keep:-1]:
        (old / OPTIM).unlink(missing_ok=True)


def write_model(export, tokenizer, tmp: Path, state_dict=None) -> None:
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "writing shards" bar per checkpoint is noise
    try:
        export.save_pretrained(tmp, **({"state_dict": state_dict} if state_dict is not None else {}))
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(tmp)


def save(model, tokenizer, dst: Path, dist, *, dtype, extra: dict[str, Any] | None = None, opt=None,
          master=None) -> None:
    """Write a checkpoint (`extra` given: + resumable state) or the final model to `dst`, atomically.

    The model goes in its training dtype: a LoRA model as its adapter alone, an FSDP model as the
    full weights gathered from the ranks (every rank must call; rank 0 writes). Resumable state:
    the optimizer, scheduler and RNG (`extra`), the fp32 master weights when the model is bf16.
    """
    import torch

    from treesearch.train import dist as dist_mod

    sharded = dist_mod.is_sharded(model)
    if not (sharded or dist.is_main):
        return
    weights = dist_mod.full_state_dict(model) if sharded else None  # a collective under FSDP
    state = dict(extra) if extra is not None else None
    optim = None
    if state is not None:
        optim = {"optimizer": dist_mod.full_optimizer_state(model, opt)}
        if master is not None:
            optim["master"] = master.state_dict()
        elif sharded and weights and next(iter(weights.values())).dtype != dtype:
            optim["master_full"] = weights  # fp32 shards computing in bf16: resuming needs the fp32 values
    if not dist.is_main:
        return
    if weights is not None:
        weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in weights.items()}

    def write(tmp: Path) -> None:
        write_model(model, tokenizer, tmp, weights)  # a PeftModel writes adapter_model.safetensors only
        if state is not None:
            torch.save(state, tmp / STATE)
            torch.save(optim, tmp / OPTIM)

    atomic_dir(dst, write)


def load_weights(model, state: dict, where: Path) -> None:
    """Full fine-tuning resume: copy a state dict (a checkpoint's weights) into `model`."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]
    assert not missing and not unexpected, f"{where}: weights do not match the model ({missing[:3]}, {unexpected[:3]})"


def checkpoint_weights(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    state = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        state.update(load_file(str(f)))
    return state
