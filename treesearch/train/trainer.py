"""A lean Step-DPO trainer: DPO on step tokens, reference log-probs cached once, resumable.

    result = train_step_dpo("embedded", "pairs.jsonl", StepDPOConfig(beta=0.1), "runs/r0/dpo")
    result.model_dir   # runs/r0/dpo/model: a Hugging Face checkpoint (merged when LoRA)

What it does, in order:
1. takes each pair's exact sampled ids (or tokenizes text-only pairs; `data.tokenize_pairs`), so
   only step tokens are scored,
   and by default packs each pair into one row, prompt + chosen + rejected, with a mask that hides
   the chosen step from the rejected one, so the shared prompt is computed once (`data.collate`);
2. computes the reference log-probabilities of every pair ONCE, before the first update, and
   caches them in ``out_dir/ref_logps.pt`` (epochs and resumed runs reuse them). The reference is
   `reference` when given, else the base with the LoRA adapter disabled, else the policy itself
   before its first update (identical to a frozen copy, without holding a second copy);
3. trains with AdamW, linear warmup then linear decay, gradient accumulation, clipping, bf16
   autocast on CUDA or bf16 weights (``dtype``; fp32 master weights by default, `precision`),
   optional gradient checkpointing, seeded length-grouped batches; log-probabilities come from
   the hidden states at the scored positions through a chunked LM head (`logps`), so no
   [tokens, vocabulary] logits tensor ever exists;
4. logs ``out_dir/metrics.jsonl`` and a tqdm bar; saves resumable checkpoints (``checkpoint-N``:
   the model in its training dtype, or the LoRA adapter alone, + tokenizer + ``trainer_state.pt``
   (step, scheduler, RNG) + ``optimizer.pt`` (AdamW state, fp32 master weights), which only the
   newest checkpoint keeps, as only it is resumed from) and the final model (``model``: no
   optimizer state; under LoRA merged, or the adapter alone with ``lora_merge: false``), each
   written to a temporary directory and renamed into place.

Before any weights load, the run's memory is estimated from the model's config and the real
micro-batch shapes (`memory.check`); a run that would not fit prints one warning line with the
estimate and the options that would.

A rerun with the same pairs and config continues from the last checkpoint (or returns the
finished model); a different run in the same ``out_dir`` is refused.

Under torchrun (``WORLD_SIZE`` > 1) the same call trains data-parallel (DDP, or FSDP2 with
``sharding: fsdp``): every rank takes a slice of each global micro-batch and rank 0 writes the
files; see `treesearch.train.dist` and `treesearch.train.ddp`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from treesearch.train import checkpoints as ckpt
from treesearch.train import losses
from treesearch.train.config import StepDPOConfig
from treesearch.backends import text as token_text
from treesearch.io import atomic_write_text
from treesearch.train.logps import causal_lm, sequence_logps
from treesearch.train.data import (Pair, TokenizedPairs, as_pairs, collate, epoch_batches, fingerprint, loss_norm,
                                   tokenize_pairs)

REF_CACHE = "ref_logps.pt"
METRICS = "metrics.jsonl"
FINAL = "model"
DONE = "train_result.json"


@dataclasses.dataclass
class TrainResult:
    """What a training call produced.

    model: the trained transformers model (LoRA merged in), eval mode, on the training device;
        None under FSDP, whose ranks hold shards only (load `model_dir`).
    model_dir: the final Hugging Face checkpoint (loads with AutoModelForCausalLM).
    steps: optimizer steps of the whole run; resumed_from: the step this call started at.
    reference_batches: forward passes of the reference pass in this call (0 when cached).
    metrics: the last logged window plus ``train/loss_mean`` over this call's steps.
    """

    model: Any
    tokenizer: Any
    out_dir: Path
    model_dir: Path
    steps: int
    resumed_from: int
    pairs: int
    reference_batches: int
    seconds: float  # tokenization + reference pass + training loop of this call
    pairs_per_second: float  # pair-updates of this call per second of `seconds`
    metrics: dict[str, float]


# ---------------------------------------------------------------- log-probabilities


def packing_supported(model) -> bool:
    """Packed pairs need an attention kernel that takes an arbitrary 4D mask."""
    return getattr(causal_lm(model).config, "_attn_implementation", None) in ("sdpa", "eager")


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}


def reference_logps(model, tp: TokenizedPairs, *, batch_size: int, pad_id: int, device, autocast=nullcontext,
                    packed: bool = False, progress: bool = False, shard: tuple[int, int] = (0, 1)
                    ) -> tuple[Any, Any, int]:
    """Reference log-probs of all N pairs: (chosen [N], rejected [N]) float32 on CPU, and the number
    of forward batches. Pairs go through sorted by length, so batches carry little padding.

    shard (rank, world): run only batches b with b % world == rank (the others' entries stay 0),
    so the ranks of a data-parallel job split the pass and a sum over ranks gives every value."""
    import torch
    from tqdm.auto import tqdm

    n = len(tp)
    order = np.argsort(tp.lengths(), kind="stable")
    chosen, rejected = torch.zeros(n), torch.zeros(n)
    was_training = model.training
    model.eval()
    rank, world = shard
    starts = range(0, n, batch_size)[rank::world]
    with torch.inference_mode(), autocast():
        for s in tqdm(starts, desc="reference log-probs", disable=not progress, leave=False):
            idx = order[s:s + batch_size]
            sums, _ = sequence_logps(model, _to(collate(tp, idx, pad_id, packed=packed), device))
            sums = sums.float().cpu()
            chosen[idx], rejected[idx] = sums[: len(idx)], sums[len(idx):]
    model.train(was_training)
    return chosen, rejected, len(starts)


# ---------------------------------------------------------------- the objective

STAT_NAMES = ("loss", "dpo_loss", "rewards/chosen", "rewards/rejected", "rewards/accuracy", "rewards/margin", "nll")
TIE = 1e-4  # nats: a log-ratio margin this close to 0 is float noise (policy = reference at step 1), not a preference


def step_dpo_objective(logp, n_tokens, ref_w, ref_l, config: StepDPOConfig, *, epsilon=None, value_gap=None,
                       norm: tuple[float, float] | None = None):
    """The training loss of one micro-batch of B pairs, and its statistics.

    logp, n_tokens: [2B] from `sequence_logps` (chosen rows first); ref_w, ref_l: [B] reference sums;
    epsilon: [B] per-pair label smoothing (else config.label_smoothing); value_gap: [B] Q_w − Q_l.
    norm: for a part of a larger optimizer step (accumulated micro-batches, data-parallel shards),
    that step's (pairs, chosen tokens): every mean becomes this part's sum over those totals, so the
    parts' losses and stats add up to the whole step's. None: the B pairs are the whole step.
    Returns (loss scalar, stats [7] detached: loss, dpo_loss, rewards/chosen, rewards/rejected,
    rewards/accuracy, rewards/margin, nll (0 when rpo_alpha is 0)); rewards are β·(logp − ref), and
    rewards/accuracy counts the pairs whose margin h exceeds `TIE` (a tie within float noise is not a
    preference, so runs that sum in another order agree).
    """
    import torch

    b = ref_w.shape[0]
    logp_w, logp_l = logp[:b], logp[b:]
    h = losses.reward_margin(logp_w, logp_l, ref_w, ref_l)
    eps = epsilon if epsilon is not None else config.label_smoothing
    per_pair = losses.preference_loss(h, beta=config.beta, epsilon=eps, apo_alpha=config.apo_alpha,
                                      value_gap=value_gap)
    if norm is None:
        mean = torch.mean
        dpo = per_pair.mean()
        nll = losses.nll_loss(logp_w, n_tokens[:b]) if config.rpo_alpha else torch.zeros((), device=logp.device)
    else:
        def mean(x):
            return x.sum() / norm[0]

        dpo = mean(per_pair)
        nll = -logp_w.sum() / norm[1] if config.rpo_alpha else torch.zeros((), device=logp.device)
    loss = dpo + config.rpo_alpha * nll
    with torch.no_grad():
        chosen_r, rejected_r = config.beta * (logp_w - ref_w), config.beta * (logp_l - ref_l)
        stats = torch.stack([loss, dpo, mean(chosen_r), mean(rejected_r), mean((h > TIE).float()),
                             mean(chosen_r - rejected_r), nll]).float()
    return loss, stats


def _cached_reference(cache: Path, run_id: str, *, fresh_run: bool, model, reference, tp, config, pad_id, device,
                      autocast, packed, dist=None) -> tuple[Any, Any, int]:
    """Reference sums (chosen [N], rejected [N]) from ``ref_logps.pt``, or computed and cached now.

    Must run before the first update: without `reference` or LoRA, the policy itself is the reference.
    dist: a `ddp.DistContext`; its ranks split the pass by batch and rank 0 writes the cache.
    """
    import torch

    from treesearch.train.dist import DistContext

    dist = dist or DistContext(device=str(device))
    cached = torch.load(cache, weights_only=True) if cache.is_file() else None
    if dist.all_true(cached is not None and cached.get("run_id") == run_id):
        return cached["chosen"], cached["rejected"], 0
    if not fresh_run:  # resumed weights are no longer the reference
        raise ValueError(f"{cache}: reference cache missing or stale, cannot resume; use a fresh out_dir")
    if reference is not None:
        ref_model, ctx = reference.to(device), nullcontext()
    elif config.lora:
        ref_model, ctx = model, model.disable_adapter()
    else:
        ref_model, ctx = model, nullcontext()  # no update has happened yet: the policy IS the reference
    with ctx:
        ref_w, ref_l, n = reference_logps(ref_model, tp, batch_size=config.ref_batch_size, pad_id=pad_id,
                                          device=device, autocast=autocast,
                                          packed=packed and packing_supported(ref_model),
                                          progress=config.progress and dist.is_main,
                                          shard=(dist.rank, dist.world_size))
    if dist.active:  # each rank filled its own batches, zeros elsewhere: the sum is every value, exactly
        both = dist.all_sum(torch.stack([ref_w, ref_l]).to(dist.device)).cpu()
        ref_w, ref_l = both[0], both[1]
    if dist.is_main:
        tmp = cache.with_suffix(".tmp")
        torch.save({"run_id": run_id, "chosen": ref_w, "rejected": ref_l}, tmp)
        os.replace(tmp, cache)
    return ref_w, ref_l, n


# ---------------------------------------------------------------- the training loop


def _run_id(pairs: list[Pair], config: StepDPOConfig, policy_name: str) -> str:
    # Knobs that do not change the result may differ between a run and its resumption.
    free = {"progress", "device", "pack_prompt", "ref_batch_size", "logging_steps", "save_steps", "keep_checkpoints",
            "gradient_checkpointing", "lora_merge"}
    cfg = {k: v for k, v in config.to_dict().items() if k not in free}
    blob = json.dumps([fingerprint(pairs), cfg, policy_name], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _schedule(tp: TokenizedPairs, config: StepDPOConfig) -> list[tuple[int, list[np.ndarray]]]:
    """Flat list of optimizer steps: (epoch, micro-batches of pair indices). A step's pairs are drawn
    (and length-grouped) as one batch of ``batch_size × grad_accum``, then split into micro-batches,
    so accumulation changes memory, not which pairs share a step."""
    lengths = tp.lengths()
    bs = config.batch_size
    steps = []
    for epoch in range(config.epochs):
        for batch in epoch_batches(lengths, bs * config.grad_accum, seed=config.seed, epoch=epoch,
                                   group_by_length=config.group_by_length):
            steps.append((epoch, [batch[i:i + bs] for i in range(0, len(batch), bs)]))
    return steps


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)  # never exactly 0, so the first step moves
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def _policy_meta(policy, tokenizer):
    """(tokenizer, transformers config, name) without loading any weights."""
    if isinstance(policy, (str, Path)):
        from transformers import AutoConfig, AutoTokenizer

        from treesearch.policy import PolicyError, resolve

        where = resolve(policy)
        try:
            tok = AutoTokenizer.from_pretrained(where)
            hf_config = AutoConfig.from_pretrained(where)
        except (OSError, ValueError, KeyError) as e:  # corrupt or missing files, as `load_policy` reports them
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PolicyError(f"{where}: cannot load checkpoint: {first}") from e
        return tok, hf_config, str(policy)
    if tokenizer is None:
        raise ValueError("train_step_dpo: pass tokenizer= when the policy is a model object")
    return tokenizer, causal_lm(policy).config, type(policy).__name__


def _generation_config(policy):
    """Where the policy's generation_config (its EOS list) lives: its checkpoint directory, or the model."""
    if isinstance(policy, (str, Path)):
        from treesearch.policy import resolve

        return resolve(policy)
    return getattr(causal_lm(policy), "generation_config", None)


def _load_model(policy, device: str, dtype: str):
    """The policy's weights in `dtype` on `device` (a model object is converted in place)."""
    import torch

    if isinstance(policy, (str, Path)):
        from treesearch.policy import load_policy

        return load_policy(policy, device=device, dtype=dtype)[0]
    policy.to(device)
    want = getattr(torch, dtype)
    for p in policy.parameters():  # parameters only: buffers such as rotary frequencies stay fp32, as from_pretrained
        if p.is_floating_point() and p.dtype != want:
            p.data = p.data.to(want)
    return policy


def _micro_batch_shape(tp: TokenizedPairs, schedule, dist, packed: bool) -> tuple[int, int]:
    """(rows, padded width) of the largest micro-batch one rank runs: what activations scale with."""
    from treesearch.train.dist import shard

    best = (1, 1)
    lengths = tp.lengths()
    for _, group in schedule:
        for idx in group:
            mine, _ = shard(idx, dist.rank, dist.world_size)
            if packed:
                rows, width = len(mine), max(len(tp.prompt_ids[i]) + len(tp.chosen_ids[i]) + len(tp.rejected_ids[i])
                                             for i in mine)
            else:
                rows, width = 2 * len(mine), int(lengths[mine].max())
            if rows * width > best[0] * best[1]:
                best = (rows, width)
    return best


def _warn_memory(hf_config, config: StepDPOConfig, tp, schedule, dist, device) -> None:
    from treesearch.train import memory

    rows, width = _micro_batch_shape(tp, schedule, dist, config.pack_prompt)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    line = memory.check(memory.ModelShape.from_hf_config(hf_config), config, world=dist.world_size, rows=rows,
                        width=width, packed=config.pack_prompt, device=str(device), local_world=local)
    if line and dist.is_main:
        print(f"train_step_dpo: {line}", file=sys.stderr, flush=True)


def train_step_dpo(policy, pairs: str | Path | Iterable[Pair | dict], config: StepDPOConfig | None = None,
                   out_dir: str | Path = "dpo_out", *, reference=None, tokenizer=None) -> TrainResult:
    """Train `policy` with Step-DPO on `pairs`; write checkpoints and the final model under `out_dir`.

    policy: a checkpoint path or name ("embedded"), or a transformers CausalLM, trained in place
        (with LoRA the adapter is merged into it at the end); `tokenizer` is then required.
    pairs: a pairs JSONL path, `Pair`s, or dicts in the pairs format.
    reference: an optional frozen model for the reference log-probs (default: see module docstring).
    """
    from treesearch.train import dist as dist_mod

    config = config or StepDPOConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = as_pairs(pairs)
    dist = dist_mod.setup(config.device)  # one process unless started by torchrun (WORLD_SIZE > 1)
    tok, hf_config, policy_name = _policy_meta(policy, tokenizer)
    run_id = _run_id(pairs, config, policy_name)
    if (out / FINAL / DONE).is_file():
        dist_mod.teardown(dist)
        return _finished(out, run_id, tok, dist.device)
    resume = _resume_point(out, run_id)
    _check_inputs(policy, pairs, config)

    t0 = time.perf_counter()  # throughput counts tokenization and the reference pass too
    tp = _tokenize(pairs, tok, hf_config, policy, config)
    schedule = _schedule(tp, config)
    _warn_memory(hf_config, config, tp, schedule, dist, dist.device)  # before any weights load
    model, fsdp_mixed = _training_model(policy, config, dist, resume)
    steps = _Steps.build(model, tok, tp, config, dist, reference, resume, out / REF_CACHE, run_id, fsdp_mixed)
    fsdp = dist.active and config.sharding == "fsdp"
    opt = _Optimizer.build(steps.model, config, len(schedule), resume, fsdp=fsdp)
    start = resume["step"] if resume is not None else 0
    del resume  # the full optimizer state of a sharded run is large
    if dist.is_main:
        _truncate_metrics(out / METRICS, start)
    last, loss_mean = _train_loop(steps, opt, schedule, start, out, run_id, tok, t0)
    seconds = time.perf_counter() - t0
    # what this rank held of the weights: all of them, or its 1/W under FSDP
    local = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in steps.model.parameters())
    summary = dict(last, **{"data/dropped_pairs": tp.dropped, "train/params_on_rank0": local})
    if loss_mean is not None:
        summary["train/loss_mean"] = loss_mean
    info = {"run_id": run_id, "steps": len(schedule), "pairs": len(pairs), "epochs": config.epochs,
            "config": config.to_dict(), "metrics": summary}
    final = _save_final(steps, info, out, tok)
    dist_mod.teardown(dist)
    trained_pairs = sum(len(b) for _, g in schedule[start:] for b in g)
    return TrainResult(model=None if fsdp else final.eval(), tokenizer=tok,
                       out_dir=out, model_dir=out / FINAL, steps=len(schedule), resumed_from=start, pairs=len(pairs),
                       reference_batches=steps.reference_batches, seconds=seconds,
                       pairs_per_second=trained_pairs / seconds if seconds > 0 else math.inf, metrics=summary)


