"""Step-level preference pairs from searched trees (MCTS-DPO, Step-DPO), in TRL's format.

Three kinds, all with ``prompt`` = the model's templated question plus the shared
prefix of steps, so the pair trains exactly the decision the search compared:

* ``sibling``: at a node with at least two expanded children whose values differ
  by at least `margin` (each with at least `min_visits` visits), the higher-valued
  child's step is ``chosen`` and the lower-valued one's ``rejected``
  (MCTS-DPO). Value is ``Q = r + V`` of the search; with ``value="mc"``,
  the fraction of verified-correct terminals below the node; with
  ``value="beta"``, the Beta(a, a) posterior mean ``(c + a) / (n + 2a)`` of the
  node's judged outcomes (`judged_stats`: verified terminals below it plus
  recorded rollouts from it and below), a value calibrated to how much was
  judged, so a step with nothing judged below it sits at 1/2 instead of
  looking bad. ``min_judged`` requires that many judged outcomes below each
  side of a pair, ``min_correct`` that many verified-correct ones below the
  chosen step (a weak policy reaches right answers through wrong lines, so one
  success is weak evidence that a step is right), and ``min_logprob`` that
  every token of the shared prefix and of the chosen step had at least that
  log-probability under the policy when it was sampled (a policy that reaches
  right answers through wrong lines usually wrote those lines with a slip, a
  token it gave low probability; the rejected step is not held to it).
* ``first_error``: on a failed path, the first step after which no correct answer
  was reached (among at least ``max(1, min_judged)`` judged outcomes), although
  one was reached from its parent, is ``rejected``; the best verified-correct
  sibling is ``chosen`` (Step-DPO's first wrong step).
* ``trajectory``: a whole correct solution against a whole wrong one, prompt =
  the question only (trajectory-level DPO, for comparison).

Records carry TRL's keys (``prompt``, ``chosen``, ``rejected``) plus the exact
token ids from the tree (``prompt_ids``, ``chosen_ids``, ``rejected_ids``: end token
included where one ended the step; the Step-DPO trainer trains on these, not on
a re-tokenization of the text, which differs on real tokenizers) and
metadata (problem id, round, depth, values, visits, node ids). They are
deduplicated, filtered by margin and depth, and balanced per problem.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Sequence

import numpy as np

from treesearch.search.values import ROLLOUTS
from treesearch.train.data import KINDS
from treesearch.tree import CORRECT, ROOT, Tree

VALUES = ("q", "mc", "beta")


@dataclasses.dataclass(frozen=True)
class PairConfig:
    kinds: tuple[str, ...] = dataclasses.field(default=("sibling", "first_error"), metadata={"help": f"pair kinds: {KINDS}"})
    value: str = dataclasses.field(default="q", metadata={"help": "'q' (search Q = r + V), 'mc' (fraction of correct terminals below) or 'beta' (Beta posterior mean of the judged outcomes below)"})
    margin: float = dataclasses.field(default=0.5, metadata={"help": "minimum chosen - rejected value for sibling pairs"})
    min_judged: int = dataclasses.field(default=0, metadata={"help": "judged outcomes (terminals, recorded rollouts) needed below each side of a pair; first errors need at least 1"})
    prior: float = dataclasses.field(default=1.0, metadata={"help": "value 'beta': a in the Beta(a, a) prior, (correct + a) / (judged + 2a)"})
    min_correct: int = dataclasses.field(default=0, metadata={"help": "verified-correct outcomes needed below a chosen step (sibling and first-error pairs); 2: one lucky answer is not enough"})
    min_logprob: float = dataclasses.field(default=float("-inf"), metadata={"help": "lowest token log-probability allowed in the shared prefix and the chosen step (sibling and first-error pairs): the policy's own confidence in what it is taught to keep; a wrong line usually holds a slip, a low-probability token"})
    min_chosen: float = dataclasses.field(default=float("-inf"), metadata={"help": "lowest value of a chosen step (e.g. 0.6 with 'beta': most of what was judged below it verified)"})
    min_visits: int = dataclasses.field(default=1, metadata={"help": "minimum visits of both children of a sibling pair"})
    min_depth: int = dataclasses.field(default=0, metadata={"help": "shallowest prefix depth (0 = the question alone)"})
    max_depth: int = dataclasses.field(default=64, metadata={"help": "deepest prefix depth"})
    max_per_problem: int = dataclasses.field(default=8, metadata={"help": "pairs kept per problem (MCTS-DPO: 8)"})
    require_correct_prefix: bool = dataclasses.field(
        default=True, metadata={"help": "sibling pairs only under a prefix from which a correct answer was reached"}
    )

    def __post_init__(self):
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ValueError(f"unknown pair kind {bad[0]!r}; expected one of {', '.join(KINDS)}")
        if self.value not in VALUES:
            raise ValueError(f"PairConfig.value must be one of {', '.join(VALUES)}, got {self.value!r}")
        if self.min_judged < 0 or self.min_correct < 0 or self.prior <= 0:
            raise ValueError("PairConfig.min_judged and min_correct must be >= 0 and PairConfig.prior > 0")
        if self.max_per_problem < 1:
            raise ValueError(f"PairConfig.max_per_problem must be >= 1, got {self.max_per_problem}")


def terminal_stats(tree: Tree) -> tuple[np.ndarray, np.ndarray]:
    """(correct, total): verified terminals in each node's subtree, node included. Children have larger ids."""
    n = tree.num_nodes
    correct = np.zeros(n, np.int64)
    total = np.zeros(n, np.int64)
    term = tree.terminal
    verdict = tree.verdict
    parent = tree.parent
    for node in range(n - 1, -1, -1):
        if term[node]:
            total[node] += 1
            correct[node] += int(verdict[node] == CORRECT)
        if node != ROOT:
            p = int(parent[node])
            total[p] += total[node]
            correct[p] += correct[node]
    return correct, total


