"""Baselines that search builds on: greedy, best-of-N, self-consistency, step-level beam search.

All return a `SearchResult` over trees like the other searches: each sampled
solution (or step) is a node, and the node's own evaluation (the scorer's
value) is backed up, so Q reads the same way in every tree.

* `best_of_n`: N complete solutions from the root in one call; the scorer (any
  `ValueFn`: `mean_logprob` by default, `OutcomeValue` for an oracle, a PRM)
  picks one.
* `greedy`: best-of-1 at temperature 0.
* `majority_vote` (self-consistency, Wang et al. 2023): N samples, the most
  frequent extracted final answer wins; ties go to the answer seen first.
* `beam_search`: step-level beam search; every live beam of every tree is
  expanded in one call (``expansions`` samples each, stop at the delimiter),
  the scorer ranks the new steps (one call), finished solutions leave the beam
  and the best ``beam_width`` unfinished ones stay, until ``beam_width``
  solutions are finished or no beam is left.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Callable, Sequence

import numpy as np

from treesearch.backends.base import SamplingParams
from treesearch.search.expand import FinalFn, expand
from treesearch.search.result import SearchResult, meter
from treesearch.search.values import ValueFn, mean_logprob
from treesearch.tree import ROOT, Tree, backup

Extract = Callable[[str], "str | None"]


from treesearch.config import field, require_positive

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class BestOfNConfig:
    n: int = _f(16, "complete solutions sampled per problem")
    temperature: float = _f(1.0, "sampling temperature (0 = greedy)")
    top_p: float = _f(1.0, "nucleus sampling mass")
    max_tokens: int = _f(256, "token budget of one solution")
    seed: int = _f(0, "sampling seed")

    def __post_init__(self):
        require_positive(self, "n", "max_tokens")


@dataclasses.dataclass(frozen=True)
class GreedyConfig:
    max_tokens: int = _f(256, "token budget of the solution")

    def __post_init__(self):
        require_positive(self, "max_tokens")


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    beam_width: int = _f(4, "beams kept per problem, and finished solutions wanted")
    expansions: int = _f(4, "next steps sampled per beam")
    max_depth: int = _f(8, "steps per solution")
    step_max_tokens: int = _f(48, "token budget of one step")
    max_tokens: int = _f(256, "token budget of a whole solution")
    temperature: float = _f(1.0, "sampling temperature of expansions")
    top_p: float = _f(1.0, "nucleus sampling mass")
    dedup: bool = _f(True, "drop sampled steps identical to a sibling")
    step_delimiter: str = _f("\n", "a step ends at this string (the task's step delimiter)")
    seed: int = _f(0, "sampling seed")

    def __post_init__(self):
        require_positive(self, "beam_width", "expansions", "max_depth", "step_max_tokens", "max_tokens")


def _sample_solutions(backend, trees: list[Tree], cfg: BestOfNConfig) -> list[list[int]]:
    params = SamplingParams(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed)
    # every sample is a whole solution, so every child is terminal (depth limit 1)
    return expand(backend, trees, [ROOT] * len(trees), params, max_depth=1, max_tokens=cfg.max_tokens, dedup=False)


def _argmax(values: Sequence[float]) -> int:
    return int(np.argmax(np.asarray(values, dtype=np.float64)))  # ties: first, i.e. lowest id


def best_of_n(backend, trees: Sequence[Tree], config: BestOfNConfig = BestOfNConfig(), *, scorer: ValueFn = mean_logprob) -> SearchResult:
    """N solutions per tree in one `generate` call; the highest-scoring one is selected."""
    trees = list(trees)
    with meter(backend) as m:
        kids = _sample_solutions(backend, trees, config)
        flat_t = [t for t, ks in zip(trees, kids) for _ in ks]
        flat_n = [c for ks in kids for c in ks]
        values = scorer(flat_t, flat_n)
        for t, c, v in zip(flat_t, flat_n, values):
            backup(t, c, float(v))
        selected = [ks[_argmax([t.value[c] for c in ks])] for t, ks in zip(trees, kids)]
    _record(trees, selected, "best-of-n", config)
    return SearchResult(trees, selected, m.cost)


def greedy(backend, trees: Sequence[Tree], config: GreedyConfig = GreedyConfig()) -> SearchResult:
    """One greedy (temperature 0) solution per tree."""
    cfg = BestOfNConfig(n=1, temperature=0.0, max_tokens=config.max_tokens)
    result = best_of_n(backend, trees, cfg, scorer=lambda t, n: [0.0] * len(n))
    _record(result.trees, result.selected, "greedy", config)
    return result


def majority_vote(backend, trees: Sequence[Tree], config: BestOfNConfig = BestOfNConfig(), *, extract: Extract,
                  same: Callable[[str, str], bool] | None = None) -> SearchResult:
    """Self-consistency: the plurality final answer among N samples (``extract(text)``; None abstains).

    Answers are grouped by `same` (the task's equivalence: "1/2" and "0.5" are one vote for
    math; string equality by default); a sample cut at the token limit does not vote.
    Each sample's value is its answer group's vote share; `tree.meta["votes"]` holds the counts
    by group (named by its first answer). The selected node is the first sample giving the
    winning answer (ROOT's first child if none voted).
    """
    from treesearch.search.expand import finished
    from treesearch.voting import AnswerGroups

    trees = list(trees)
    with meter(backend) as m:
        kids = _sample_solutions(backend, trees, config)
        selected = []
        for t, ks in zip(trees, kids):
            groups = AnswerGroups(same)
            answers = [groups.key(a) if a is not None else None
                       for a in (extract(t.text[c]) if finished(t, c) else None for c in ks)]
            votes = collections.Counter(a for a in answers if a is not None)
            # Counter.most_common keeps first-seen order among equal counts
            winner = votes.most_common(1)[0][0] if votes else None
            for c, a in zip(ks, answers):
                share = votes[a] / len(ks) if a is not None else 0.0
                backup(t, c, share)
            selected.append(ks[answers.index(winner)] if winner is not None else ks[0])
            t.meta["votes"] = dict(votes)
    _record(trees, selected, "majority", config)
    return SearchResult(trees, selected, m.cost)


def beam_search(
    backend,
    trees: Sequence[Tree],
    config: BeamConfig = BeamConfig(),
    *,
    scorer: ValueFn = mean_logprob,
    is_final: FinalFn | None = None,
) -> SearchResult:
    """Step-level beam search; selects the best-scoring finished solution (else the best beam)."""
    cfg = config
    trees = list(trees)
    params = SamplingParams(
        n=cfg.expansions,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_tokens=cfg.step_max_tokens,
        stop=(cfg.step_delimiter,),
        include_stop_str_in_output=True,
        seed=cfg.seed,
    )
    beams: list[list[int]] = [[ROOT] for _ in trees]
    finished: list[list[int]] = [[] for _ in trees]
    with meter(backend) as m:
        while any(beams):
            owner = [i for i, bs in enumerate(beams) for _ in bs]
            new = expand(
                backend,
                [trees[i] for i in owner],
                [b for bs in beams for b in bs],
                params,
                max_depth=cfg.max_depth,
                max_tokens=cfg.max_tokens,
                is_final=is_final,
                dedup=cfg.dedup,
            )
            flat_t = [trees[i] for i, ks in zip(owner, new) for _ in ks]
            flat_n = [c for ks in new for c in ks]
            values = scorer(flat_t, flat_n)
            for t, c, v in zip(flat_t, flat_n, values):
                backup(t, c, float(v))
            _next_beams(trees, beams, finished, owner, new, cfg.beam_width)
        selected = []
        for t, fin in zip(trees, finished):
            pool = fin or [n for n in range(1, t.num_nodes)] or [ROOT]
            selected.append(max(pool, key=lambda c: (t.value[c], -c)))
    _record(trees, selected, "beam", cfg)
    return SearchResult(trees, selected, m.cost)


def _next_beams(trees, beams, finished, owner, new, beam_width: int) -> None:
    """In place: each live tree's finished candidates join `finished`, and its beam becomes the best
    unfinished candidates by value (ties to the lower id), as many as `beam_width` leaves room for."""
    pool: list[list[int]] = [[] for _ in trees]
    for i, ks in zip(owner, new):
        pool[i].extend(ks)
    for i, cands in enumerate(pool):
        if not beams[i]:
            continue
        t = trees[i]
        finished[i].extend(c for c in cands if t.terminal[c])
        room = beam_width - len(finished[i])
        live = sorted((c for c in cands if not t.terminal[c]), key=lambda c: (-t.value[c], c))
        beams[i] = live[: max(0, room)]


def _record(trees: list[Tree], selected: list[int], algo: str, cfg) -> None:
    for t, s in zip(trees, selected):
        t.meta["search"] = {"algo": algo, "selected": int(s), "config": dataclasses.asdict(cfg)}
