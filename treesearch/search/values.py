"""Value functions: how a search judges a node it cannot yet finish.

The protocol is one batched call over (tree, node) pairs, so a value that needs
the model (rollouts, a PRM, self-evaluation) makes one backend call per wave::

    ValueFn = Callable[[Sequence[Tree], Sequence[int]], list[float | None]]
ROLLOUTS = "rollouts"  # tree.meta key: {node id: [correct, sampled]} of recorded rollouts from that node
    value_fn(trees, nodes)[i]  # value of node nodes[i] of trees[i]

Outcomes come from a `Scorer`, ``score(tree, text) -> float`` (1.0 when the
finished solution text is right, 0.0 when wrong), built by the runner from a
task's ``score(problem, completion)``.

Built in:

* `zero_value`: V = 0 everywhere (MCTS driven by terminal outcomes, but every
  new interior child is backed up with 0 as if 0 were a measured return);
* `unknown_value` (the ``counts`` method): None everywhere, i.e. "not judged":
  MCTS leaves such a child unvisited, so Q holds judged terminal outcomes only
  (with `MCTSConfig.value_prior`, their Beta posterior mean);
* `mean_logprob`: the policy's mean token log-probability along the path (a
  confidence score for best-of-N or beam search without a verifier);
* `OutcomeValue`: ±1 from the scorer at terminal nodes (MCTS-DPO), a constant
  elsewhere; sets `tree.verdict` as it goes;
* `RolloutValue`: Math-Shepherd / OmegaPRM Monte-Carlo value, the fraction of k
  completions sampled from the node whose final answer verifies (mapped to
  [-1, 1] by ``2·f - 1`` when ``signed``, to share the ±1 outcome scale).

A process reward model or implicit PRM plugs in as any object with this
``__call__``. A value function that samples or reads tokens says how many per
node of its latest call in ``last_tokens`` (`value_tokens`), which is how a
search under a token budget counts rollouts and PRM forward passes.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from treesearch.backends.base import SamplingParams
from treesearch.tree import CORRECT, WRONG, Tree

Scorer = Callable[[Tree, str], float]
ValueFn = Callable[[Sequence[Tree], Sequence[int]], list[float | None]]
ROLLOUTS = "rollouts"  # tree.meta key: {node id: [correct, sampled]} of recorded rollouts from that node


def judge(tree: Tree, node: int, score: Scorer) -> bool:
    """Score the solution text ending at `node`, record `tree.verdict[node]`, return whether it is correct.

    A solution cut at a depth or token limit (`treesearch.search.expand.finished` False) is wrong unread.
    """
    from treesearch.search.expand import finished

    ok = finished(tree, node) and float(score(tree, tree.text_of(node))) >= 0.5
    tree.verdict[node] = CORRECT if ok else WRONG
    return ok


def zero_value(trees: Sequence[Tree], nodes: Sequence[int]) -> list[float]:
    """V = 0 for every node."""
    return [0.0] * len(nodes)


def unknown_value(trees: Sequence[Tree], nodes: Sequence[int]) -> list[None]:
    """None (not judged) for every node: values come from judged outcomes only."""
    return [None] * len(nodes)


def value_tokens(value_fn, n: int) -> list[int]:
    """[n] tokens `value_fn` sampled or read per node in its latest call (``last_tokens``; 0 if it has none)."""
    got = getattr(value_fn, "last_tokens", None)
    if got is None:
        return [0] * n
    if len(got) != n:
        raise RuntimeError(f"value_fn reported last_tokens for {len(got)} nodes, evaluated {n}")
    return [int(t) for t in got]


def record_rollouts(tree: Tree, node: int, correct: int, sampled: int) -> None:
    """Add judged rollouts from `node` to ``tree.meta["rollouts"]`` (counted as judged outcomes by pairs)."""
    table = tree.meta.setdefault(ROLLOUTS, {})
    c, n = table.get(str(node), (0, 0))
    table[str(node)] = [int(c) + int(correct), int(n) + int(sampled)]


def mean_logprob(trees: Sequence[Tree], nodes: Sequence[int]) -> list[float]:
    """Mean per-token log-probability of the generated path to each node (0 for the root)."""
    out = []
    for tree, node in zip(trees, nodes):
        path = tree.path(node)[1:]
        n_tok = sum(len(tree.token_ids[n]) for n in path)
        out.append(float(sum(tree.prior[path])) / n_tok if n_tok else 0.0)
    return out


class OutcomeValue:
    """±1 by the scorer at terminal nodes, `unfinished` at the others (outcome reward, MCTS-DPO)."""

    def __init__(self, score: Scorer, *, correct: float = 1.0, wrong: float = -1.0, unfinished: float = 0.0):
        self.score, self.correct, self.wrong, self.unfinished = score, correct, wrong, unfinished

    def __call__(self, trees: Sequence[Tree], nodes: Sequence[int]) -> list[float]:
        out = []
        for tree, node in zip(trees, nodes):
            if tree.terminal[node]:
                out.append(self.correct if judge(tree, node, self.score) else self.wrong)
            else:
                out.append(self.unfinished)
        return out


class Signed:
    """``2v − 1`` of a ValueFn whose values are in [0, 1] (a PRM's p onto MCTS's ±1 outcome scale);
    None stays None, and the wrapped function's `last_tokens` are its own."""

    def __init__(self, value_fn: ValueFn):
        self.value_fn = value_fn

    def __call__(self, trees: Sequence[Tree], nodes: Sequence[int]) -> list[float | None]:
        return [None if v is None else 2.0 * float(v) - 1.0 for v in self.value_fn(trees, nodes)]

    @property
    def last_tokens(self):
        return getattr(self.value_fn, "last_tokens", None)


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    k: int = dataclasses.field(default=4, metadata={"help": "completions sampled from each node"})
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "sampling temperature of the rollouts (0 = greedy, then k = 1 suffices)"})
    top_p: float = dataclasses.field(default=1.0, metadata={"help": "nucleus sampling mass"})
    max_tokens: int = dataclasses.field(default=128, metadata={"help": "token budget of one rollout"})
    seed: int = dataclasses.field(default=1, metadata={"help": "sampling seed; differs from the expansion seed so rollouts do not replay the children"})
    signed: bool = dataclasses.field(default=True, metadata={"help": "return 2·f - 1 in [-1, 1] instead of the fraction f in [0, 1]"})
    record: bool = dataclasses.field(default=False, metadata={"help": "record each node's rollout outcomes in tree.meta['rollouts'] (judged outcomes for pair selection)"})

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"RolloutConfig.k must be >= 1, got {self.k}")