def judged_stats(tree: Tree) -> tuple[np.ndarray, np.ndarray]:
    """(correct, judged) per node: `terminal_stats` plus the rollouts recorded from the node or below
    it (``tree.meta["rollouts"]``, written by `RolloutValue` with ``record``)."""
    correct, total = terminal_stats(tree)
    rolled = tree.meta.get(ROLLOUTS) or {}
    if not rolled:
        return correct, total
    for key, (c, n) in rolled.items():
        node = int(key)
        while node != -1:
            correct[node] += int(c)
            total[node] += int(n)
            node = int(tree.parent[node])
    return correct, total


class _Ctx:
    """Per-tree helpers: prefix text and ids, values."""

    def __init__(self, tree: Tree, cfg: PairConfig, decode: Callable[[Sequence[int]], str]):
        self.tree, self.cfg = tree, cfg
        self.correct, self.total = judged_stats(tree) if cfg.value == "beta" else terminal_stats(tree)
        self.prompt_text = decode(tree.prompt_ids)

    def confident(self, parent: int, chosen: int) -> bool:
        """Every token of the path to `parent` and of step `chosen` has log-prob >= cfg.min_logprob."""
        if self.cfg.min_logprob == float("-inf"):
            return True
        t = self.tree
        return all(min(t.logprobs[n], default=0.0) >= self.cfg.min_logprob for n in (*t.path(parent)[1:], chosen))

    def value(self, node: int) -> float:
        if self.cfg.value == "q":
            return self.tree.q(node)
        if self.cfg.value == "beta":
            a = self.cfg.prior
            return float((self.correct[node] + a) / (self.total[node] + 2 * a))
        return float(self.correct[node] / self.total[node]) if self.total[node] else 0.0

    def record(self, kind: str, parent: int, chosen: int, rejected: int, *, chosen_text=None, rejected_text=None,
               chosen_ids=None, rejected_ids=None) -> dict:
        t = self.tree
        prefix_nodes = t.path(parent)[1:]
        prefix = "".join(t.text[n] for n in prefix_nodes)
        return {
            "prompt": self.prompt_text + prefix,
            "chosen": t.text[chosen] if chosen_text is None else chosen_text,
            "rejected": t.text[rejected] if rejected_text is None else rejected_text,
            "prompt_ids": t.context_ids(parent),
            "chosen_ids": list(t.token_ids[chosen]) if chosen_ids is None else chosen_ids,
            "rejected_ids": list(t.token_ids[rejected]) if rejected_ids is None else rejected_ids,
            # a trajectory's last node is its end: EOS only when the policy stopped there (not at a limit)
            "chosen_eos": t.finish_reason[chosen] == "eos",
            "rejected_eos": t.finish_reason[rejected] == "eos",
            "kind": kind,
            "problem_id": t.problem_id,
            "question": t.prompt,
            "prefix": prefix,
            "depth": int(t.depth[parent]),
            "chosen_value": self.value(chosen),
            "rejected_value": self.value(rejected),
            "chosen_visits": int(t.visits[chosen]),
            "rejected_visits": int(t.visits[rejected]),
            "node_ids": [int(parent), int(chosen), int(rejected)],
        }


