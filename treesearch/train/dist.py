"""The data-parallel runtime of `train_step_dpo`: process group, batch sharding, DDP or FSDP2.

`setup` joins the torchrun job the environment describes (``WORLD_SIZE`` > 1; NCCL on CUDA,
gloo on CPU) or returns a one-process context; `shard` gives a rank its slice of a global
micro-batch; `wrap` returns the training forward for the chosen sharding:

* ``ddp``: `DistributedDataParallel`; weights, gradients and AdamW state replicated on every
  rank, gradients all-reduced once per optimizer step (``no_sync`` before).
* ``fsdp``: torch FSDP2 (``torch.distributed.fsdp.fully_shard``) on every decoder layer and on
  the whole model: each rank holds 1/W of the weights, gradients and optimizer state, a layer's
  full weights exist only while it runs (all-gather before, reduce-scatter of its gradients after).
  It runs on CPU over gloo as on CUDA over NCCL (tests/test_ddp.py); with ``dtype: bfloat16`` and
  master weights the shards stay fp32 and layers compute in bf16 (``MixedPrecisionPolicy``).

Both average gradients over ranks, so the same per-rank loss scaling (`trainer`) gives the
single-process gradient of the global batch. The launcher (`python -m treesearch.train.ddp`)
lives in `treesearch.train.ddp`; this module imports neither it nor the trainer, and torch only
when called.
"""
from __future__ import annotations

import dataclasses
import os
from contextlib import nullcontext

import numpy as np


@dataclasses.dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel job. world_size 1 = a plain single-process run.

    owned: this context created the process group (and `teardown` destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    owned: bool = False

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def all_sum(self, tensor):
        """In-place sum over ranks of a tensor on this rank's device; returns it."""
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_true(self, flag: bool) -> bool:
        """True when `flag` is true on every rank."""
        if not self.active:
            return flag
        import torch

        t = torch.tensor([1 if flag else 0], device=self.device)
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())


def setup(device: str = "auto") -> DistContext:
    """Join the torchrun job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*).

    Without WORLD_SIZE > 1 this is a single-process run on `device` ('auto' = CUDA when present).
    Under torchrun each rank gets ``cuda:LOCAL_RANK`` (NCCL) or the CPU (gloo).
    """
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        from treesearch.policy import resolve_device

        return DistContext(device=resolve_device(device))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise RuntimeError(f"process group (rank {dist.get_rank()} of {dist.get_world_size()}) does not match "
                           f"RANK={rank} WORLD_SIZE={world}")
    return DistContext(rank=rank, world_size=world, local_rank=local,
                       device=f"cuda:{local}" if use_cuda else "cpu", owned=owned)


def teardown(ctx: DistContext) -> None:
    """Destroy the process group if `ctx` created it."""
    if ctx.owned:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def shard(idx: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, float]:
    """This rank's contiguous slice of a global micro-batch, and its weight (0 = a stand-in).

    Slices are disjoint, in order, and cover `idx` (sizes differ by at most one). An empty slice
    becomes the micro-batch's first pair with weight 0, so the rank still runs forward and backward.
    """
    idx = np.asarray(idx)
    mine = np.array_split(idx, world)[rank]
    if len(mine) == 0:
        assert len(idx) > 0, "a micro-batch has at least one pair"
        return idx[:1], 0.0
    return mine, 1.0


def _decoder_layers(lm) -> list:
    """The repeated blocks FSDP shards one by one: modules of the classes transformers never splits."""
    names = set(getattr(lm, "_no_split_modules", None) or [])
    layers = [m for m in lm.modules() if type(m).__name__ in names]
    assert layers, f"{type(lm).__name__}: no decoder layers found to shard (_no_split_modules={sorted(names)})"
    return layers


def _step_module(model):
    import torch

    from treesearch.train.logps import sequence_logps

    class StepLogps(torch.nn.Module):
        """The model with `sequence_logps` as its forward, so DDP/FSDP hooks see every training forward."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, batch: dict):
            return sequence_logps(self.inner, batch)

    return StepLogps(model)


def wrap(model, ctx: DistContext, *, sharding: str = "ddp", mixed_bf16: bool = False):
    """(forward, sync, module) for the training loop; call before building the optimizer.

    forward(batch) -> (logp_sum [2B], n_tokens [2B]) as `logps.sequence_logps`, through DDP or FSDP
    when `ctx` is a multi-rank job. sync(last) is a context manager around each micro-batch's backward:
    DDP all-reduces only on a step's last micro-batch; FSDP reduce-scatters every micro-batch (its
    sharded gradients accumulate; holding unsharded ones to the end would undo the sharding).
    module: what the optimizer, clipping and checkpoints work on (`model` itself unless FSDP, whose
    parameters become DTensor shards). mixed_bf16 (fsdp): fp32 shards, bf16 compute.
    """
    from treesearch.train.logps import causal_lm, sequence_logps

    if not ctx.active:
        return (lambda batch: sequence_logps(model, batch)), (lambda last: nullcontext()), model
    import torch

    if sharding == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_bf16 \
            else MixedPrecisionPolicy()
        for layer in _decoder_layers(causal_lm(model)):
            fully_shard(layer, mp_policy=mp)
        step = _step_module(model)
        fully_shard(step, mp_policy=mp)  # the root: embeddings, final norm and LM head
        return (lambda batch: step(batch)), (lambda last: nullcontext()), model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.local_rank] if ctx.device.startswith("cuda") else None
    # buffers (rotary tables) are identical on every rank; broadcasting them each step is waste
    ddp = DistributedDataParallel(_step_module(model), device_ids=ids, broadcast_buffers=False)
    return (lambda batch: ddp(batch)), (lambda last: nullcontext() if last else ddp.no_sync()), model


def is_sharded(model) -> bool:
    """True when `model` holds FSDP2 shards (DTensor parameters)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return False
    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(model) -> dict:
    """The whole model's state on CPU: gathered from the shards (a collective: every rank calls it;
    rank 0 gets the tensors, the others an empty dict) or, unsharded, the plain state dict."""
    if not is_sharded(model):
        return {k: v.detach() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model, opt) -> dict:
    """The optimizer state for a checkpoint (collective when sharded; full on rank 0, keyed by name)."""
    if not is_sharded(model):
        return opt.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model, opt, state: dict) -> None:
    """Inverse of `full_optimizer_state` (every rank passes the full state it read)."""
    if not is_sharded(model):
        opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, opt, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))


def grad_norm_value(norm) -> float:
    """`clip_grad_norm_`'s result as a float (a replicated DTensor under FSDP)."""
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
