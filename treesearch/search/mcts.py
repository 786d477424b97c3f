"""Monte-Carlo tree search over reasoning steps, as in MCTS-DPO (Xie et al., 2024).

A node is a step (text up to and including the step delimiter, within a token
budget). One simulation per tree per wave, all trees of a batch together:

1. **select**: from the search root, follow ``argmax select(tree, node)`` (PUCT
   by default) down to a leaf;
2. **expand**: the leaves of every tree go to the backend in ONE `generate` call,
   ``width`` sampled next steps each (stop at the delimiter);
3. **evaluate**: a terminal child gets the outcome reward (+1 / -1 from the
   scorer, its V = 0); the other children get V from `value_fn`, one batched
   call over the wave;
4. **backup** (γ = 1): each child's evaluation is added to it and to every
   ancestor (`treesearch.tree.backup`). V(node) is the plain visit mean of the
   returns below it (mctx / AlphaZero), not the paper's ``Σ max(1,N_c)·Q_c /
   Σ max(1,N_c)``: the two agree once every child has been visited, and the
   plain mean keeps ``value_sum`` additive, so the backup is a loop over
   `parent` and the invariant ``visits = evals + Σ children visits`` holds.

A leaf that is already terminal is re-evaluated (its outcome is backed up
again), which is how visits concentrate on the best answer. Each node is
expanded once (the paper's fixed width) unless progressive widening is on
(``widen_alpha > 0``): then a node gets new samples while its expansions are
fewer than ``widen_c · N^widen_alpha``.

With ``reroot`` (the paper's setting) the search commits to the most visited
child of the search root and searches again from it until it commits to a
terminal; the first search, from the real root, gets ``root_factor`` times the
simulations. Without it, one search of ``simulations`` waves runs from the root
and the answer is `Tree.best_path` by visits (or, when that ends on an
unfinished node, the terminal with the highest Q).

Ids are assigned in expansion order and wave w samples with seed ``seed + w``
per (context, sample index), so a seeded search builds the same tree every
time, whatever else shares its batch.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import numpy as np

from treesearch.backends.base import SamplingParams
from treesearch.search.expand import FinalFn, expand
from treesearch.search.result import SearchResult, meter
from treesearch.search.selection import SelectFn, puct
from treesearch.search.values import Scorer, ValueFn, judge, zero_value
from treesearch.tree import ROOT, Tree, backup


from treesearch.config import field

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class MCTSConfig:
    """MCTS over steps. Defaults are MCTS-DPO's math settings scaled to the embedded policy."""

    simulations: int = _f(32, "simulations (select-expand-evaluate-backup) per search (paper: 64)")
    root_factor: int = _f(4, "with reroot: the first search, from the real root, gets root_factor x simulations (paper: 4)")
    width: int = _f(4, "k: next steps sampled when a node is expanded (paper: 2; the embedded policy is peaked, so identical samples are merged and 4 gives ~2-3 distinct steps)")
    max_depth: int = _f(8, "steps per solution; a node at this depth is terminal")
    step_max_tokens: int = _f(48, "token budget of one step (paper: 128)")
    max_tokens: int = _f(128, "token budget of a whole solution; reaching it ends the path")
    temperature: float = _f(1.0, "sampling temperature of expansions")
    top_p: float = _f(1.0, "nucleus sampling mass of expansions")
    c_puct: float = _f(1.0, "exploration constant c in Q + c·p·sqrt(N_parent)/(1+N) (paper: 1.0)")
    length_penalty: float = _f(1.25, "λ in the step prior p = exp(Σ log π / |a|^λ) (paper: 1.25)")
    correct_reward: float = _f(1.0, "reward at a terminal whose answer verifies")
    wrong_reward: float = _f(-1.0, "reward at any other terminal")
    widen_c: float = _f(1.0, "progressive widening: an expanded node is expanded again while expansions < widen_c · N^widen_alpha")
    widen_alpha: float = _f(0.0, "progressive widening exponent; 0 keeps the paper's fixed width (one expansion per node)")
    reroot: bool = _f(False, "commit to the most visited child and search again until terminal (paper: on)")
    dedup: bool = _f(True, "drop sampled steps identical to a sibling")
    step_delimiter: str = _f("\n", "a step ends at this string (the task's step delimiter)")
    seed: int = _f(0, "sampling seed")

    def __post_init__(self):
        for name in ("simulations", "root_factor", "width", "max_depth", "step_max_tokens", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"MCTSConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"MCTSConfig.temperature must be >= 0, got {self.temperature}")

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            n=self.width,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.step_max_tokens,
            stop=(self.step_delimiter,),
            include_stop_str_in_output=True,
            seed=self.seed,
        )


def may_widen(tree: Tree, node: int, *, c: float = 1.0, alpha: float = 0.0) -> bool:
    """Progressive widening (Coulom 2007): sample more children for `node` while its
    expansions < c · N(node)^alpha. With alpha = 0 and c <= 1 a node is expanded once."""
    return bool(tree.expanded[node] < c * float(tree.visits[node]) ** alpha)


