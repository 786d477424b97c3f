"""What every search returns: the trees, the node each one commits to, and what it cost.

Cost is measured, not estimated: token counts come from the backend's own
`BackendStats` (prefill = context tokens actually computed after prefix-cache
reuse), wall time from the clock, and ``core_s = wall_s - backend_s`` is the
time the search spent outside backend calls (selection, bookkeeping, scoring).
"""
from __future__ import annotations

import dataclasses
import functools
import operator
import time
from typing import Any, Iterable

from treesearch.backends.base import BackendStats
from treesearch.tree import Tree

@dataclasses.dataclass
class Cost(BackendStats):
    """Resources one search used: the backend's counters over the search (`BackendStats`; its
    ``seconds`` is the time inside backend calls, also readable as ``backend_s``) plus wall time.
    Adding two costs adds every field."""

    wall_s: float = 0.0

    @property
    def backend_s(self) -> float:
        return self.seconds

    @property
    def core_s(self) -> float:
        return max(0.0, self.wall_s - self.backend_s)

    @property
    def cache_hit_rate(self) -> float:
        """Fraction of requested context tokens the backend served from its prefix cache."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def core_overhead(self) -> float:
        """Fraction of wall time spent outside backend calls."""
        return self.core_s / self.wall_s if self.wall_s > 0 else 0.0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Cost":
        """From `as_dict` or `dataclasses.asdict` output (derived keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"seconds"}
        return cls(seconds=d.get("backend_s", d.get("seconds", 0.0)), **{k: d.get(k, 0) for k in names})

    def split(self, n: int) -> "Cost":
        """An equal share of this cost for each of `n` problems searched together."""
        return Cost(**{f.name: getattr(self, f.name) / n for f in dataclasses.fields(self)})

    @classmethod
    def total(cls, shares: "Iterable[dict[str, Any]]") -> "Cost":
        """The sum of `split` shares (as dicts), counters rounded back to integers."""
        sum_ = functools.reduce(operator.add, (cls.from_dict(d) for d in shares), cls())
        return cls(**{f.name: round(getattr(sum_, f.name)) if isinstance(f.default, int) else getattr(sum_, f.name)
                      for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["backend_s"] = d.pop("seconds")
        d.update(computed_tokens=self.computed_tokens, core_s=self.core_s, core_overhead=self.core_overhead,
                 cache_hit_rate=self.cache_hit_rate)
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


class meter:
    """Context manager filling a `Cost` from the clock and `backend.stats` deltas.

        with meter(backend) as m:
            ...search...
        m.cost
    """

    def __init__(self, backend):
        self.backend = backend
        self.cost = Cost()

    def __enter__(self) -> "meter":
        self._before = self.backend.stats.snapshot()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._t0
        self.cost = Cost(**dataclasses.asdict(self.backend.stats.since(self._before)), wall_s=wall)


@dataclasses.dataclass
class SearchResult:
    """trees[i] was searched for problem i; selected[i] is the node whose path is its answer
    (its text is ``trees[i].text_of(selected[i])``; ROOT when nothing was generated)."""

    trees: list[Tree]
    selected: list[int]
    cost: Cost

    def answers(self) -> list[str]:
        return [t.text_of(n) for t, n in zip(self.trees, self.selected)]

    def __add__(self, other: "SearchResult") -> "SearchResult":
        return SearchResult(self.trees + other.trees, self.selected + other.selected, self.cost + other.cost)
