"""Math-Shepherd Monte-Carlo process labels: how often a step's prefix still reaches the right answer.

For the prefix ``s_{1..t}`` of a solution, sample N completions from the policy
and check each final answer (Wang et al., "Math-Shepherd", 2024)::

    soft(s_t) = (# completions whose answer verifies) / N       in [0, 1]
    hard(s_t) = 1 if any completion verifies else 0            (soft > 0)

A PRM trained on these labels (BCE at step ends) scores a solution by the min
over its steps. The sampling itself is `treesearch.search.values.RolloutValue`
(one `backend.generate` call per batch of nodes, terminal nodes judged
directly); this module adds the label choice, the labelling of every step of
whole solutions in one call, and `solution_tree`, which turns a solution given
as text (a reference, a corrupted reference, a sampled answer) into a chain
`Tree` whose nodes are its steps::

    tree, leaf = solution_tree(backend, problem, ["23+54-17", "77-17", "60", "Answer: 60"])
    [labels] = mc_step_labels(backend, score, [(tree, leaf)], MCConfig(k=8))
    labels.soft  # [1.0, 0.875, 1.0, 1.0]: one per step
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from treesearch.search.values import RolloutConfig, RolloutValue, Scorer
from treesearch.tree import ROOT, Tree

LABELS = ("soft", "hard")


from treesearch.config import field

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class MCConfig:
    """Math-Shepherd rollout labelling."""

    k: int = _f(8, "N: completions sampled from each step (Math-Shepherd: N; 0-temperature rollouts need only 1)")
    temperature: float = _f(1.0, "sampling temperature of the completions (0 = greedy)")
    top_p: float = _f(1.0, "nucleus sampling mass of the completions")
    max_tokens: int = _f(128, "token budget of one completion")
    seed: int = _f(1, "sampling seed of the completions")
    label: str = _f("soft", "value returned by MCValue: 'soft' (fraction of completions correct) or 'hard' (1 if any is correct)")
    signed: bool = _f(True, "MCValue returns 2·label − 1 in [-1, 1] (the ±1 outcome scale of MCTS) instead of [0, 1]")

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"MCConfig.k must be >= 1, got {self.k}")
        if self.label not in LABELS:
            raise ValueError(f"MCConfig.label must be one of {', '.join(LABELS)}, got {self.label!r}")

    def rollout(self) -> RolloutConfig:
        """The `RolloutConfig` that samples these completions (unsigned fractions)."""
        return RolloutConfig(
            k=self.k, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed, signed=False
        )


def hard_label(soft: float) -> bool:
    """Math-Shepherd hard estimation: the step is good when any completion from it verifies."""
    return soft > 0.0


class MCValue:
    """ValueFn: the Math-Shepherd label of each node, ``soft = c/N`` or ``hard = [c > 0]`` (2x − 1 when signed).

    One `backend.generate` call per batch (``config.k`` samples per non-terminal node);
    a terminal node's label is its own outcome (1 right, 0 wrong). `last_soft` keeps
    the soft labels of the latest call.
    """

    def __init__(self, backend, score: Scorer, config: MCConfig = MCConfig()):
        self.config = config
        self.rollouts = RolloutValue(backend, score, config.rollout())
        self.last_soft: list[float] = []

    def __call__(self, trees: Sequence[Tree], nodes: Sequence[int]) -> list[float]:
        soft = self.rollouts(trees, nodes)
        self.last_soft = list(soft)
        labels = soft if self.config.label == "soft" else [float(hard_label(f)) for f in soft]
        return [2.0 * x - 1.0 for x in labels] if self.config.signed else list(labels)


@dataclasses.dataclass
class StepLabels:
    """Labels of every step of one solution.

    problem_id: the tree's problem; nodes: [T] node id of step t (the path, root excluded);
    steps: [T] step texts; soft: [T] fraction of N completions from the prefix ending at
    step t that verify; hard: [T] soft > 0.
    """

    problem_id: str
    nodes: list[int]
    steps: list[str]
    soft: list[float]
    hard: list[bool]


def mc_step_labels(backend, score: Scorer, solutions: Sequence[tuple[Tree, int]], config: MCConfig = MCConfig()) -> list[StepLabels]:
    """Soft and hard labels for every step on the path to each ``(tree, leaf)``, in ONE generate call."""
    flat_trees: list[Tree] = []
    flat_nodes: list[int] = []
    paths = []
    for tree, leaf in solutions:
        path = tree.path(leaf)[1:]
        paths.append(path)
        flat_trees.extend([tree] * len(path))
        flat_nodes.extend(path)
    soft = RolloutValue(backend, score, config.rollout())(flat_trees, flat_nodes) if flat_nodes else []
    out, at = [], 0
    for (tree, _), path in zip(solutions, paths):
        fr = [float(x) for x in soft[at : at + len(path)]]
        at += len(path)
        out.append(StepLabels(tree.problem_id, list(path), [tree.text[n] for n in path], fr, [hard_label(x) for x in fr]))
    return out


def split_steps(text: str, delimiter: str = "\n") -> list[str]:
    """The steps of a solution text (delimiters removed, empty steps dropped)."""
    return [s for s in text.split(delimiter) if s.strip()]


def solution_tree(
    backend,
    problem: Any,
    steps: Sequence[str],
    *,
    delimiter: str = "\n",
    terminal: bool = True,
) -> tuple[Tree, int]:
    """A chain `Tree` holding `steps` (without delimiters) under the prompt of `problem`; returns (tree, last node).

    `problem` needs ``id``, ``prompt`` and ``answer`` (a `tasks.base.Problem`). Every step but
    the last gets the delimiter appended, as the policy writes steps; with `terminal` the last
    step is a finished solution (no delimiter, marked terminal), else it gets one too. Token ids
    come from ``backend.tokenize`` of each step on its own.
    """
    if not steps:
        raise ValueError(f"problem {problem.id!r}: a solution needs at least one step")
    tree = Tree(
        problem_id=problem.id,
        prompt=problem.prompt,
        prompt_ids=backend.encode_prompt(problem.prompt),
        answer=str(getattr(problem, "answer", "")),
        meta=dict(getattr(problem, "meta", {}) or {}),
    )
    node = ROOT
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        text = step if (last and terminal) else step + delimiter
        node = tree.add_child(
            node, text=text, token_ids=backend.tokenize(text), logprobs=(), finish_reason="eos" if last and terminal else "stop",
            terminal=last and terminal,
        )
    return tree, node
