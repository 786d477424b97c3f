"""OmegaPRM-style process labels: binary search for the first wrong step with Monte-Carlo rollouts.

Luo et al. ("Improve Mathematical Reasoning in Language Models by Automated
Process Supervision", 2024). The MC value of a prefix is the fraction of k
rollouts from it whose final answer verifies::

    MC(s) = (# correct rollouts from s) / k                  (OmegaPRM: k = 16)

For a wrong solution s_1..s_n (MC(full) = 0) whose start has MC > 0, the first
error is found by bisection: test the prefix up to the middle step; MC = 0 means
the error is at or before it (hi = mid), MC > 0 means after it (lo = mid); stop
when hi = lo + 1, so step hi is the first wrong one after ``ceil(log2 n)`` MC
estimates instead of n. Steps 1..hi−1 are labelled correct, step hi wrong.

`locate_errors` runs that search on given solutions. `omega_prm` runs the whole
collection: from the question, k rollouts; the wrong rollouts of every state
with 0 < MC < 1 enter a pool; repeatedly pop the item maximising::

    Q(s, r) + U(s) = α^(1 − MC(s)) · β^(len(r) / L)  +  c · sqrt(Σ_s' N(s')) / (1 + N(s))

(α 0.5, β 0.9, L 500 tokens, c 0.125; N(s) counts pops from state s) and
bisect its rollout, adding the wrong rollouts of the new states it estimates.
A popped item is never put back (a public implementation that re-added popped
items loops forever); every state is estimated once; the search stops when the
pool is empty, after ``search_limit`` pops or once ``max_rollouts`` rollouts are
spent, so it always terminates. States and rollouts live in the problem's
`Tree` (a rollout is split into steps at the delimiter, keeping its token ids).

Searches over many problems advance in lockstep: each round is ONE
`backend.generate` call over the prefixes of every problem. Labels are exported
in TRL's stepwise-supervision format, one JSON object per line::

    {"prompt": "Q: 23+27*2-17=?", "completions": ["23+54-17", "77-18", "59", "Answer: 59"],
     "labels": [true, false]}   # completions stop at the first wrong step
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

from treesearch.backends.base import Completion, SamplingParams
from treesearch.io import read_jsonl, write_jsonl
from treesearch.search.values import Scorer, judge
from treesearch.tree import ROOT, Tree


from treesearch.config import field, require_positive

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class OmegaConfig:
    """Rollouts, the pool's selection rule and the budgets of an OmegaPRM search."""

    k: int = _f(16, "rollouts per MC estimate (OmegaPRM: 16; 1 suffices for greedy rollouts)")
    temperature: float = _f(1.0, "sampling temperature of the rollouts (0 = greedy)")
    top_p: float = _f(1.0, "nucleus sampling mass of the rollouts")
    max_tokens: int = _f(128, "token budget of one rollout")
    seed: int = _f(1, "sampling seed of the rollouts")
    alpha: float = _f(0.5, "α in Q = α^(1−MC)·β^(len/L): prefers states whose rollouts are mostly right (likely subtle errors)")
    beta: float = _f(0.9, "β in Q = α^(1−MC)·β^(len/L): prefers short rollouts")
    length_scale: float = _f(500.0, "L in β^(len/L), in tokens")
    c_puct: float = _f(0.125, "c in U = c·sqrt(ΣN)/(1+N(s)): exploration over states")
    search_limit: int = _f(20, "binary searches (pool pops) per problem")
    max_rollouts: int = _f(2000, "rollouts per problem; no new search starts once this many are spent")
    step_delimiter: str = _f("\n", "a step ends at this string")

    def __post_init__(self):
        require_positive(self, "k", "max_tokens", "search_limit", "max_rollouts")
        if not self.step_delimiter:
            raise ValueError("OmegaConfig.step_delimiter must not be empty")

    def sampling(self) -> SamplingParams:
        return SamplingParams(n=self.k, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed)


def selection_score(mc: float, rollout_len: int, visits: int, total_visits: int, *, alpha: float, beta: float,
                    length_scale: float, c_puct: float) -> float:
    """Q + U of a pool item: α^(1−MC(s))·β^(len(r)/L) + c·sqrt(ΣN)/(1+N(s))."""
    q = alpha ** (1.0 - mc) * beta ** (rollout_len / length_scale)
    return q + c_puct * math.sqrt(total_visits) / (1 + visits)


