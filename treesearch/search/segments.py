"""Tree-segment rollouts, as in TreePO (Li et al., 2025): sample many solutions that share prefixes.

Every round decodes one segment for every active path of every root: up to
``segment_len`` tokens, ending early at EOS or after ``step_delimiter`` (the
task's step delimiter; empty = fixed-length segments as in the paper), each
path continuing from its parent's exact context ids, so the backend's prefix
cache computes every shared prefix once. Each segment is a tree node; a
trajectory is a root-to-leaf path. Ending segments at step boundaries makes
the tree branch where the next step is drawn, which is where a step-by-step
solution is uncertain.

Branching schedule, per root:

* round 0: `SegmentConfig.copies` copies of the prompt (``init_copies``, or
  ``max_width // 4`` when it is 0): branching early, because the first steps
  decide a short solution's answer (two copies let two first steps decide all
  of them);
* then ``total = min(max_width - finished, branch·active + branch·finished_this_round)``
  children are shared out among the active paths: one each, and the rest in
  proportion to `weights` (largest remainder); so the width freed by paths that
  just finished passes to the survivors, and alive + finished never exceeds
  ``max_width``. `uniform_weights` gives every path the same share;
  `uncertainty_weights` gives more children to paths whose last segment had a
  high mean token entropy (estimated as the mean negative log-probability of
  the sampled tokens); `low_probability_weights` to paths of low cumulative
  probability.

A path stops (its leaf is terminal) at EOS, at a complete final answer
(`is_final`), at the depth or token limit (checked at segment boundaries), or
when it is hopeless: a ``repeat_chars``-character substring occurs
``repeat_count`` times (finish reason ``"repetition"``). When a root runs out
of active paths with width left, `refill` re-branches finished paths at
random segment boundaries until the width is used, once per root (more rounds
of a few paths cost backend calls); a re-branch sample equal to an existing
child is dropped, not counted as a trajectory nor continued (that subtree is
grown already, so no prefix is decoded twice).

Per-root token budget: with ``token_budget`` a round funds at most
``(token_budget - decoded) // segment_len`` children of the root, so a root
never decodes more than its budget; paths left unfunded end as ``"budget"``
(cut). It is a guarantee, not the way to compare at equal tokens: cut paths
waste what they decoded, so `treesearch.search.matching.equal_tokens` matches
``max_width`` to a token target instead.

Identical samples of one parent (common with a peaked policy) are one node
standing for several trajectories: it is decoded once, its children draw from
distinct sample indices, and it counts once per trajectory in the width budget,
``meta["trajectories"]`` and the visit counts. Counting them keeps the
policy's probability mass in the schedule (a step drawn k times gets k times
the continuations); dropping them and giving their width to distinct paths
measured no better at equal tokens on the embedded policy (README).

Each finished trajectory's leaf is evaluated once by `scorer` (its value is
backed up, so ``visits[n]`` is the number of trajectories through n and Q their
mean value); the selected answer is the best-scoring trajectory.
``meta["search"]["decoded_tokens"]`` is what the root decoded.

`segment_advantages` is TreePO's segment-level advantage for training on the
trajectories.

A round issues one `generate` call per distinct number of children (the
backend protocol takes one ``n`` per call, and repeating a prompt would replay
the same seeded samples), typically two to four.
"""
from __future__ import annotations

import collections
import dataclasses
import zlib
from typing import Callable, Sequence

import numpy as np

from treesearch.backends.base import SamplingParams
from treesearch.search.expand import FinalFn, attach, sample_counts
from treesearch.search.result import SearchResult, meter
from treesearch.search.values import ValueFn, mean_logprob
from treesearch.tree import ROOT, Tree, backup

WeightFn = Callable[[Tree, Sequence[int]], np.ndarray]


