"""fp32 master weights for a model held in bf16 (one process, or DDP).

    master = MasterWeights(trained_params)          # fp32 copies; give master.params to AdamW
    loss.backward(); master.pull_grads()            # bf16 grads -> fp32 master grads (bf16 ones freed)
    clip(master.params); opt.step(); master.push()  # the fp32 result rounded once into the bf16 weights

The optimizer and its state live on the fp32 copies, so an update far below bf16's resolution
(lr 1e-6 on a weight of 1 moves it by 1e-6; bf16 resolves 4e-3) still accumulates; the model
sees each step's fp32 weights rounded to bf16. Memory per trained parameter: 2 (bf16 weight)
+ 4 (master) + 4 (its gradient, the bf16 one freed) + 8 (AdamW moments) bytes. Under FSDP the
same is done by keeping the shards fp32 and computing in bf16 (`dist.wrap(mixed_bf16=True)`).
"""
from __future__ import annotations

import contextlib

import torch


class MasterWeights:
    """fp32 master copies of `params` (the model's trained parameters, any float dtype)."""

    def __init__(self, params: list[torch.nn.Parameter]):
        self.model_params = list(params)
        self.params = [torch.nn.Parameter(p.detach().float().clone()) for p in self.model_params]

    @torch.no_grad()
    def pull_grads(self) -> None:
        """Move the model's accumulated gradients to the masters (fp32), freeing the model's."""
        for p, m in zip(self.model_params, self.params):
            m.grad = None if p.grad is None else p.grad.float()
            p.grad = None

    @torch.no_grad()
    def push(self) -> None:
        """Copy the masters into the model's weights (rounded to their dtype)."""
        for p, m in zip(self.model_params, self.params):
            p.copy_(m)

    def state_dict(self) -> list[torch.Tensor]:
        return [m.detach().cpu().clone() for m in self.params]

    @torch.no_grad()
    def load_state_dict(self, state: list[torch.Tensor]) -> None:
        assert len(state) == len(self.params), f"{len(state)} master tensors for {len(self.params)} parameters"
        for m, s in zip(self.params, state):
            m.copy_(s)
        self.push()


class AdamWStep:
    """AdamW over a model's trained parameters, through `MasterWeights` when the model is bf16: one optimizer
    step after the caller's backward pass(es) (the PRM and verifier trainers).

        opt = AdamWStep(model, lr=3e-5, bf16=True, clip=1.0)
        loss.backward(); opt.step()                  # masters pulled, clipped, stepped, pushed; grads cleared
    """

    def __init__(self, model: torch.nn.Module, *, lr: float, weight_decay: float = 0.0, bf16: bool = False,
                 clip: float = 0.0):
        trained = [p for p in model.parameters() if p.requires_grad]
        self.master = MasterWeights(trained) if bf16 else None
        self.params = self.master.params if self.master else trained
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.clip = clip

    def step(self, lr: float | None = None) -> None:
        """Apply the accumulated gradients (at `lr` when given), clipped to norm `clip` when > 0, then clear them."""
        if self.master is not None:
            self.master.pull_grads()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        if lr is not None:
            for group in self.opt.param_groups:
                group["lr"] = lr
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.master is not None:
            self.master.push()


@contextlib.contextmanager
def checkpointing(model, enabled: bool = True):
    """Gradient checkpointing on `model` (a transformers model) inside the block when `enabled`: each layer's
    activations are recomputed in the backward pass (non-reentrant: the embedding input needs no grad)."""
    if not enabled:
        yield
        return
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        yield
    finally:
        model.gradient_checkpointing_disable()