# -- rollouts ---------------------------------------------------------------------------------
def split_completion(backend, comp: Completion, delimiter: str) -> list[tuple[str, list[int]]]:
    """Cut a completion's token ids into steps, each ending at the first token whose text closes a delimiter.

    Returns [(step text, step ids)]; texts are decoded from the ids, so tree text and ids agree.
    Linear in the completion's length (a real model's 2k-token line would otherwise be decoded 2k
    times): a token is tested only if its own text holds the delimiter's last character (the token
    that closes the delimiter must, where `TokenText.ids_holding` can tell), and then on the
    decode of the step's last few ids, enough to hold the delimiter's bytes (every id decodes to at
    least one byte) and a character split before them.
    """
    window = len(delimiter.encode("utf-8")) + 4
    text = getattr(backend, "token_text", None)  # real tokenizers; a scripted test backend has none
    closers = text.ids_holding(delimiter[-1]) if text is not None else None
    pieces: list[tuple[str, list[int]]] = []
    cur: list[int] = []
    for tok in comp.token_ids:
        cur.append(int(tok))
        if closers is not None and cur[-1] not in closers:
            continue
        if delimiter in backend.decode(cur[-window:]):
            pieces.append((backend.decode(cur), cur))
            cur = []
    if cur:
        pieces.append((backend.decode(cur), cur))
    return pieces


def attach_rollout(backend, tree: Tree, node: int, comp: Completion, delimiter: str) -> list[int]:
    """Add a finished rollout under `node` as a chain of step nodes (reusing identical existing children).

    Returns [node, first step, ..., last step]; the last step is terminal.
    """
    chain = [node]
    pieces = split_completion(backend, comp, delimiter)
    for j, (text, ids) in enumerate(pieces):
        last = j == len(pieces) - 1
        parent = chain[-1]
        same = [c for c in tree.children[parent] if tree.token_ids[c] == ids and bool(tree.terminal[c]) == last]
        if same:
            chain.append(same[0])
            continue
        lps = comp.logprobs[sum(len(p) for _, p in pieces[:j]) :][: len(ids)] if comp.logprobs else ()
        chain.append(tree.add_child(parent, text=text, token_ids=ids, logprobs=lps,
                                    finish_reason=comp.finish_reason if last else "stop", terminal=last))
    return chain


def estimate(backend, score: Scorer, trees: Sequence[Tree], nodes: Sequence[int], cfg: OmegaConfig) -> list[tuple[float, list[Completion]]]:
    """MC(s) for each (tree, node) and its wrong rollouts, with ONE generate call over the non-terminal nodes.

    A terminal node is judged (MC 1 or 0, no rollouts).
    """
    out: list[tuple[float, list[Completion]]] = [(0.0, [])] * len(nodes)
    todo = []
    for i, (t, n) in enumerate(zip(trees, nodes)):
        if t.terminal[n]:
            out[i] = (1.0 if judge(t, n, score) else 0.0, [])
        else:
            todo.append(i)
    if todo:
        comps = backend.generate([trees[i].context_ids(nodes[i]) for i in todo], cfg.sampling())
        for i, row in zip(todo, comps):
            prefix = trees[i].text_of(nodes[i])
            ok = [float(score(trees[i], prefix + c.text)) >= 0.5 for c in row]
            out[i] = (sum(ok) / len(row), [c for c, good in zip(row, ok) if not good])
    return out


# -- bisection --------------------------------------------------------------------------------
@dataclasses.dataclass
class ErrorLocation:
    """Result of one bisection over a chain of steps.

    problem_id: the tree's problem; nodes: [n] step nodes of the solution searched (root
    excluded); first_error: 0-based index into `nodes` of the first wrong step, None when
    the solution is right; mc: {step index: MC of the prefix through that step} for the
    prefixes estimated; estimates: MC estimates made; rollouts: rollouts sampled.
    """

    problem_id: str
    nodes: list[int]
    first_error: int | None
    mc: dict[int, float]
    estimates: int = 0
    rollouts: int = 0