def _resume_point(out: Path, run_id: str) -> dict | None:
    """The newest checkpoint's trainer and optimizer state (+ ``dir``), or None for a fresh run."""
    import torch

    ckpts = ckpt.list_checkpoints(out)
    if not ckpts:
        return None
    where = ckpts[-1][1]
    resume = torch.load(where / ckpt.STATE, map_location="cpu", weights_only=False)
    resume.update(torch.load(where / ckpt.OPTIM, map_location="cpu", weights_only=False))
    if resume.get("run_id") != run_id:
        raise ValueError(f"{where}: checkpoint of other pairs or config; use a fresh out_dir")
    resume["dir"] = where
    return resume


def _check_inputs(policy, pairs: list[Pair], config: StepDPOConfig) -> None:
    from treesearch.train import lora as lora_mod

    if not isinstance(policy, (str, Path)) and lora_mod.is_peft(policy):
        raise ValueError("train_step_dpo: pass a plain (merged) model; LoRA is added when config.lora is true")
    if config.apo_alpha > 0:
        _require(pairs, ("chosen_value", "rejected_value"), "apo_alpha > 0")
    if config.label_smoothing_from_visits:
        _require(pairs, ("chosen_visits", "rejected_visits"), "label_smoothing_from_visits")


def _tokenize(pairs: list[Pair], tok, hf_config, policy, config: StepDPOConfig) -> TokenizedPairs:
    # positions past the model's trained range would silently extrapolate
    max_length = min(config.max_length, getattr(hf_config, "max_position_embeddings", None) or 10**9)
    ends = token_text.end_token_ids(tok, _generation_config(policy))
    return tokenize_pairs(pairs, tok, max_length=max_length, end_ids=ends)


