"""LLM self-evaluation as a step value (MCTS-DPO, Xie et al., 2024).

The policy judges its own latest step: the question, the steps so far and the
new step go into a judging prompt (a new user turn, through the backend's
prompt template), and the two candidate answers are scored by teacher forcing::

    c = P(yes | judge prompt) / (P(yes | judge prompt) + P(no | judge prompt))

with ``P(answer) = exp(Σ log π over the answer's tokens)``, so answers of any
token length work and the mass the model puts elsewhere cancels. The value
combines it with the outcome, as in MCTS-DPO::

    V(node) = +1 / −1 from the scorer        at a terminal node (its answer checked)
    V(node) = weight · (2c − 1) in [−w, w]    elsewhere

One `backend.logprobs` call per batch (two rows per non-terminal node).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from treesearch.search.values import Scorer, judge
from treesearch.tree import ROOT, Tree

DEFAULT_TEMPLATE = "{question}\nSteps so far:\n{previous}\nNew step: {step}\nIs this step correct? (Yes/No)"


from treesearch.config import field

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class SelfEvalConfig:
    """The judging prompt, its two answers, and how the confidence becomes a value."""

    template: str = _f(DEFAULT_TEMPLATE, "judging prompt (one user turn) with fields {question}, {previous} (steps before, joined), {step} (the step judged)")
    yes: str = _f("Yes", "answer meaning the step is correct (any number of tokens)")
    no: str = _f("No", "answer meaning the step is wrong (any number of tokens)")
    weight: float = _f(1.0, "non-terminal value = weight · (2c − 1): how much the confidence counts against the ±1 outcomes")
    correct_reward: float = _f(1.0, "value of a terminal node whose answer verifies")
    wrong_reward: float = _f(-1.0, "value of any other terminal node")

    def __post_init__(self):
        if not self.yes or not self.no or self.yes == self.no:
            raise ValueError(f"SelfEvalConfig.yes and .no must be two different non-empty answers, got {self.yes!r}, {self.no!r}")
        if "{step}" not in self.template:
            raise ValueError("SelfEvalConfig.template must contain {step}")


def yes_probability(logp_yes: float, logp_no: float) -> float:
    """P(yes) / (P(yes) + P(no)) from the two answers' log-probabilities (a sigmoid of their difference)."""
    d = logp_no - logp_yes
    if d > 0:  # written both ways so exp never overflows
        e = math.exp(-d)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(d))


class SelfEvalValue:
    """ValueFn: MCTS-DPO self-evaluation combined with terminal outcomes (see the module docstring).

    `confidence(trees, nodes)` -> [len(nodes)] c in [0, 1] (0.5 at the root, which has no step),
    one `logprobs` call; `last_confidence` keeps those of the latest value call (None at terminals,
    which are not judged by the policy).
    """

    def __init__(self, backend, score: Scorer, config: SelfEvalConfig = SelfEvalConfig()):
        self.backend, self.score, self.config = backend, score, config
        self._yes, self._no = backend.tokenize(config.yes), backend.tokenize(config.no)
        self.last_confidence: list[float | None] = []

    def judge_prompt(self, tree: Tree, node: int) -> str:
        """The judging user turn for the last step of the path to `node`."""
        path = tree.path(node)[1:]
        return self.config.template.format(
            question=tree.prompt,
            previous="".join(tree.text[n] for n in path[:-1]).rstrip("\n"),
            step=tree.text[path[-1]].strip(),
        )

    def confidence(self, trees: Sequence[Tree], nodes: Sequence[int]) -> list[float]:
        ask = [i for i, n in enumerate(nodes) if n != ROOT]
        prompts = [self.backend.encode_prompt(self.judge_prompt(trees[i], nodes[i])) for i in ask]
        if not prompts:
            return [0.5] * len(nodes)
        lps = self.backend.logprobs([p for p in prompts for _ in (0, 1)], [a for _ in prompts for a in (self._yes, self._no)])
        out = [0.5] * len(nodes)
        for j, i in enumerate(ask):
            out[i] = yes_probability(math.fsum(lps[2 * j]), math.fsum(lps[2 * j + 1]))
        return out

    def __call__(self, trees: Sequence[Tree], nodes: Sequence[int]) -> list[float]:
        cfg = self.config
        values = [0.0] * len(nodes)
        conf: list[float | None] = [None] * len(nodes)
        todo = []
        for i, (t, n) in enumerate(zip(trees, nodes)):
            if t.terminal[n]:
                values[i] = cfg.correct_reward if judge(t, n, self.score) else cfg.wrong_reward
            else:
                todo.append(i)
        if todo:
            for i, c in zip(todo, self.confidence([trees[i] for i in todo], [nodes[i] for i in todo])):
                conf[i] = c
                values[i] = cfg.weight * (2.0 * c - 1.0)
        self.last_confidence = conf
        return values
