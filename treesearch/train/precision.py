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