def _training_model(policy, config: StepDPOConfig, dist, resume: dict | None):
    """(the policy's weights ready to train: dtype, LoRA, a checkpoint's weights; whether FSDP keeps fp32
    master shards of a bf16 run). Seeded here: LoRA's initialisation draws from the RNG."""
    import torch

    from treesearch.train import lora as lora_mod

    # FSDP with master weights: the shards are the fp32 master, the layers compute in bf16
    fsdp_mixed = dist.active and config.sharding == "fsdp" and config.dtype == "bfloat16" and config.master_weights
    torch.manual_seed(config.seed)  # LoRA initialisation
    model = _load_model(policy, dist.device, "float32" if fsdp_mixed else config.dtype)
    if config.lora:
        model = lora_mod.apply_lora(model, config)
    if resume is not None:  # weights before sharding: every rank loads them whole, then keeps its shard
        if config.lora:
            lora_mod.load_adapter_state(model, resume["adapter"])
        else:
            ckpt.load_weights(model, resume.get("master_full") or ckpt.checkpoint_weights(resume["dir"]), resume["dir"])
    return model, fsdp_mixed


@dataclasses.dataclass
class _Steps:
    """What each optimizer step reads: the wrapped model, its data, the reference sums and per-pair targets."""

    model: Any
    forward: Any
    sync: Any
    autocast: Any
    tp: TokenizedPairs
    pad_id: int
    packed: bool
    config: StepDPOConfig
    dist: Any
    ref_w: Any
    ref_l: Any
    value_gap: Any
    epsilon: Any
    reference_batches: int

    @classmethod
    def build(cls, model, tok, tp, config: StepDPOConfig, dist, reference, resume, cache: Path, run_id: str,
              fsdp_mixed: bool) -> "_Steps":
        """Reference sums (cached, or computed before the first update), then the model wrapped to train."""
        import torch

        from treesearch.train import dist as dist_mod

        device = dist.device
        use_bf16 = config.bf16 and str(device).startswith("cuda") and config.dtype != "bfloat16"

        def autocast():
            return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()

        pad_id = token_text.pad_id(tok)
        packed = config.pack_prompt and packing_supported(model)
        ref_w, ref_l, ref_batches = _cached_reference(cache, run_id, fresh_run=resume is None, model=model,
                                                      reference=reference, tp=tp, config=config, pad_id=pad_id,
                                                      device=device, autocast=autocast, packed=packed, dist=dist)
        value_gap = torch.from_numpy(np.nan_to_num(tp.chosen_values - tp.rejected_values)).float()
        epsilon = (losses.visit_label_smoothing(torch.from_numpy(tp.chosen_visits),
                                                torch.from_numpy(tp.rejected_visits))
                   if config.label_smoothing_from_visits else None)
        if config.gradient_checkpointing:  # non-reentrant: works with LoRA's frozen inputs and with FSDP
            causal_lm(model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        forward, sync, model = dist_mod.wrap(model, dist, sharding=config.sharding, mixed_bf16=fsdp_mixed)
        return cls(model, forward, sync, autocast, tp, pad_id, packed, config, dist, ref_w, ref_l, value_gap,
                   epsilon, ref_batches)

    def backward(self, group: list[np.ndarray]) -> list[float]:
        """Gradients of one optimizer step over its micro-batches; returns the step's summed stats.

        The step's means run over all its pairs and chosen tokens, so accumulating micro-batches (or
        sharding them over ranks) takes the step one batch of them would."""
        import torch

        from treesearch.train import dist as dist_mod

        dist, device = self.dist, self.dist.device
        norm = loss_norm(self.tp, np.concatenate(group))
        step_stats = []
        for j, idx in enumerate(group):
            # under DDP/FSDP: this rank's slice of the global micro-batch (weight 0 = a stand-in pair)
            mine, weight = dist_mod.shard(idx, dist.rank, dist.world_size)
            batch = _to(collate(self.tp, mine, self.pad_id, packed=self.packed), device)
            with self.sync(j == len(group) - 1):  # DDP all-reduces gradients once per optimizer step
                with self.autocast():
                    logp, ntok = self.forward(batch)
                loss, stats = step_dpo_objective(
                    logp, ntok, self.ref_w[mine].to(device), self.ref_l[mine].to(device), self.config,
                    epsilon=self.epsilon[mine].to(device) if self.epsilon is not None else None,
                    value_gap=self.value_gap[mine].to(device), norm=norm)
                if dist.active:  # shard losses add up to the step's; DDP and FSDP average over ranks
                    loss = loss * (weight * dist.world_size)
                    stats = stats * weight
                loss.backward()
            step_stats.append(stats)
        # one device sync per optimizer step; the micro-batches' stats are parts of the step's
        return dist.all_sum(torch.stack(step_stats).sum(0)).tolist()


@dataclasses.dataclass
class _Optimizer:
    """AdamW over the trained parameters (or their fp32 master copies), with its LR schedule."""

    opt: Any
    sched: Any
    master: Any  # MasterWeights of a bf16 model, or None
    params: list
    max_grad_norm: float

    @classmethod
    def build(cls, model, config: StepDPOConfig, total: int, resume: dict | None, *, fsdp: bool) -> "_Optimizer":
        """A fresh optimizer, or the checkpoint's state (master weights, moments, schedule, RNG) restored."""
        import torch

        from treesearch.train import dist as dist_mod
        from treesearch.train.precision import MasterWeights

        trained = [p for p in model.parameters() if p.requires_grad]
        master = (MasterWeights(trained) if config.dtype == "bfloat16" and config.master_weights and not config.lora
                  and not fsdp else None)
        params = master.params if master is not None else trained
        opt = torch.optim.AdamW(params, lr=config.learning_rate, betas=config.adam_betas,
                                weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, int(config.warmup_ratio * total)))
        if resume is not None:
            if master is not None:
                master.load_state_dict(resume["master"])
            dist_mod.load_optimizer_state(model, opt, resume["optimizer"])
            sched.load_state_dict(resume["scheduler"])
            torch.set_rng_state(resume["rng"])
            if resume.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(resume["cuda_rng"])
        return cls(opt, sched, master, params, config.max_grad_norm)

    def step(self) -> tuple[float, float]:
        """Clip, update, advance the schedule; returns (grad norm before clipping, the LR it used)."""
        import torch

        from treesearch.train import dist as dist_mod

        if self.master is not None:
            self.master.pull_grads()
        grad_norm = (dist_mod.grad_norm_value(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm))
                     if self.max_grad_norm > 0 else float("nan"))
        lr = self.sched.get_last_lr()[0]
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        if self.master is not None:
            self.master.push()
        return grad_norm, lr