def select_leaf(tree: Tree, node: int, select: SelectFn, widen: Callable[[Tree, int], bool] | None = None) -> int:
    """Descend from `node` by ``argmax select`` until a node without children, or one that `widen` says
    should get more children."""
    while tree.children[node]:
        if widen is not None and widen(tree, node):
            return node
        node = tree.children[node][int(np.argmax(select(tree, node)))]
    return node


def commit(tree: Tree) -> int:
    """The answer node of a finished non-rerooted search: the end of `best_path` if terminal,
    else the terminal with the highest Q (then most visits, then lowest id); ROOT if none."""
    end = tree.best_path()[-1]
    if tree.terminal[end]:
        return end
    terminals = [n for n in range(tree.num_nodes) if tree.terminal[n]]
    if not terminals:
        return ROOT
    return max(terminals, key=lambda n: (tree.q(n), int(tree.visits[n]), -n))


def mcts(
    backend,
    trees: Sequence[Tree],
    config: MCTSConfig = MCTSConfig(),
    *,
    score: Scorer,
    value_fn: ValueFn = zero_value,
    select: SelectFn | None = None,
    is_final: FinalFn | None = None,
) -> SearchResult:
    """Search every tree (each holding at least its root) and return the committed answer nodes.

    score: outcome of a finished solution text (1.0 right); value_fn: V at new non-terminal
    nodes, one call per wave; select: selection rule, default `puct` with the config's
    c_puct and length_penalty; is_final: does a path text hold a complete final answer.
    Trees may already hold nodes (a search resumes where it stopped).
    """
    cfg = config
    select = select or functools.partial(puct, c_puct=cfg.c_puct, length_penalty=cfg.length_penalty)
    widen = functools.partial(may_widen, c=cfg.widen_c, alpha=cfg.widen_alpha)
    trees = list(trees)
    roots = [ROOT] * len(trees)
    budget = [cfg.simulations * (cfg.root_factor if cfg.reroot else 1)] * len(trees)
    done = [bool(t.terminal[ROOT]) for t in trees]
    wave = 0
    with meter(backend) as m:
        while not all(done):
            # the seed moves with the wave so a widened node draws new samples; a tree still
            # evolves the same whatever shares its batch (every live tree takes part in every wave)
            params = dataclasses.replace(cfg.sampling(), seed=cfg.seed + wave)
            wave += 1
            live = [i for i in range(len(trees)) if not done[i]]
            grow: list[int] = []
            leaves: list[int] = []
            for i in live:
                leaf = select_leaf(trees[i], roots[i], select, widen)
                if trees[i].terminal[leaf]:
                    backup(trees[i], leaf, float(trees[i].value[leaf]))  # re-evaluate a finished answer
                else:
                    grow.append(i)
                    leaves.append(leaf)
            new = expand(
                backend,
                [trees[i] for i in grow],
                leaves,
                params,
                max_depth=cfg.max_depth,
                max_tokens=cfg.max_tokens,
                is_final=is_final,
                dedup=cfg.dedup,
            )
            _evaluate(trees, grow, new, cfg, score, value_fn)
            for i in live:
                budget[i] -= 1
                if budget[i] > 0:
                    continue
                if not cfg.reroot:
                    done[i] = True
                    continue
                child = trees[i].best_child(roots[i])
                if child < 0:  # cannot happen after >= 1 simulation from a non-terminal root
                    done[i] = True
                    continue
                roots[i] = child
                done[i] = bool(trees[i].terminal[child])
                budget[i] = cfg.simulations
    selected = roots if cfg.reroot else [commit(t) for t in trees]
    for tree, node in zip(trees, selected):
        tree.meta["search"] = {"algo": "mcts", "selected": int(node), "config": dataclasses.asdict(cfg)}
    return SearchResult(trees, list(selected), m.cost)


def _evaluate(trees, grow, new, cfg: MCTSConfig, score: Scorer, value_fn: ValueFn) -> None:
    """Outcome reward at terminal children, `value_fn` (one call) at the others, then backup."""
    pending_t, pending_n = [], []
    for i, kids in zip(grow, new):
        tree = trees[i]
        for c in kids:
            if tree.terminal[c]:
                tree.reward[c] = cfg.correct_reward if judge(tree, c, score) else cfg.wrong_reward
            else:
                pending_t.append(tree)
                pending_n.append(c)
    values = value_fn(pending_t, pending_n) if pending_n else []
    if len(values) != len(pending_n):
        raise RuntimeError(f"value_fn returned {len(values)} values for {len(pending_n)} nodes")
    for tree, c, v in zip(pending_t, pending_n, values):
        tree.value[c] = float(v)
    for i, kids in zip(grow, new):
        for c in kids:
            backup(trees[i], c, float(trees[i].value[c]))
