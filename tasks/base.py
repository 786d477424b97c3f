"""What every task adapter shares: the problem record and the adapter protocol.

A task turns a split and a seed into `Problem`s and judges a completion. The
search core only sees `Problem.prompt` (the user turn), the step delimiter and
the `score` callable; it never imports a task module.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable, Protocol, runtime_checkable

SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem.

    id: stable identifier, unique within a task (e.g. ``arith-test-3-000017``).
    prompt: the user turn shown to the policy (no template applied).
    answer: the gold final answer, as text.
    solution: a reference solution in the task's step format (may be empty).
    meta: task-specific facts (number of operations, tests for code, ...).
    """

    id: str
    prompt: str
    answer: str
    solution: str = ""
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@runtime_checkable
class Task(Protocol):
    name: str
    step_delimiter: str

    def problems(self, split: str, n: int, *, seed: int = 0) -> list[Problem]: ...

    def score(self, problem: Problem, completion: str) -> float:
        """1.0 when the completion's final answer is right, else 0.0."""
        ...


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


def draw_distinct(
    n: int, split: str, sample: Callable[[], "tuple[str, Callable[[int], Problem]] | None"], *, limit: int, what: str
) -> list[Problem]:
    """`n` problems of `split` from a seeded `sample()`, distinct by key.

    `sample()` draws once from the caller's generator and returns (key, build) or None
    for a rejected draw; a key seen before or belonging to the other split is skipped;
    build(i) makes problem number i. After `limit` draws: ValueError naming `what`.
    """
    seen: set[str] = set()
    out: list[Problem] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > limit:
            raise ValueError(f"cannot draw {n} distinct {split} {what}")
        drawn = sample()
        if drawn is None:
            continue
        key, build = drawn
        if key in seen or split_of(key) != split:
            continue
        seen.add(key)
        out.append(build(len(out)))
    return out


def assert_disjoint(evaluated: list[Problem], searched: list[Problem], *, what: str = "evaluation") -> None:
    """ValueError when a problem is in both lists (same id or same prompt): no evaluating on searched problems."""
    ids = {p.id for p in searched}
    prompts = {p.prompt for p in searched}
    both = [p.id for p in evaluated if p.id in ids or p.prompt in prompts]
    if both:
        shown = ", ".join(both[:5]) + (" ..." if len(both) > 5 else "")
        raise ValueError(f"{len(both)} {what} problems are also searched/trained on ({shown}): "
                         "give the task separate train and test splits")


def split_of(key: str, *, test_fraction_per_mille: int = 100) -> str:
    """Deterministic split by content hash, so train and test can never overlap."""
    bucket = zlib.crc32(key.encode()) % 1000
    return "test" if bucket < test_fraction_per_mille else "train"


def take(items: list, n: int, *, seed: int, what: str) -> list:
    """The first `n` of a fixed list (seed 0: file order; seed > 0: a seeded shuffle first).

    For tasks read from a file, where the split is the whole file. Asking for more
    than there are is an error naming `what`, never a silent truncation.
    """
    import random

    check_seed(seed)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if n > len(items):
        raise ValueError(f"{what} has {len(items)} problems; asked for {n}")
    order = list(items)
    if seed:
        random.Random(f"take/{seed}").shuffle(order)
    return order[:n]