from treesearch.config import field, require_positive

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
    segment_len: int = _f(16, "tokens decoded per segment at most (paper: 512)")
    step_delimiter: str = _f("\n", "a segment also ends after this string (the task's step delimiter); empty = fixed-length segments (paper)")
    max_width: int = _f(16, "per-root width budget: trajectories alive plus finished (paper: 16)")
    init_copies: int = _f(0, "copies of the prompt in the first round; 0 = max_width // 4 (paper: random 2-8)")
    branch: int = _f(2, "children per active path per round (paper: 2)")
    max_depth: int = _f(32, "segments per trajectory")
    max_tokens: int = _f(256, "tokens per trajectory, checked at segment boundaries")
    token_budget: int = _f(0, "decoded tokens per root at most (a round funds what is left // segment_len children); 0 = no budget")
    temperature: float = _f(1.0, "sampling temperature")
    top_p: float = _f(1.0, "nucleus sampling mass")
    repeat_chars: int = _f(32, "hopeless path: a substring of this many characters ...")
    repeat_count: int = _f(8, "... seen this many times (paper: 32 chars, 8 times)")
    refill: bool = _f(True, "re-branch finished paths at random segment boundaries when a root has no active path but width left")
    max_rounds: int = _f(64, "rounds at most (a guard; each round is one segment deeper)")
    seed: int = _f(0, "sampling seed (round r samples with seed + r)")

    def __post_init__(self):
        require_positive(self, "segment_len", "max_width", "branch", "max_depth", "max_tokens", "repeat_chars", "repeat_count", "max_rounds")
        if not 0 <= self.init_copies <= self.max_width:
            raise ValueError(f"SegmentConfig.init_copies must be in 0..max_width ({self.max_width}), got {self.init_copies}")
        if self.token_budget < 0:
            raise ValueError(f"SegmentConfig.token_budget must be >= 0, got {self.token_budget}")

    @property
    def copies(self) -> int:
        """Copies of the prompt in round 0: `init_copies`, or a quarter of the width when it is 0
        (the best-measured share on the embedded policy, README)."""
        return self.init_copies or max(1, self.max_width // 4)


# -- branching weights: pure functions (tree, active leaves) -> non-negative weights ---------
def uniform_weights(tree: Tree, nodes: Sequence[int]) -> np.ndarray:
    return np.ones(len(nodes))


def _softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    z = x / max(temperature, 1e-8)
    z = np.exp(z - z.max())
    return z / z.sum()


def uncertainty_weights(tree: Tree, nodes: Sequence[int], *, temperature: float = 0.5) -> np.ndarray:
    """softmax(entropy estimate / τ), the estimate being the last segment's mean negative log-probability."""
    ent = np.array([-float(np.mean(tree.logprobs[n])) if tree.logprobs[n] else 0.0 for n in nodes])
    return _softmax(ent, temperature)


def low_probability_weights(tree: Tree, nodes: Sequence[int], *, temperature: float = 4.0) -> np.ndarray:
    """softmax(-cumulative log-probability of the path / τ): less likely paths get more children."""
    cum = np.array([float(sum(tree.prior[tree.path(n)[1:]])) for n in nodes])
    return _softmax(-cum, temperature)


def allocate(total: int, weights: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Share `total` children among paths: ``base[j]`` each (default 1; the heaviest paths first
    when total is short), the rest by largest remainder of ``rest · w / Σw``; ties go to the
    earlier path."""
    k = len(weights)
    base = np.ones(k, dtype=np.int64) if base is None else np.asarray(base, dtype=np.int64)
    out = np.zeros(k, dtype=np.int64)
    if k == 0 or total <= 0:
        return out
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(k, 1.0 / k)
    if total < base.sum():
        for j in np.argsort(-w, kind="stable"):
            out[j] = min(base[j], total - out.sum())
        return out
    out[:] = base
    rest = total - int(base.sum())
    share = rest * w
    whole = np.floor(share).astype(np.int64)
    out += whole
    left = rest - int(whole.sum())
    if left:
        out[np.argsort(-(share - whole), kind="stable")[:left]] += 1
    return out


def has_repetition(text: str, length: int, count: int) -> bool:
    """Does some substring of `length` characters occur at least `count` times (overlaps counted)?"""
    if len(text) < length + count - 1:
        return False
    seen = collections.Counter(text[i : i + length] for i in range(len(text) - length + 1))
    return max(seen.values()) >= count


@dataclasses.dataclass
class _Root:
    """Per-root state. Paths are (node, count): identical samples of one parent share a node,
    which then stands for `count` trajectories (so duplicates are decoded once and their
    continuations still draw from distinct sample indices)."""

    active: list[tuple[int, int]]
    finished: list[tuple[int, int]]
    tokens: int = 0  # decoded by this root so far
    done: bool = False
    refilled: bool = False  # the root has re-branched its finished paths (once at most)

    def width(self, paths: list[tuple[int, int]]) -> int:
        return sum(k for _, k in paths)


def segment_rollouts(
    backend,
    trees: Sequence[Tree],
    config: SegmentConfig = SegmentConfig(),
    *,
    weights: WeightFn = uniform_weights,
    scorer: ValueFn = mean_logprob,
    is_final: FinalFn | None = None,
) -> SearchResult:
    """Grow every tree (a bare root) into at most ``max_width`` trajectories of segments.

    Returns the trees, each with its finished trajectories' leaves in
    ``tree.meta["trajectories"]`` (a leaf repeated once per identical sample), and as selected
    node the leaf the scorer values most.
    """
    cfg = config
    trees = list(trees)
    for t in trees:
        if t.num_nodes != 1:
            raise ValueError(f"tree {t.problem_id!r}: segment rollouts start from a bare root, got {t.num_nodes} nodes")
    state = [_Root(active=[], finished=[]) for _ in trees]
    rngs = [np.random.default_rng([cfg.seed, zlib.crc32(t.problem_id.encode())]) for t in trees]
    with meter(backend) as m:
        # requests: (tree index, node to continue, children wanted)
        requests = [(i, ROOT, n) for i, st in enumerate(state) if (n := _funded(cfg, st, cfg.copies))]
        for rnd in range(cfg.max_rounds):
            if not requests:
                break
            fresh = _decode_round(backend, trees, state, requests, cfg, rnd, is_final)
            requests = []
            for i, st in enumerate(state):
                if st.done:
                    continue
                planned = _plan(trees[i], i, st, fresh[i], cfg, weights, rngs[i])
                requests.extend(planned)
                st.done = not planned
        for t, st in zip(trees, state):  # max_rounds reached: close what is still open
            _close(t, st)
        selected = _evaluate(trees, state, scorer)
    for t, st, s in zip(trees, state, selected):
        t.meta["trajectories"] = sorted(c for c, k in st.finished for _ in range(k))
        t.meta["search"] = {"algo": "segments", "selected": int(s), "config": dataclasses.asdict(cfg),
                            "decoded_tokens": st.tokens}
    return SearchResult(trees, selected, m.cost)


def _close(tree: Tree, st: _Root, paths: list[tuple[int, int]] | None = None) -> None:
    """End `paths` (default: every active path) as cut: not finished solutions."""
    for c, k in st.active if paths is None else paths:
        tree.terminal[c] = True
        tree.finish_reason[c] = "budget"  # cut by the round or token budget
        st.finished.append((c, k))
    if paths is None:
        st.active = []


def _funded(cfg: SegmentConfig, st: _Root, children: int) -> int:
    """How many of `children` the root's token budget can pay for (each decodes <= segment_len)."""
    if not cfg.token_budget:
        return children
    return max(0, min(children, (cfg.token_budget - st.tokens) // cfg.segment_len))


def _decode_round(backend, trees, state, requests, cfg: SegmentConfig, rnd: int, is_final) -> collections.Counter:
    """Decode one segment for every request (one `generate` call per distinct child count), file the
    new paths as active or finished; returns the trajectories finished this round, per root."""
    fresh: collections.Counter = collections.Counter()
    outs = sample_counts(backend, [trees[i] for i, _, _ in requests], [node for _, node, _ in requests],
                         [n for _, _, n in requests], _segment_params(cfg, rnd))
    for (i, node, _), comps in zip(requests, outs):
        t, st = trees[i], state[i]
        st.tokens += sum(len(c.token_ids) for c in comps)
        for c, count, is_new in attach(
            t, node, comps, max_depth=cfg.max_depth, max_tokens=cfg.max_tokens, is_final=is_final, dedup=True
        ):
            if not is_new:  # a re-branch drew an existing child: its subtree is grown already
                continue
            if not t.terminal[c] and has_repetition(t.text_of(c), cfg.repeat_chars, cfg.repeat_count):
                t.terminal[c] = True
                t.finish_reason[c] = "repetition"
            if t.terminal[c]:
                st.finished.append((c, count))
                fresh[i] += count
            else:
                st.active.append((c, count))
    return fresh


def _segment_params(cfg: SegmentConfig, rnd: int) -> SamplingParams:
    """One segment's sampling: at most segment_len tokens, ending early at the step delimiter (if any)."""
    stop = (cfg.step_delimiter,) if cfg.step_delimiter else ()
    return SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.segment_len, stop=stop,
                          seed=cfg.seed + rnd)


def _plan(tree: Tree, i: int, st: _Root, fresh: int, cfg: SegmentConfig, weights: WeightFn, rng) -> list[tuple[int, int, int]]:
    """The next round's requests (tree index, node, children) of one root; empty when it is done."""
    room = cfg.max_width - st.width(st.finished)
    if st.active:
        return _branch(tree, i, st, min(room, cfg.branch * st.width(st.active) + cfg.branch * fresh), cfg, weights)
    if st.refilled:  # one re-branch per root: more rounds of a few paths cost calls
        return []
    if not (cfg.refill and room > 0 and st.finished):
        return []
    st.refilled = True
    return _refill(tree, i, st, _funded(cfg, st, room), cfg, rng)


def _branch(tree: Tree, i: int, st: _Root, total: int, cfg: SegmentConfig, weights: WeightFn) -> list[tuple[int, int, int]]:
    """Share `total` children among the active paths (a node standing for k trajectories weighs k
    times one path and gets k at least); paths the token budget cannot fund end as cut."""
    nodes = [c for c, _ in st.active]
    counts = np.array([k for _, k in st.active])
    funded = _funded(cfg, st, total)
    alloc = allocate(funded, weights(tree, nodes) * counts, base=counts)
    # alive + finished never exceeds max_width, so without a budget every alive path gets its children
    assert funded < total or (alloc >= counts).all(), f"width budget broken: {alloc} < {counts}"
    _close(tree, st, [(c, int(k)) for c, k, a in zip(nodes, counts, alloc) if a == 0])
    st.active = []
    return [(i, c, int(a)) for c, a in zip(nodes, alloc) if a > 0]


def _refill(tree: Tree, i: int, st: _Root, room: int, cfg: SegmentConfig, rng) -> list[tuple[int, int, int]]:
    """Fallback: re-branch finished trajectories at random segment boundaries, `branch` new paths
    per pick, until `room` is used. The root counts as a boundary only for one-segment
    trajectories: re-branching there shares no prefix."""
    want: dict[int, int] = {}
    left = room
    while left > 0:
        leaf = st.finished[int(rng.integers(len(st.finished)))][0]
        boundary = tree.path(leaf)[:-1]
        if len(boundary) > 1:
            boundary = boundary[1:]
        node = boundary[int(rng.integers(len(boundary)))]
        k = min(cfg.branch, left)
        want[node] = want.get(node, 0) + k
        left -= k
    return [(i, node, k) for node, k in want.items()]


def _evaluate(trees: list[Tree], state: list[_Root], scorer: ValueFn) -> list[int]:
    """Score each distinct finished leaf once; back it up once per trajectory it stands for."""
    flat_t, flat_n = [], []
    for t, st in zip(trees, state):
        for c in dict.fromkeys(c for c, _ in st.finished):
            flat_t.append(t)
            flat_n.append(c)
    values = scorer(flat_t, flat_n) if flat_n else []
    for t, c, v in zip(flat_t, flat_n, values):
        t.value[c] = float(v)
    selected = []
    for t, st in zip(trees, state):
        for c, k in st.finished:
            for _ in range(k):
                backup(t, c, float(t.value[c]))
        if not st.finished:
            selected.append(ROOT)
            continue
        selected.append(max((c for c, _ in st.finished), key=lambda c: (t.value[c], -c)))
    return selected


def segment_advantages(tree: Tree, leaves: Sequence[int], rewards: Sequence[float], *, whiten: bool = True, eps: float = 1e-6) -> np.ndarray:
    """TreePO's segment-level advantage of each trajectory (root-to-leaf path).

    For trajectory i and each ancestor group G_d (the trajectories among `leaves` that share
    its first d segments, d = 0 being the whole root group), ``a_{i,d} = R_i - mean(R over G_d)``;
    groups with a single member are skipped for d > 0. ``A_i = mean_d a_{i,d}``, then
    whitened over `leaves` (``(A - mean) / (std + eps)``) when `whiten`. Returns [len(leaves)].
    """
    r = np.asarray(rewards, dtype=np.float64)
    if len(r) != len(leaves):
        raise ValueError(f"{len(leaves)} leaves but {len(r)} rewards")
    if not len(r):
        return np.zeros(0)
    paths = [tree.path(leaf) for leaf in leaves]
    members: dict[int, list[int]] = collections.defaultdict(list)
    for i, p in enumerate(paths):
        for node in p[:-1]:  # the leaf's own group is the trajectory alone
            members[node].append(i)
    adv = np.zeros(len(r))
    for i, p in enumerate(paths):
        terms = [r[i] - r[members[node]].mean() for node in p[:-1] if node == p[0] or len(members[node]) > 1]
        adv[i] = float(np.mean(terms)) if terms else 0.0
    if whiten:
        adv = (adv - adv.mean()) / (adv.std() + eps)
    return adv