def _train_loop(steps: _Steps, opt: _Optimizer, schedule, start: int, out: Path, run_id: str, tok,
                t0: float) -> tuple[dict, float | None]:
    """Optimizer steps `start`.. of `schedule`, logging windows of stats to metrics.jsonl and saving
    resumable checkpoints; returns the last logged window and the mean loss over this call's steps."""
    from tqdm.auto import tqdm

    config, dist, total = steps.config, steps.dist, len(schedule)
    window: list[list[float]] = []
    all_losses: list[float] = []
    last: dict[str, float] = {}
    bar = tqdm(total=total, initial=start, desc="step-dpo", disable=not config.progress or not dist.is_main)
    with (out / METRICS).open("a") if dist.is_main else open(os.devnull, "w") as metrics_fh:
        for step in range(start, total):
            epoch, group = schedule[step]
            row = steps.backward(group)
            window.append(row)
            all_losses.append(row[0])
            grad_norm, lr = opt.step()
            done_steps = step + 1
            bar.update(1)
            if done_steps % config.logging_steps == 0 or done_steps == total:
                names = STAT_NAMES if config.rpo_alpha else STAT_NAMES[:-1]
                last = dict(zip(names, np.mean(window, axis=0).tolist()))
                last.update({"step": done_steps, "epoch": epoch, "lr": lr,
                             "grad_norm": grad_norm, "elapsed_s": time.perf_counter() - t0})
                metrics_fh.write(json.dumps(last) + "\n")
                metrics_fh.flush()
                window = []
                bar.set_postfix(loss=f"{last['loss']:.4f}", acc=f"{last['rewards/accuracy']:.2f}",
                                margin=f"{last['rewards/margin']:.3f}")
            if config.save_steps and done_steps % config.save_steps == 0 and done_steps < total:
                _save_checkpoint(steps, opt, out, run_id, done_steps, tok)
    bar.close()
    return last, (float(np.mean(all_losses)) if all_losses else None)