def _sibling(ctx: _Ctx) -> Iterable[dict]:
    t, cfg = ctx.tree, ctx.cfg
    for node in range(t.num_nodes):
        kids = [c for c in t.children[node] if t.visits[c] >= cfg.min_visits and ctx.total[c] >= cfg.min_judged]
        if len(kids) < 2 or not cfg.min_depth <= t.depth[node] <= cfg.max_depth:
            continue
        if cfg.require_correct_prefix and ctx.correct[node] == 0:
            continue
        vals = {c: ctx.value(c) for c in kids}
        best = max(kids, key=lambda c: (vals[c], t.visits[c], -c))
        worst = min(kids, key=lambda c: (vals[c], -t.visits[c], c))
        if (vals[best] - vals[worst] >= cfg.margin and vals[best] >= cfg.min_chosen and t.text[best] != t.text[worst]
                and ctx.correct[best] >= cfg.min_correct and ctx.confident(node, best)):
            yield ctx.record("sibling", node, best, worst)


def _first_error(ctx: _Ctx) -> Iterable[dict]:
    t, cfg = ctx.tree, ctx.cfg
    for node in range(1, t.num_nodes):
        parent = int(t.parent[node])
        # node is a first error: nothing correct below it, something correct below its parent, and it was judged
        if ctx.correct[node] or not ctx.correct[parent] or ctx.total[node] < max(1, cfg.min_judged):
            continue
        if not cfg.min_depth <= t.depth[parent] <= cfg.max_depth:
            continue
        good = [c for c in t.children[parent] if ctx.correct[c] >= max(1, cfg.min_correct)
                and ctx.total[c] >= cfg.min_judged and t.text[c] != t.text[node]]
        if good:
            best = max(good, key=lambda c: (ctx.correct[c] / max(1, ctx.total[c]), t.visits[c], -c))
            if not ctx.confident(parent, best):
                continue
            # with a calibrated value the margin holds here too: one lucky answer below a step is not evidence
            if cfg.value == "beta" and (ctx.value(best) - ctx.value(node) < cfg.margin or ctx.value(best) < cfg.min_chosen):
                continue
            yield ctx.record("first_error", parent, best, node)


def _trajectory(ctx: _Ctx) -> Iterable[dict]:
    t = ctx.tree
    ends = [n for n in range(1, t.num_nodes) if t.terminal[n]]
    right = [n for n in ends if t.verdict[n] == CORRECT]
    wrong = [n for n in ends if t.verdict[n] != CORRECT]
    for i, (a, b) in enumerate(zip(right, wrong)):
        yield ctx.record(
            "trajectory", ROOT, a, b,
            chosen_text=t.text_of(a), rejected_text=t.text_of(b),
            chosen_ids=t.context_ids(a)[len(t.prompt_ids):], rejected_ids=t.context_ids(b)[len(t.prompt_ids):],
        )


_EXTRACTORS = {"sibling": _sibling, "first_error": _first_error, "trajectory": _trajectory}


def _balance(records: list[dict], limit: int) -> list[dict]:
    """Up to `limit` pairs, largest value gaps first, spread across depths (round robin)."""
    by_depth: dict[int, list[dict]] = {}
    for r in sorted(records, key=lambda r: (-(r["chosen_value"] - r["rejected_value"]), r["depth"], r["node_ids"])):
        by_depth.setdefault(r["depth"], []).append(r)
    out: list[dict] = []
    while len(out) < limit and any(by_depth.values()):
        for d in sorted(by_depth):
            if by_depth[d] and len(out) < limit:
                out.append(by_depth[d].pop(0))
    return out


def extract_pairs(
    trees: Iterable[Tree], cfg: PairConfig, *, decode: Callable[[Sequence[int]], str], round: int = 0
) -> list[dict]:
    """Pairs of every tree, deduplicated on their exact ids and balanced per problem."""
    out: list[dict] = []
    seen: set[tuple[tuple[int, ...], ...]] = set()
    for tree in trees:
        ctx = _Ctx(tree, cfg, decode)
        mine = []
        for kind in cfg.kinds:
            for r in _EXTRACTORS[kind](ctx):
                key = (tuple(r["prompt_ids"]), tuple(r["chosen_ids"]), tuple(r["rejected_ids"]))
                if key not in seen:
                    seen.add(key)
                    r["round"] = round
                    mine.append(r)
        out.extend(_balance(mine, cfg.max_per_problem))
    return out


