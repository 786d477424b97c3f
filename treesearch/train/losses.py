"""Preference losses over step pairs: pure functions of per-sequence log-probabilities.

Notation (shapes are [B], one entry per pair): ``logp_w``/``logp_l`` are the
policy's summed log-probabilities of the chosen (w) and rejected (l) step tokens,
``ref_w``/``ref_l`` the frozen reference's; the implicit reward margin is

    h = (logp_w − ref_w) − (logp_l − ref_l)

- DPO (sigmoid):        L = −logσ(β·h)
- conservative DPO:     L = −(1−ε)·logσ(β·h) − ε·logσ(−β·h)       (ε = 0 gives DPO; ε per pair from
                        visits: `visit_label_smoothing`)
- Step-APO (CPL):       L = −logσ(β·h − α·(Q_w − Q_l))            (α = 0 gives DPO)
- RPO:                  L_DPO + α_nll · NLL(chosen), NLL averaged over chosen tokens

`preference_loss` is the one the trainer calls; it combines smoothing and the
advantage offset, and reduces to each named loss when the other weights are 0.
The token-level helpers turn logits at step positions into those sums (the trainer gets the
same values without full logits from `treesearch.train.logps.selected_logps`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under softmax(logits): logits [..., V], targets [...] long -> [...] float32."""
    logits = logits.float()  # bf16 log-softmax loses ~2 digits; sums over a step need them
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def sum_by_row(values: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Sum of `values` [M] grouped by `rows` [M] (ints in [0, n_rows)) -> [n_rows]."""
    return torch.zeros(n_rows, dtype=values.dtype, device=values.device).index_add(0, rows, values)


def reward_margin(logp_w: torch.Tensor, logp_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor) -> torch.Tensor:
    """h = (logp_w − ref_w) − (logp_l − ref_l), [B]."""
    return (logp_w - ref_w) - (logp_l - ref_l)


def sigmoid_dpo_loss(h: torch.Tensor, *, beta: float) -> torch.Tensor:
    """Per-pair DPO loss −logσ(β·h), [B]."""
    return -F.logsigmoid(beta * h)


def conservative_dpo_loss(h: torch.Tensor, *, beta: float, epsilon: float | torch.Tensor) -> torch.Tensor:
    """Per-pair label-smoothed DPO −(1−ε)·logσ(β·h) − ε·logσ(−β·h), [B]; ε scalar or [B]."""
    z = beta * h
    return -(1 - epsilon) * F.logsigmoid(z) - epsilon * F.logsigmoid(-z)


def step_apo_loss(h: torch.Tensor, *, beta: float, alpha: float, value_w: torch.Tensor,
                  value_l: torch.Tensor) -> torch.Tensor:
    """Per-pair Step-APO −logσ(β·h − α·(Q_w − Q_l)), [B]: a larger value gap demands a larger margin."""
    return -F.logsigmoid(beta * h - alpha * (value_w - value_l))


def preference_loss(h: torch.Tensor, *, beta: float, epsilon: float | torch.Tensor = 0.0,
                    apo_alpha: float = 0.0, value_gap: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair loss −(1−ε)·logσ(z) − ε·logσ(−z) with z = β·h − α·(Q_w − Q_l), [B].

    `value_gap` [B] is Q_w − Q_l; required when `apo_alpha` > 0.
    """
    z = beta * h
    if apo_alpha:
        assert value_gap is not None, "apo_alpha > 0 needs the value gap Q_w − Q_l of every pair"
        z = z - apo_alpha * value_gap
    if isinstance(epsilon, torch.Tensor) or epsilon:
        return -(1 - epsilon) * F.logsigmoid(z) - epsilon * F.logsigmoid(-z)
    return -F.logsigmoid(z)


def visit_label_smoothing(visits_w: torch.Tensor, visits_l: torch.Tensor) -> torch.Tensor:
    """Per-pair conservative-DPO ε from visit counts: the rejected step's share of the two visits,
    ε = min(N_l / (N_w + N_l), 0.5), [B] (both counts at least 1).

    A pair the search visited lopsidedly towards the winner is trusted (ε → 0); equal visits
    (the search could not tell) gives ε = 0.5, which leaves the pair no pull either way.
    PAPERS.md writes MCTS-DPO's ε as ``min(1 − 1/(1 + N_w/max(1, N_l)), 0.5)``, the winner's share:
    on our pairs (PUCT sends visits to the higher-Q child, median N_w/N_l = 3.5) that is 0.5 for 99%
    of them, and at 0.5 the loss's gradient drives the margin to zero, un-learning the preference.
    We read it as inverted and take the complement (before the cap)."""
    w = visits_w.float().clamp(min=1.0)
    l = visits_l.float().clamp(min=1.0)
    return torch.clamp(l / (w + l), max=0.5)


def nll_loss(chosen_logp_sum: torch.Tensor, chosen_tokens: torch.Tensor) -> torch.Tensor:
    """RPO's NLL on chosen steps, averaged over all chosen tokens of the batch (as TRL's "sft" term):
    −Σ logp / Σ tokens; inputs [B], output scalar."""
    return -chosen_logp_sum.sum() / chosen_tokens.sum().clamp(min=1)