class _Bisect:
    """Bisection over chain[0..m] (chain[0] = start state, MC > 0; chain[m] = wrong, MC = 0)."""

    def __init__(self, tree: Tree, chain: list[int]):
        self.tree, self.chain = tree, chain
        self.lo, self.hi = 0, len(chain) - 1
        self.mc: dict[int, float] = {}

    @property
    def done(self) -> bool:
        return self.hi - self.lo <= 1

    @property
    def mid_node(self) -> int:
        return self.chain[(self.lo + self.hi) // 2]

    def update(self, mc: float) -> int:
        """Record MC of the middle prefix and halve the interval; returns the middle chain index."""
        mid = (self.lo + self.hi) // 2
        self.mc[mid] = mc
        if mc > 0.0:
            self.lo = mid
        else:
            self.hi = mid
        return mid


def locate_errors(backend, score: Scorer, solutions: Sequence[tuple[Tree, int]], config: OmegaConfig = OmegaConfig()) -> list[ErrorLocation]:
    """Bisect each solution (tree, terminal leaf) for its first wrong step, all solutions in lockstep.

    A solution whose answer verifies has no error. Otherwise the question is assumed solvable
    (MC > 0 at the root; if it is not, step 1 is blamed) and ``ceil(log2 n)`` prefixes are
    estimated for n steps; each round is ONE generate call over every unfinished search.
    """
    out: list[ErrorLocation] = []
    live: list[tuple[_Bisect, ErrorLocation]] = []
    for tree, leaf in solutions:
        if not tree.terminal[leaf]:
            raise ValueError(f"problem {tree.problem_id!r}: node {leaf} is not a finished solution (terminal)")
        path = tree.path(leaf)
        loc = ErrorLocation(tree.problem_id, path[1:], None, {})
        out.append(loc)
        if judge(tree, leaf, score):
            continue
        search = _Bisect(tree, path)
        if search.done:
            loc.first_error = search.hi - 1
        else:
            live.append((search, loc))
    while live:
        results = estimate(backend, score, [s.tree for s, _ in live], [s.mid_node for s, _ in live], config)
        still = []
        for (search, loc), (mc, _) in zip(live, results):
            mid = search.update(mc)
            loc.mc[mid - 1] = mc  # chain index -> step index (chain[0] is the root)
            loc.estimates += 1
            loc.rollouts += config.k  # a middle prefix is never the finished solution, so it was rolled out
            if search.done:
                loc.first_error = search.hi - 1
            else:
                still.append((search, loc))
        live = still
    return out


# -- the OmegaPRM collection ------------------------------------------------------------------
@dataclasses.dataclass
class _Item:
    """A pool entry: a wrong rollout `chain` (chain[0] = its start state s, chain[-1] its wrong end)."""

    chain: list[int]
    length: int  # rollout tokens, the len(r) of β^(len/L)


@dataclasses.dataclass
class OmegaRun:
    """OmegaPRM collection for one problem.

    tree: states and rollouts (``meta["omega"]["mc"]`` maps node id -> MC for every estimated
    state); labels: one `ErrorLocation` per distinct first error located (path from the root
    to it); searches: pool pops; rollouts: rollouts sampled; pooled: items ever
    added to the pool; remaining: items left in it.
    """

    problem_id: str
    tree: Tree
    labels: list[ErrorLocation]
    searches: int = 0
    rollouts: int = 0
    pooled: int = 0
    remaining: int = 0


class _Collector:
    """The per-problem state of `omega_prm`: MC estimates, visit counts, the pool, the active bisection."""

    def __init__(self, backend, tree: Tree, cfg: OmegaConfig):
        self.backend, self.tree, self.cfg = backend, tree, cfg
        self.mc: dict[int, float] = {}
        self.visits: dict[int, int] = {}
        self.pool: list[_Item] = []
        self.pooled_ends: set[int] = set()  # end nodes ever pooled: the same rollout never enters twice
        self.active: _Bisect | None = None
        self.labelled: set[int] = set()
        self.run = OmegaRun(tree.problem_id, tree, [])

    def record(self, node: int, mc: float, wrong: Sequence[Completion], *, sampled: bool) -> None:
        """Store MC(node); a state with 0 < MC < 1 adds its wrong rollouts to the pool."""
        self.mc[node] = mc
        if sampled:
            self.run.rollouts += self.cfg.k
        if not 0.0 < mc < 1.0:
            return
        for comp in wrong:
            chain = attach_rollout(self.backend, self.tree, node, comp, self.cfg.step_delimiter)
            if chain[-1] in self.pooled_ends or len(chain) < 2:
                continue
            self.pooled_ends.add(chain[-1])
            self.pool.append(_Item(chain, sum(len(self.tree.token_ids[n]) for n in chain[1:])))
            self.run.pooled += 1

    def _pop(self) -> _Item:
        cfg, total = self.cfg, sum(self.visits.values())
        scores = [
            selection_score(self.mc[it.chain[0]], it.length, self.visits.get(it.chain[0], 0), total,
                            alpha=cfg.alpha, beta=cfg.beta, length_scale=cfg.length_scale, c_puct=cfg.c_puct)
            for it in self.pool
        ]
        # removed for good: re-adding a popped item is the known infinite-loop bug
        return self.pool.pop(max(range(len(scores)), key=lambda i: (scores[i], -i)))

    def _advance(self) -> None:
        """Resolve the active bisection through already-known MC values; on finishing, record its label."""
        s = self.active
        while s is not None and not s.done and s.mid_node in self.mc:
            s.update(self.mc[s.mid_node])
        if s is not None and s.done:
            error = s.chain[s.hi]
            if error not in self.labelled:  # two rollouts may share the located error step: label it once
                self.labelled.add(error)
                path = self.tree.path(error)[1:]
                known = {i: self.mc[n] for i, n in enumerate(path) if n in self.mc}
                self.run.labels.append(ErrorLocation(self.tree.problem_id, path, len(path) - 1, known))
            self.active = None

    def next_query(self) -> int | None:
        """The node whose MC the active bisection needs next (starting new searches as allowed); None when finished."""
        cfg = self.cfg
        while True:
            self._advance()
            if self.active is not None:
                return self.active.mid_node
            if not self.pool or self.run.searches >= cfg.search_limit or self.run.rollouts >= cfg.max_rollouts:
                return None
            item = self._pop()
            self.run.searches += 1
            self.visits[item.chain[0]] = self.visits.get(item.chain[0], 0) + 1
            self.mc.setdefault(item.chain[-1], 0.0)  # the rollout itself verified wrong
            self.active = _Bisect(self.tree, item.chain)

    def finish(self) -> OmegaRun:
        self.run.remaining = len(self.pool)
        self.tree.meta["omega"] = {"mc": {str(n): v for n, v in sorted(self.mc.items())}}
        return self.run


def omega_prm(backend, score: Scorer, trees: Sequence[Tree], config: OmegaConfig = OmegaConfig()) -> list[OmegaRun]:
    """Run OmegaPRM's pool-driven bisections from the root of each tree; ONE generate call per round.

    Trees hold at least their roots (see `treesearch.search.make_trees`). A question whose root
    MC is 0 or 1 yields no labels (nothing to locate, as in the paper).
    """
    cols = [_Collector(backend, t, config) for t in trees]
    for c, (mc, wrong) in zip(cols, estimate(backend, score, list(trees), [ROOT] * len(cols), config)):
        c.record(ROOT, mc, wrong, sampled=not c.tree.terminal[ROOT])
    while True:
        asks = [(c, n) for c in cols for n in [c.next_query()] if n is not None]
        if not asks:
            break
        results = estimate(backend, score, [c.tree for c, _ in asks], [n for _, n in asks], config)
        for (c, n), (mc, wrong) in zip(asks, results):
            c.record(n, mc, wrong, sampled=not c.tree.terminal[n])
    return [c.finish() for c in cols]


# -- TRL stepwise supervision -----------------------------------------------------------------
def stepwise_record(tree: Tree, loc: ErrorLocation, *, delimiter: str = "\n") -> dict[str, Any]:
    """TRL stepwise row: steps up to and including the first error (all steps when none), labels True before it."""
    steps = [tree.text[n].removesuffix(delimiter) for n in loc.nodes]
    if loc.first_error is None:
        return {"prompt": tree.prompt, "completions": steps, "labels": [True] * len(steps)}
    j = loc.first_error
    return {"prompt": tree.prompt, "completions": steps[: j + 1], "labels": [True] * j + [False]}


def write_stepwise(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Write stepwise rows as JSONL (``.gz`` transparent), checking each row first."""
    for i, r in enumerate(records):
        check_stepwise(r, where=f"record {i}")
    write_jsonl(path, records)


def check_stepwise(record: Any, *, where: str) -> dict[str, Any]:
    """ValueError naming `where` and the field unless `record` is a valid stepwise row."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key, typ in (("prompt", str), ("completions", list), ("labels", list)):
        if not isinstance(record.get(key), typ):
            raise ValueError(f"{where}: field {key!r} must be a {typ.__name__}")
    if not all(isinstance(s, str) for s in record["completions"]):
        raise ValueError(f"{where}: field 'completions' must hold strings")
    if not all(isinstance(b, bool) for b in record["labels"]):
        raise ValueError(f"{where}: field 'labels' must hold booleans")
    if len(record["labels"]) != len(record["completions"]):
        raise ValueError(f"{where}: {len(record['labels'])} labels for {len(record['completions'])} completions")
    return record


def read_stepwise(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a stepwise JSONL file, each checked (errors name the file and line)."""
    for i, r in enumerate(read_jsonl(path), start=1):
        yield check_stepwise(r, where=f"{path}:{i}")
