"""Implicit process rewards from two language models ("Free Process Rewards without Process Labels", Yuan et al., 2024).

A model πθ trained as an outcome reward ``β·log(πθ(y)/πref(y))`` (DPO, or
cross-entropy on that form) gives process rewards for free. With y_i the
generated tokens of the solution::

    q_t = Σ_{i ≤ end of step t} β·log(πθ(y_i | y_<i) / πref(y_i | y_<i))
    r_t = q_t − q_{t−1} = β·Σ_{i in step t} (log πθ(y_i | y_<i) − log πref(y_i | y_<i))

and a solution is scored by the min over its steps. πθ and πref are two
backends sharing one tokenizer; each is asked ONCE per batch, with one row per
node: the prompt ids as the prompt, every generated token on the path as the
continuation (causal attention makes a token's log-probability the same
whether the row stops at its step or runs on), so the per-step sums come from
slicing the row at the step boundaries.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from treesearch.rewards.advantage import check_same_tokenizer
from treesearch.tree import Tree

AGGREGATES = ("min", "step", "sum")


from treesearch.config import field

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class ImplicitPRMConfig:
    """Implicit PRM: log-ratio of a trained policy πθ to its reference πref."""

    beta: float = _f(0.05, "β in r_t = β·Σ_{i in step t} log πθ(y_i)/πref(y_i)")
    aggregate: str = _f("min", "value of a node: 'min' over the path's step rewards (the paper's solution score), "
                               "'step' (r_t of the node's own step) or 'sum' (q_t, the implicit outcome reward so far)")

    def __post_init__(self):
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"ImplicitPRMConfig.aggregate must be one of {', '.join(AGGREGATES)}, got {self.aggregate!r}")


def step_sums(token_values: Sequence[float], lengths: Sequence[int]) -> list[float]:
    """Sum a row of per-token values over consecutive steps of the given lengths."""
    if sum(lengths) != len(token_values):
        raise ValueError(f"step lengths sum to {sum(lengths)} but the row has {len(token_values)} tokens")
    out, at = [], 0
    for n in lengths:
        out.append(math.fsum(token_values[at : at + n]))
        at += n
    return out


class ImplicitPRM:
    """ValueFn: implicit process reward of each node (see the module docstring), aggregated by `config.aggregate`.

    `step_rewards(trees, nodes)` gives the per-step rewards [r_1 .. r_T] of each path
    (steps without tokens get 0); `last_step_rewards` keeps those of the latest call.
    A node with no generated tokens (the root) has value 0.
    """

    def __init__(self, policy, reference, config: ImplicitPRMConfig = ImplicitPRMConfig()):
        check_same_tokenizer(policy, reference, what="reference")
        self.policy, self.reference, self.config = policy, reference, config
        self.last_step_rewards: list[list[float]] = []

    def step_rewards(self, trees: Sequence[Tree], nodes: Sequence[int]) -> list[list[float]]:
        rows, lengths = [], []
        for tree, node in zip(trees, nodes):
            path = tree.path(node)[1:]
            lengths.append([len(tree.token_ids[n]) for n in path])
            rows.append([t for n in path for t in tree.token_ids[n]])
        ask = [i for i, r in enumerate(rows) if r]  # a backend cannot score an empty continuation
        prompts = [trees[i].prompt_ids for i in ask]
        conts = [rows[i] for i in ask]
        lp_theta = self.policy.logprobs(prompts, conts) if ask else []
        lp_ref = self.reference.logprobs(prompts, conts) if ask else []
        out = [[0.0] * len(ls) for ls in lengths]
        beta = self.config.beta
        for i, a, b in zip(ask, lp_theta, lp_ref):
            if len(a) != len(rows[i]) or len(b) != len(rows[i]):
                raise RuntimeError(f"backend returned {len(a)}/{len(b)} logprobs for {len(rows[i])} tokens")
            out[i] = [beta * x for x in step_sums([u - v for u, v in zip(a, b)], lengths[i])]
        self.last_step_rewards = out
        return out

    def __call__(self, trees: Sequence[Tree], nodes: Sequence[int]) -> list[float]:
        values = []
        for r in self.step_rewards(trees, nodes):
            if not r:
                values.append(0.0)
            elif self.config.aggregate == "min":
                values.append(min(r))
            elif self.config.aggregate == "step":
                values.append(r[-1])
            else:
                values.append(math.fsum(r))
        return values
