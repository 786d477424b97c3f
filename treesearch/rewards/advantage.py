"""Process advantage verifiers (PAV, "Rewarding Progress", Setlur et al., 2024).

A step is rewarded for the *progress* it makes under a prover policy μ, not for
how good the state is under the policy π itself. For the step a taken in state
s (node n = child of s)::

    Q^μ(s, a) = V^μ(n)                 MC value of n: fraction of prover rollouts from n that verify
    A^μ(s, a) = Q^μ(s, a) − V^μ(s)     process advantage under μ
    r(s, a)   = Q^π(s, a) + α·A^μ(s, a) effective reward, Q^π from rollouts of the policy π

A Best-of-K prover (succeeds when any of K of μ's attempts succeeds) has
``V_BoK = 1 − (1 − V)^K``, applied to both Q^μ and V^μ (K = 1: μ itself). The
paper reports search against PAVs more than 8% more accurate and 1.5–5× more
compute-efficient than against ORMs; the prover should be complementary to π
(neither much stronger nor much weaker).

The prover is a separate backend that must share the policy's tokenizer: it is
fed the tree's token ids. `PAVValue` makes one `generate` call on the prover
(nodes and their parents together) and one on the policy per batch.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from treesearch.search.values import RolloutConfig, RolloutValue, Scorer
from treesearch.tree import NO_PARENT, Tree

_PROBE = "Q: 12+3*4=?\n12+12\n24\nAnswer: 24"


from treesearch.config import field

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class PAVConfig:
    """Process advantage value: rollouts of the policy π for Q^π, of the prover μ for A^μ."""

    alpha: float = _f(1.0, "α in the effective reward Q^π + α·A^μ")
    best_of_k: int = _f(1, "K of the Best-of-K prover: V_BoK = 1 − (1 − V)^K (1 = the prover as it is)")
    k: int = _f(4, "rollouts per Monte-Carlo estimate, for π and for μ")
    temperature: float = _f(1.0, "sampling temperature of the policy's rollouts (0 = greedy)")
    prover_temperature: float = _f(1.0, "sampling temperature of the prover's rollouts (0 = greedy)")
    top_p: float = _f(1.0, "nucleus sampling mass of all rollouts")
    max_tokens: int = _f(128, "token budget of one rollout")
    seed: int = _f(1, "sampling seed of the rollouts")
    signed: bool = _f(True, "return (2·Q^π − 1) + α·2·A^μ, i.e. the reward with every MC value v read as 2v − 1 (the ±1 outcome scale)")

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"PAVConfig.k must be >= 1, got {self.k}")
        if self.best_of_k < 1:
            raise ValueError(f"PAVConfig.best_of_k must be >= 1, got {self.best_of_k}")

    def rollout(self, temperature: float) -> RolloutConfig:
        return RolloutConfig(
            k=self.k, temperature=temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed, signed=False
        )


def best_of_k(v: float, k: int) -> float:
    """Value of the Best-of-K prover built on a prover of value `v`: 1 − (1 − v)^K."""
    if k < 1:
        raise ValueError(f"best_of_k: K must be >= 1, got {k}")
    return 1.0 - (1.0 - float(v)) ** k


def process_advantage(q_mu: float, v_mu: float) -> float:
    """A^μ(s, a) = Q^μ(s, a) − V^μ(s)."""
    return float(q_mu) - float(v_mu)


def effective_reward(q_pi: float, advantage: float, *, alpha: float) -> float:
    """Q^π(s, a) + α·A^μ(s, a)."""
    return float(q_pi) + alpha * float(advantage)


def check_same_tokenizer(a, b, *, what: str = "prover") -> None:
    """ValueError unless backends `a` and `b` tokenize a probe text identically (they share token ids)."""
    if a.tokenize(_PROBE) != b.tokenize(_PROBE):
        raise ValueError(f"the {what} backend tokenizes differently from the policy; it must share the policy's tokenizer")


class PAVValue:
    """ValueFn: the effective reward ``Q^π + α·A^μ`` of each node's last step (see the module docstring).

    Per call: ONE prover `generate` over the nodes and their parents (deduplicated; the parents
    only when the prover is the policy itself at its temperature, whose rollouts then give Q^μ) and ONE
    policy `generate` over the nodes. At the root (no step) the advantage is 0. The parts of
    the latest call are kept in `last_q_pi`, `last_q_mu`, `last_v_mu` (Best-of-K applied)
    and `last_advantage`, all on the [0, 1] probability scale; `last_tokens` holds the tokens
    sampled per node (its policy rollouts, plus the prover rollouts it was the first to ask for).
    With `record`, the policy's rollout outcomes go to ``tree.meta["rollouts"]`` (the prover's
    do not: they are another policy's outcomes).
    """

    def __init__(self, policy, prover, score: Scorer, config: PAVConfig = PAVConfig(), *, record: bool = False):
        check_same_tokenizer(policy, prover)
        self.config = config
        self.policy_mc = RolloutValue(policy, score, dataclasses.replace(config.rollout(config.temperature), record=record))
        self.prover_mc = RolloutValue(prover, score, config.rollout(config.prover_temperature))
        self.shared = prover is policy and config.prover_temperature == config.temperature
        self.last_q_pi: list[float] = []
        self.last_q_mu: list[float] = []
        self.last_v_mu: list[float] = []
        self.last_advantage: list[float] = []
        self.last_tokens: list[int] = []

    def __call__(self, trees: Sequence[Tree], nodes: Sequence[int]) -> list[float]:
        cfg = self.config
        if not nodes:
            self.last_tokens = []
            return []
        # every (tree, node) whose prover value is needed: the nodes and their parents, each once
        slot: dict[tuple[int, int], int] = {}
        ask_t: list[Tree] = []
        ask_n: list[int] = []

        def need(tree: Tree, node: int) -> int:
            key = (id(tree), node)
            if key not in slot:
                slot[key] = len(ask_n)
                ask_t.append(tree)
                ask_n.append(node)
            return slot[key]

        q_pi = [float(x) for x in self.policy_mc(trees, nodes)]
        # prover = the policy at its own temperature: the policy's rollouts from the node are prover
        # rollouts too, so Q^μ reuses them and only the parents need new ones
        q_at = [-1] * len(nodes) if self.shared else [need(t, n) for t, n in zip(trees, nodes)]
        parents = [int(t.parent[n]) for t, n in zip(trees, nodes)]
        v_at = [need(t, p) if p != NO_PARENT else -1 for t, p in zip(trees, parents)]
        mu = [best_of_k(v, cfg.best_of_k) for v in self.prover_mc(ask_t, ask_n)] if ask_n else []
        if not ask_n:
            self.prover_mc.last_tokens = []
        q_mu = [best_of_k(q, cfg.best_of_k) if i < 0 else mu[i] for i, q in zip(q_at, q_pi)]
        v_mu = [mu[i] if i >= 0 else q for i, q in zip(v_at, q_mu)]  # root: no step, A = 0
        adv = [process_advantage(q, v) for q, v in zip(q_mu, v_mu)]
        self.last_q_pi, self.last_q_mu, self.last_v_mu, self.last_advantage = q_pi, q_mu, v_mu, adv
        prover_tokens, claimed = self.prover_mc.last_tokens, set()
        self.last_tokens = list(self.policy_mc.last_tokens)
        for j, slots in enumerate(zip(q_at, v_at)):
            for s in slots:
                if s >= 0 and s not in claimed:
                    claimed.add(s)
                    self.last_tokens[j] += prover_tokens[s]
        if cfg.signed:  # v -> 2v − 1 for every MC value, so A -> 2A
            return [effective_reward(2.0 * q - 1.0, 2.0 * a, alpha=cfg.alpha) for q, a in zip(q_pi, adv)]
        return [effective_reward(q, a, alpha=cfg.alpha) for q, a in zip(q_pi, adv)]