def _save_dtype(config: StepDPOConfig):
    import torch

    return torch.bfloat16 if config.dtype == "bfloat16" else torch.float32


def _save_checkpoint(steps: _Steps, opt: _Optimizer, out: Path, run_id: str, done_steps: int, tok) -> None:
    import torch

    from treesearch.train import lora as lora_mod

    config = steps.config
    state = {"run_id": run_id, "step": done_steps, "scheduler": opt.sched.state_dict(), "rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
             "config": config.to_dict()}
    if config.lora:
        state["adapter"] = lora_mod.adapter_state(steps.model)
    ckpt.save(steps.model, tok, out / f"checkpoint-{done_steps}", steps.dist, dtype=_save_dtype(config), extra=state,
              opt=opt.opt, master=opt.master)
    if steps.dist.is_main:
        ckpt.prune(out, config.keep_checkpoints)


def _save_final(steps: _Steps, info: dict, out: Path, tok):
    """Write the final model and its ``train_result.json`` (`info`); returns the model the caller now
    holds (LoRA merged, unless the adapter alone is exported)."""
    config, dist = steps.config, steps.dist
    final = steps.model.merge_and_unload() if config.lora and config.lora_merge else steps.model
    ckpt.save(final, tok, out / FINAL, dist, dtype=_save_dtype(config))
    if dist.is_main:
        atomic_write_text(out / FINAL / DONE, json.dumps(info, indent=1))
    dist.barrier()  # no rank returns before the final model exists
    return final


def _require(pairs: list[Pair], fields: tuple[str, str], why: str) -> None:
    for p in pairs:
        for f in fields:
            if getattr(p, f) is None:
                raise ValueError(f"{p.source}: missing field {f!r} (needed by {why})")


def _truncate_metrics(path: Path, upto: int) -> None:
    """Drop metric lines past `upto` (a resumed run rewrites them)."""
    if not path.is_file():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= upto]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def _finished(out: Path, run_id: str, tok, device: str) -> TrainResult:
    """The result of a run that already finished in `out` (refused when it trained other pairs or config)."""
    from transformers import AutoModelForCausalLM

    info = json.loads((out / FINAL / DONE).read_text())
    if info.get("run_id") != run_id:
        raise ValueError(f"{out}: holds a finished run of other pairs or config; use a fresh out_dir")

    model = AutoModelForCausalLM.from_pretrained(out / FINAL).to(device).eval()
    return TrainResult(model=model, tokenizer=tok, out_dir=out, model_dir=out / FINAL, steps=info["steps"],
                       resumed_from=info["steps"], pairs=info["pairs"], reference_batches=0, seconds=0.0,
                       pairs_per_second=0.0, metrics=info["metrics"])