def correct_solutions(trees: Iterable[Tree], *, per_problem: int = 4) -> list[dict]:
    """Distinct verified-correct full solutions (for rejection-sampling fine-tuning)."""
    out = []
    for t in trees:
        seen = set()
        for n in range(1, t.num_nodes):
            if t.terminal[n] and t.verdict[n] == CORRECT:
                text = t.text_of(n)
                if text not in seen and len(seen) < per_problem:
                    seen.add(text)
                    out.append({"problem_id": t.problem_id, "prompt_ids": list(t.prompt_ids),
                                "completion_ids": t.context_ids(n)[len(t.prompt_ids):], "completion": text})
    return out


def _lines_right(question: str, lines: Sequence[str], check_step: Callable[[str, str], bool]) -> bool:
    """Every line a correct step from the one before it (the question before the first)."""
    previous = question
    for line in lines:
        if not check_step(previous, line):
            return False
        previous = line
    return True


def step_audit(pairs: Sequence[dict], check_step: Callable[[str, str], bool]) -> dict:
    """How often outcome-labelled step pairs agree with a task's exact step checker (a diagnostic,
    never a training signal): fractions where the chosen step is right and the rejected wrong
    (``clean``), the reverse (``inverted``), both wrong, both right. `check_step(previous, step)`
    judges a step line against the line before it (the question for the first step); trajectory
    pairs (whole solutions) are skipped. ``right_prefix``: the share of pairs whose prefix lines are
    all right, and ``clean_right_prefix`` / ``inverted_right_prefix`` the rates among those (under a
    wrong line, the step that reaches the right answer is the one that does not follow it)."""
    counts = dict.fromkeys(("clean", "inverted", "both_wrong", "both_right"), 0)
    right = dict(counts)  # the same, over pairs whose prefix lines are all right
    for p in pairs:
        if p.get("kind") == "trajectory":
            continue
        lines = p["prefix"].rstrip("\n").split("\n") if p["prefix"].strip() else []
        previous = lines[-1] if lines else p["question"]
        ok_w, ok_l = check_step(previous, p["chosen"].strip()), check_step(previous, p["rejected"].strip())
        verdict = ("clean" if ok_w and not ok_l else "inverted" if ok_l and not ok_w else
                   "both_right" if ok_w else "both_wrong")
        counts[verdict] += 1
        right[verdict] += _lines_right(p["question"], lines, check_step)
    n, n_right = sum(counts.values()), sum(right.values())
    rate = lambda c, m: round(c / m, 4) if m else 0.0  # noqa: E731
    return {"audited": n, **{k: rate(v, n) for k, v in counts.items()}, "right_prefix": rate(n_right, n),
            "clean_right_prefix": rate(right["clean"], n_right), "inverted_right_prefix": rate(right["inverted"], n_right)}


def solution_audit(trees: Iterable[Tree], check_step: Callable[[str, str], bool], delimiter: str = "\n") -> dict:
    """Of the verified-correct finished solutions in `trees` (each distinct one once), the share with a
    line the task's step checker calls wrong (``correct_with_wrong_line``): answers a policy reaches
    through wrong steps, which no outcome-based value can tell from right ones (a diagnostic)."""
    n = wrong = 0
    for t in trees:
        for node in range(1, t.num_nodes):
            if t.terminal[node] and t.verdict[node] == CORRECT:
                lines = [x.strip() for x in t.text_of(node).split(delimiter) if x.strip()]
                n += 1
                wrong += not _lines_right(t.prompt, lines, check_step)
    return {"correct_solutions": n, "correct_with_wrong_line": round(wrong / n, 4) if n else 0.0}


def pair_stats(pairs: Sequence[dict]) -> dict:
    """Counts by kind and depth, mean value gap: what a round's metrics record."""
    kinds: dict[str, int] = {}
    depths: dict[int, int] = {}
    for p in pairs:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
        depths[p["depth"]] = depths.get(p["depth"], 0) + 1
    gap = float(np.mean([p["chosen_value"] - p["rejected_value"] for p in pairs])) if pairs else 0.0
    return {"pairs": len(pairs), "by_kind": kinds, "by_depth": {str(k): v for k, v in sorted(depths.items())},
            "mean_value_gap": gap, "problems_with_pairs": len({p["problem_id"] for p in pairs})}
