"""Compare searches at equal compute: find the budget knob value whose run costs a target.

Strategies spend tokens differently per unit of their budget knob (a tree of
``max_width`` trajectories shares prefixes, ``n`` independent samples do not), so
a fair comparison fixes the tokens computed, not the knob::

    ind = best_of_n(backend, trees, BestOfNConfig(n=16))
    match = equal_tokens(lambda w: run_segments(max_width=w), ind.cost.computed_tokens, lo=4, hi=128)
    match.knob, match.result, match.ratio  # within 10% of independent's tokens, or `ok` is False

`equal_tokens` searches an integer knob whose cost grows with it, guessing in
proportion and narrowing a bracket (sampling noise makes cost only roughly
monotone in the knob, so every run is kept and the closest one wins).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, TypeVar

R = TypeVar("R")


def computed_tokens(result: Any) -> float:
    """Tokens the backend computed for a `SearchResult` (prefill after prefix-cache reuse + decode)."""
    return float(result.cost.computed_tokens)


@dataclasses.dataclass(frozen=True)
class Match(Generic[R]):
    knob: int  # the knob value whose run came closest to the target
    result: R  # that run
    tokens: float  # what it cost
    target: float
    tol: float
    tried: tuple[tuple[int, float], ...]  # (knob, tokens) of every run, in order

    @property
    def ratio(self) -> float:
        return self.tokens / self.target

    @property
    def ok(self) -> bool:
        """Within `tol` of the target (relative)."""
        return abs(self.ratio - 1.0) <= self.tol


def equal_tokens(
    run: Callable[[int], R],
    target: float,
    *,
    lo: int,
    hi: int,
    start: int | None = None,
    tol: float = 0.1,
    stop_within: float = 0.03,
    max_runs: int = 8,
    cost: Callable[[R], float] = computed_tokens,
) -> Match[R]:
    """Search ``run(knob)`` over integers ``lo..hi`` (first `start`, default `lo`) for the run whose
    `cost` is closest to `target`.

    Each next knob is the proportional guess ``knob * target / cost`` clamped into the bracket
    the runs so far leave (cost grows with the knob), so a knob is never run twice. Stops once a
    run is within `stop_within` of the target (relative), the bracket is empty, or after
    `max_runs` runs; `tol` only sets `Match.ok`.
    """
    if not 1 <= lo <= hi:
        raise ValueError(f"equal_tokens: need 1 <= lo <= hi, got lo={lo}, hi={hi}")
    if target <= 0:
        raise ValueError(f"equal_tokens: target must be > 0, got {target}")
    tried: list[tuple[int, float, R]] = []
    a, b = lo, hi
    knob = min(max(start if start is not None else lo, lo), hi)
    while len(tried) < max_runs:
        res = run(knob)
        spent = cost(res)
        tried.append((knob, spent, res))
        if abs(spent / target - 1.0) <= stop_within:
            break
        a, b = (knob + 1, b) if spent < target else (a, knob - 1)
        if a > b:
            break
        knob = min(max(round(knob * target / max(spent, 1e-9)), a), b)
    knob, spent, res = min(tried, key=lambda x: abs(x[1] - target))
    return Match(knob, res, spent, float(target), tol, tuple((k, t) for k, t, _ in tried))
