"""Votes over final answers, grouped by equivalence rather than by string.

"1/2", "0.5" and "\\frac{1}{2}" are one answer for a math task: every vote in
the engine (maj@k in `treesearch.evaluate`, the test-time MCTS plurality
reward and visit vote, the self-consistency baseline) groups answers with the
task's ``same_answer(a, b) -> bool`` (`tasks.suite.SuiteTask.same_answer`:
math-verify equivalence for math, string equality otherwise) and counts
groups. A group is named by its first member, so results are deterministic.

    >>> groups = AnswerGroups(lambda a, b: float(a) == float(b))
    >>> [groups.key(a) for a in ["0.5", "1", ".5"]]
    ['0.5', '1', '0.5']
"""
from __future__ import annotations

import collections
from typing import Callable, NamedTuple, Sequence

Same = Callable[[str, str], bool]

__all__ = ["Same", "AnswerGroups", "Reading", "answer_reading", "plurality", "string_equal", "weighted_plurality"]


def string_equal(a: str, b: str) -> bool:
    return a == b


class Reading(NamedTuple):
    """How a task's answers are read: `extract` (text -> answer, None when there is none), `same`
    (the equivalence votes group by; None: string equality) and `states` (whether its solutions state
    an answer, so that a missing one counts as unparsed; code does not)."""

    extract: Callable[[str], str | None]
    same: Same | None
    states: bool


def answer_reading(task) -> Reading:
    """`task`'s `Reading`: its ``extract_answer`` (default: the answer-line and ``\\boxed{}`` reader
    `verifiers.exact.extract_final_answer`), its ``same_answer``, and whether its ``verifier`` is not code."""
    from verifiers.exact import extract_final_answer

    extract = getattr(task, "extract_answer", None) or extract_final_answer
    return Reading(extract, getattr(task, "same_answer", None), getattr(task, "verifier", None) != "code")


class AnswerGroups:
    """Answers seen so far, each mapped to the first equivalent answer (its group's key).

    `key(a)` compares `a` with one member of each existing group (`same` is
    called at most once per (answer, group) and memoised), so grouping k answers
    into g groups costs at most k·g comparisons.
    """

    def __init__(self, same: Same | None = None) -> None:
        self.same = same or string_equal
        self._keys: list[str] = []
        self._of: dict[str, str] = {}

    def key(self, answer: str) -> str:
        if answer in self._of:
            return self._of[answer]
        for k in self._keys:
            if self.same(k, answer):
                self._of[answer] = k
                return k
        self._keys.append(answer)
        self._of[answer] = answer
        return answer


def plurality(answers: Sequence[str | None], same: Same | None = None) -> tuple[str | None, int]:
    """(the winning group's key, index of its first member) over non-None answers; ties go to the group
    seen first. (None, -1) when nobody answered."""
    groups = AnswerGroups(same)
    keys = [groups.key(a) if a is not None else None for a in answers]
    counts = collections.Counter(k for k in keys if k is not None)
    if not counts:
        return None, -1
    best = max(counts.values())
    index = next(i for i, k in enumerate(keys) if k is not None and counts[k] == best)
    return keys[index], index


def weighted_plurality(answers: Sequence[str | None], weights: Sequence[float],
                       same: Same | None = None) -> tuple[str | None, int]:
    """Weighted best-of-N (search-and-learn): the answer group whose members' weights (e.g. PRM
    scores) sum highest; (its key, index of its highest-weighted member). None answers do not vote;
    ties go to the group seen first. With all weights 1 this is `plurality` (bar the member index).
    (None, -1) when nobody answered."""
    if len(answers) != len(weights):
        raise ValueError(f"weighted_plurality: {len(answers)} answers but {len(weights)} weights")
    groups = AnswerGroups(same)
    keys = [groups.key(a) if a is not None else None for a in answers]
    totals: dict[str, float] = {}
    for k, w in zip(keys, weights):
        if k is not None:
            totals[k] = totals.get(k, 0.0) + float(w)
    if not totals:
        return None, -1
    best = max(totals.values())
    winner = next(k for k in totals if totals[k] == best)  # dicts keep first-seen order
    index = max((i for i, k in enumerate(keys) if k == winner), key=lambda i: (float(weights[i]), -i))
    return winner, index
