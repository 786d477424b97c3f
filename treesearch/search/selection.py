"""Selection rules: pure functions ``(tree, node, *, hyperparameters) -> scores over tree.children[node]``.

A search picks ``children[node][argmax(scores)]`` (ties go to the lower id, so
searches stay deterministic). Choose a rule by passing a function, with its
hyperparameters bound by `functools.partial`::

    mcts(backend, trees, cfg, score=..., select=functools.partial(puct, c_puct=2.0))

Rules here:

* `puct` (MCTS-DPO / AlphaZero): ``Q + c · p · sqrt(N_parent) / (1 + N)``;
* `uct` (UCB1): ``Q + c · sqrt(ln N_parent / N)``, unvisited children first;
* `greedy_q`: ``Q`` alone (exploitation, e.g. to read out a finished tree).

`step_prior` is the MCTS-DPO prior: ``p = exp(Σ log π(a) / |a|^λ)`` normalised
over the siblings, λ = 1.25, so long steps are not penalised for their length
alone.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from treesearch.tree import Tree

SelectFn = Callable[[Tree, int], np.ndarray]


def step_prior(tree: Tree, nodes: Sequence[int], *, length_penalty: float = 1.25) -> np.ndarray:
    """[len(nodes)] prior probabilities of sibling steps, ∝ exp(Σ log π / |a|^λ), summing to 1."""
    nodes = list(nodes)
    if not nodes:
        return np.zeros(0)
    lengths = np.array([max(1, len(tree.token_ids[c])) for c in nodes], dtype=np.float64)
    x = tree.prior[nodes] / lengths**length_penalty
    x = np.exp(x - x.max())  # normalising over siblings makes the shift free and avoids underflow
    return x / x.sum()


def q_values(tree: Tree, nodes: Sequence[int]) -> np.ndarray:
    """[len(nodes)] Q = r + V, V = value_sum / visits (0 while unvisited)."""
    nodes = list(nodes)
    visits = tree.visits[nodes].astype(np.float64)
    v = np.divide(tree.value_sum[nodes], visits, out=np.zeros(len(nodes)), where=visits > 0)
    return tree.reward[nodes] + v


def puct(tree: Tree, node: int, *, c_puct: float = 1.0, length_penalty: float = 1.25, value_prior: float = 0.0) -> np.ndarray:
    """MCTS-DPO's PUCT score of each child of `node`: ``Q + c_puct · p · sqrt(N(node)) / (1 + N(child))``,
    p = `step_prior`, Q = `q_values`; with `value_prior` k, Q = r + value_sum / (N + k) (a prior
    mean of 0 worth k evaluations: Beta(1, 1) on the success probability for k = 2, ±1 returns)."""
    # Scalar Python: selection runs once per level per simulation over a handful of
    # children, where numpy's per-call cost would dominate the search's own time.
    kids = tree.children[node]
    visits, value_sum, reward, prior, tokens = tree.visits, tree.value_sum, tree.reward, tree.prior, tree.token_ids
    xs = [float(prior[c]) / max(1, len(tokens[c])) ** length_penalty for c in kids]
    top = max(xs)
    ex = [math.exp(x - top) for x in xs]
    scale = c_puct * math.sqrt(float(visits[node])) / sum(ex)
    out = np.empty(len(kids))
    for j, c in enumerate(kids):
        n = int(visits[c])
        q = float(reward[c]) + (float(value_sum[c]) / (n + value_prior) if n + value_prior > 0 else 0.0)
        out[j] = q + scale * ex[j] / (1 + n)
    return out


def uct(tree: Tree, node: int, *, c: float = 2.0**0.5) -> np.ndarray:
    """UCB1: ``Q + c · sqrt(ln N(node) / N(child))``; unvisited children score +inf."""
    kids = tree.children[node]
    n = tree.visits[kids].astype(np.float64)
    total = max(1.0, float(tree.visits[node]))
    bonus = np.full(len(kids), np.inf)
    seen = n > 0
    bonus[seen] = c * np.sqrt(np.log(total) / n[seen])
    return q_values(tree, kids) + bonus


def greedy_q(tree: Tree, node: int) -> np.ndarray:
    """Q of each child, no exploration."""
    return q_values(tree, tree.children[node])