class RolloutValue:
    """Monte-Carlo value: fraction of `config.k` completions from the node that verify.

    One `backend.generate` call per batch of nodes; terminal nodes are judged directly.
    `last_fractions` keeps the raw fractions of the latest call (the Math-Shepherd soft labels),
    `last_tokens` the tokens sampled per node.
    """

    def __init__(self, backend, score: Scorer, config: RolloutConfig = RolloutConfig()):
        self.backend, self.score, self.config = backend, score, config
        self.last_fractions: list[float] = []
        self.last_tokens: list[int] = []

    def __call__(self, trees: Sequence[Tree], nodes: Sequence[int]) -> list[float]:
        cfg = self.config
        frac = [0.0] * len(nodes)
        tokens = [0] * len(nodes)
        todo = [i for i, (t, n) in enumerate(zip(trees, nodes)) if not t.terminal[n]]
        for i, (t, n) in enumerate(zip(trees, nodes)):
            if t.terminal[n]:
                frac[i] = 1.0 if judge(t, n, self.score) else 0.0
        if todo:
            params = SamplingParams(
                n=cfg.k, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed
            )
            outs = self.backend.generate([trees[i].context_ids(nodes[i]) for i in todo], params)
            for i, comps in zip(todo, outs):
                prefix = trees[i].text_of(nodes[i])
                wins = sum(float(self.score(trees[i], prefix + c.text)) >= 0.5 for c in comps)
                frac[i] = wins / len(comps)
                tokens[i] = sum(len(c.token_ids) for c in comps)
                if cfg.record:
                    record_rollouts(trees[i], nodes[i], wins, len(comps))
        self.last_fractions = frac
        self.last_tokens = tokens
        return [2.0 * f - 1.0 for f in frac] if cfg.signed else frac


VALUE_METHODS = ("zero", "counts", "logprob", "outcome", "rollout", "prm", "pav", "selfeval")


@dataclasses.dataclass(frozen=True)
class ValueConfig:
    """Which value function a search uses at nodes it cannot finish (see the module docstring)."""

    method: str = dataclasses.field(default="zero", metadata={"help": f"one of {', '.join(VALUE_METHODS)}: zero (0 as if measured), counts (judged outcomes only), rollout (Monte-Carlo at expansion), prm (a trained PRM), pav (process advantage, the policy as a Best-of-K prover)"})
    rollout: RolloutConfig = dataclasses.field(default=RolloutConfig(k=2, record=True), metadata={"help": "rollouts of methods rollout and pav"})
    prm: str = dataclasses.field(default="", metadata={"help": "method prm: PRM checkpoint directory; in the loop, empty = the PRM trained on the previous round's trees"})
    prm_device: str = dataclasses.field(default="auto", metadata={"help": "method prm: where the PRM runs: auto (CUDA when present, in bf16), cpu, cuda[:N]"})
    pav_best_of_k: int = dataclasses.field(default=4, metadata={"help": "method pav: K of the Best-of-K prover built on the policy"})
    pav_alpha: float = dataclasses.field(default=1.0, metadata={"help": "method pav: α in Q^π + α·A^μ"})

    def __post_init__(self):
        if self.method not in VALUE_METHODS:
            raise ValueError(f"ValueConfig.method must be one of {', '.join(VALUE_METHODS)}, got {self.method!r}")


def build_value(cfg: ValueConfig, backend, score: Scorer) -> ValueFn:
    """The value function `cfg` names, over the policy `backend` and the outcome `score`."""
    m = cfg.method
    if m == "zero":
        return zero_value
    if m == "counts":
        return unknown_value
    if m == "logprob":
        return mean_logprob
    if m == "outcome":
        return OutcomeValue(score)
    if m == "rollout":
        return RolloutValue(backend, score, cfg.rollout)
    if m == "prm":
        from treesearch.rewards.prm_train import load_value_prm

        if not cfg.prm:
            raise ValueError("ValueConfig.method 'prm' needs ValueConfig.prm, a PRM checkpoint directory")
        return load_value_prm(cfg.prm, device=cfg.prm_device)
    if m == "pav":
        from treesearch.rewards.advantage import PAVConfig, PAVValue

        r = cfg.rollout
        pav = PAVConfig(alpha=cfg.pav_alpha, best_of_k=cfg.pav_best_of_k, k=r.k, temperature=r.temperature,
                        prover_temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens, seed=r.seed)
        return PAVValue(backend, backend, score, pav, record=r.record)
    from treesearch.rewards import SelfEvalValue

    return SelfEvalValue(backend, score)
