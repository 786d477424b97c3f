"""Verifier-guided test-time search (after huggingface/search-and-learn): weighted best-of-N and DVTS.

The verifier is any `ValueFn` whose values are scores in [0, 1], typically a
process reward model (`treesearch.rewards.prm.PRMScorer`, unsigned, its step
scores aggregated over the path as last / min / prod). Nothing here sees a gold
answer.

* `weighted_best_of_n`: N whole solutions (`best_of_n`'s sampling and scoring);
  the answer is the group of equivalent final answers whose solutions' scores
  sum highest (`treesearch.voting.weighted_plurality`), represented by its
  highest-scored member. A solution cut at the depth or token limit gives no vote.
* `dvts` (diverse verifier tree search): the budget of N samples per step is
  split into N / M independent subtrees of beam width M. Every step, each
  subtree's one live path is extended by M sampled steps and the verifier keeps
  the best of them; a subtree ends when the kept step ends its solution, so
  each subtree yields one solution. The first step of all subtrees is one
  request of N samples from the root, dealt M to a subtree; later, subtrees
  whose kept paths meet on the same node draw distinct samples of it (k·M in one
  request), so they do not replay each other. The answer is chosen among the
  N / M subtree solutions by `choose` (``select``: the best score, or the
  score-weighted vote).

`choose` is the one answer rule over scored candidate solutions (also used for
test-time MCTS with a PRM in `treesearch.evaluate`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from treesearch.backends.base import SamplingParams
from treesearch.config import field as _f, require_positive
from treesearch.search.baselines import BestOfNConfig, _record, best_of_n
from treesearch.search.expand import FinalFn, attach, finished, sample_counts
from treesearch.search.result import SearchResult, meter
from treesearch.search.values import ValueFn
from treesearch.tree import ROOT, Tree, backup
from treesearch.voting import Same, weighted_plurality

Extract = Callable[[str], "str | None"]
SELECTS = ("vote", "score")


def choose(tree: Tree, nodes: Sequence[int], weights: Sequence[float], *, select: str, extract: Extract,
           same: Same | None = None) -> int:
    """The answer node among candidate solutions `nodes` with verifier scores `weights` ([len(nodes)], in [0, 1]).

    ``select="vote"``: the answer group (by `same`) whose finished members' weights sum highest,
    represented by its highest-weighted member (`weighted_plurality`); ``"score"``: the finished
    candidate of highest weight. Cut solutions never vote or win while a finished one exists; with
    no answer to vote on, the highest-weighted candidate (finished first); ROOT when `nodes` is empty.
    """
    if select not in SELECTS:
        raise ValueError(f"select must be one of {', '.join(SELECTS)}, got {select!r}")
    if len(nodes) != len(weights):
        raise ValueError(f"choose: {len(nodes)} nodes but {len(weights)} weights")
    if not nodes:
        return ROOT
    done = [finished(tree, n) for n in nodes]
    if select == "vote":
        answers = [extract(tree.text_of(n)) if d else None for n, d in zip(nodes, done)]
        _, index = weighted_plurality(answers, weights, same)
        if index >= 0:
            return int(nodes[index])
    pool = [j for j in range(len(nodes)) if done[j]] or list(range(len(nodes)))
    return int(nodes[max(pool, key=lambda j: (float(weights[j]), -nodes[j]))])


def weighted_best_of_n(backend, trees: Sequence[Tree], config: BestOfNConfig = BestOfNConfig(), *, scorer: ValueFn,
                       extract: Extract, same: Same | None = None) -> SearchResult:
    """Weighted best-of-N: `best_of_n` with `scorer`, then the score-weighted vote over its N solutions."""
    res = best_of_n(backend, trees, config, scorer=scorer)
    selected = [choose(t, t.children[ROOT], [float(t.value[c]) for c in t.children[ROOT]], select="vote",
                       extract=extract, same=same) for t in res.trees]
    _record(res.trees, selected, "weighted-bon", config)
    return SearchResult(res.trees, selected, res.cost)


@dataclasses.dataclass(frozen=True)
class DVTSConfig:
    """DVTS: N samples per step over N / M subtrees of beam width M (see the module docstring)."""

    n: int = _f(16, "N: the budget, samples per step; the search runs N / beam_width independent subtrees")
    beam_width: int = _f(4, "M: steps sampled per subtree per step (the verifier keeps the best one); must divide n")
    select: str = _f("vote", "the answer among the subtrees' solutions: vote (verifier-weighted vote over equivalent answers) or score (the best-scored)")
    max_depth: int = _f(8, "steps per solution")
    step_max_tokens: int = _f(48, "token budget of one step")
    max_tokens: int = _f(256, "token budget of a whole solution")
    temperature: float = _f(1.0, "sampling temperature")
    top_p: float = _f(1.0, "nucleus sampling mass")
    dedup: bool = _f(True, "fold a subtree's identical sampled steps into one candidate")
    step_delimiter: str = _f("\n", "a step ends at this string (the task's step delimiter)")
    seed: int = _f(0, "sampling seed")

    def __post_init__(self):
        require_positive(self, "n", "beam_width", "max_depth", "step_max_tokens", "max_tokens")
        if self.n % self.beam_width:
            raise ValueError(f"DVTSConfig.n ({self.n}) must be a multiple of beam_width ({self.beam_width})")
        if self.select not in SELECTS:
            raise ValueError(f"DVTSConfig.select must be one of {', '.join(SELECTS)}, got {self.select!r}")

    @property
    def subtrees(self) -> int:
        return self.n // self.beam_width


def dvts(backend, trees: Sequence[Tree], config: DVTSConfig = DVTSConfig(), *, scorer: ValueFn, extract: Extract,
         same: Same | None = None, is_final: FinalFn | None = None) -> SearchResult:
    """Diverse verifier tree search over every tree; each step of all trees is one round of `generate` calls.

    ``tree.meta["dvts"]``: ``solutions`` [N / M] the node each subtree ended on, ``samples`` [steps]
    steps sampled per step (M per live subtree)."""
    cfg = config
    trees = list(trees)
    at: list[list[int | None]] = [[ROOT] * cfg.subtrees for _ in trees]  # each subtree's live node; None once ended
    ended: list[list[int]] = [[ROOT] * cfg.subtrees for _ in trees]
    samples: list[list[int]] = [[] for _ in trees]
    with meter(backend) as meter_:
        while any(a is not None for row in at for a in row):
            for i, row in enumerate(at):
                if any(a is not None for a in row):
                    samples[i].append(cfg.beam_width * sum(a is not None for a in row))
            for (i, s), nodes in _extend(backend, trees, at, cfg, scorer, is_final).items():
                t = trees[i]
                best = max(nodes, key=lambda c: (float(t.value[c]), -c))  # the verifier keeps the best step
                if t.terminal[best]:
                    at[i][s], ended[i][s] = None, best
                else:
                    at[i][s] = best
        selected = [choose(t, sol, [float(t.value[c]) for c in sol], select=cfg.select, extract=extract, same=same)
                    for t, sol in zip(trees, ended)]
    for t, sol, per_step in zip(trees, ended, samples):
        t.meta["dvts"] = {"solutions": [int(c) for c in sol], "samples": per_step}
    _record(trees, selected, "dvts", cfg)
    return SearchResult(trees, selected, meter_.cost)


def _extend(backend, trees: list[Tree], at: list[list[int | None]], cfg: DVTSConfig, scorer: ValueFn,
            is_final: FinalFn | None) -> dict[tuple[int, int], list[int]]:
    """One step of every live subtree: M samples each (k·M from a node k subtrees share, dealt M apiece),
    attached under its node, the new children scored in one `scorer` call and backed up.
    Returns {(tree index, subtree): its candidate child nodes}."""
    m = cfg.beam_width
    meets: dict[tuple[int, int], list[int]] = {}  # (tree, live node) -> the subtrees there
    for i, row in enumerate(at):
        for s, node in enumerate(row):
            if node is not None:
                meets.setdefault((i, node), []).append(s)
    keys = list(meets)
    params = SamplingParams(n=m, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.step_max_tokens,
                            stop=(cfg.step_delimiter,), include_stop_str_in_output=True, seed=cfg.seed)
    outs = sample_counts(backend, [trees[i] for i, _ in keys], [n for _, n in keys], [m * len(meets[k]) for k in keys], params)
    kw = dict(max_depth=cfg.max_depth, max_tokens=cfg.max_tokens, is_final=is_final, dedup=cfg.dedup)
    cands: dict[tuple[int, int], list[int]] = {}
    fresh: list[tuple[int, int]] = []
    for (i, node), comps in zip(keys, outs):
        for j, s in enumerate(meets[(i, node)]):
            got = attach(trees[i], node, comps[j * m:(j + 1) * m], **kw)
            cands[(i, s)] = [c for c, _, _ in got]
            fresh.extend((i, c) for c, _, is_new in got if is_new)
    values = scorer([trees[i] for i, _ in fresh], [c for _, c in fresh]) if fresh else []
    for (i, c), v in zip(fresh, values):
        backup(trees[i], c, float(v))
    return cands


__all__ = ["DVTSConfig", "SELECTS", "choose", "dvts", "weighted_best_of_n"]
