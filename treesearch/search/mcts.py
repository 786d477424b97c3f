"""Monte-Carlo tree search over reasoning steps, as in MCTS-DPO (Xie et al., 2024).

A node is a step (text up to and including the step delimiter, within a token
budget). One simulation per tree per wave, all trees of a batch together:

1. **select**: from the search root, follow ``argmax select(tree, node)`` (PUCT
   by default) down to a leaf;
2. **expand**: the leaves of every tree go to the backend in ONE `generate` call,
   ``width`` sampled next steps each (stop at the delimiter);
3. **evaluate**: a terminal child gets the outcome reward (+1 / -1 from the
   scorer, its V = 0; at test time, with ``reward_fn``, its value under that
   function instead, e.g. a PRM as 2p − 1, no verifier consulted); the other
   children get V from `value_fn`, one batched call over the wave. A value function may answer ``None`` for a node it
   cannot judge (`unknown_value`, the ``counts`` method): that child is not
   backed up, so an unexplored step stays unvisited instead of counting as a
   measured return of 0, and Q holds judged outcomes only;
4. **backup** (γ = 1): each child's evaluation is added to it and to every
   ancestor (`treesearch.tree.backup`). V(node) is the plain visit mean of the
   returns below it (mctx / AlphaZero), not the paper's ``Σ max(1,N_c)·Q_c /
   Σ max(1,N_c)``: the two agree once every child has been visited, and the
   plain mean keeps ``value_sum`` additive, so the backup is a loop over
   `parent` and the invariant ``visits = evals + Σ children visits`` holds.

With ``revisit_terminals`` (the original behaviour) a leaf that is already
terminal is re-evaluated (its outcome is backed up again), which is how visits
concentrate on the best answer, but that simulation expands nothing; without
it, selection only descends into subtrees that still have something to expand
(`open_nodes`), so every simulation samples new steps and a tree with nothing
left to expand stops. A sample that repeats a judged finished answer (folded
into it by dedup, or reproduced by a rollout) is then backed up again and
recorded as one more judged outcome (``tree.meta["rollouts"]``), so Q and the
pairs' counts are over samples, not over distinct answers: a policy that
reaches one answer four times has four outcomes there, not one. ``value_prior`` shrinks Q toward 0 (a Beta(1, 1) prior
on the success probability when it is 2 and the backups are ±1 outcomes):
``Q = r + value_sum / (visits + value_prior)``. A step cut by
``step_max_tokens`` (finish reason "length") ends the path with
``end_cut_steps`` (judged like any terminal: an unfinished line is no answer)
instead of becoming an interior node whose next step continues mid-line.
With ``rollouts`` k > 0 every new interior child also gets k Monte-Carlo
completions (Math-Shepherd / OmegaPRM), one batched call per wave, each added
under it as a chain of steps (identical steps shared), its end judged and
backed up like any terminal, so the child's Q is a mean of real outcomes and
the rollouts' steps become part of the tree. With ``root_samples`` k > 0 the
search starts from k independent complete solutions sampled from the root
(one batched call), merged into the tree as chains of steps (identical steps
shared: a trie of samples, the Monte-Carlo estimate of every step on them),
each end judged and backed up; the simulations then grow the tree from there.
Under a token budget the samples are one indivisible draw, so the budget a
long problem's samples overshot is taken back from the batch: its unspent
tokens are shared equally among its trees.
With ``token_budget`` a tree stops once the tokens it sampled (expansions plus
what the value function reports in ``last_tokens``: rollouts, PRM steps; and
the ``rollouts`` MCTS attaches itself) reach the budget, the last wave
stochastically rounded so the expected spend is the budget (`_over_budget`);
``simulations`` is then a cap, and a tree with nothing left to expand samples
more first steps. That is how searches with different value functions are
compared at equal sampled tokens. With ``focus`` f as well, a tree first
spends f of its budget; the tokens the batch has not spent then go, in equal
shares, to the trees that reached a verified answer, since step pairs and
judged values come only from those, and a tree that found nothing would spend
its share on more unjudged steps. A tree's share then depends on its batch,
so callers that resume keep batches fixed (`treesearch.loop.Run.search`).
Each node is
expanded once (the paper's fixed width) unless progressive widening is on
(``widen_alpha > 0``): then a node gets new samples while its expansions are
fewer than ``widen_c · N^widen_alpha``.

With ``reroot`` (the paper's setting) the search commits to the most visited
child of the search root and searches again from it until it commits to a
terminal; the first search, from the real root, gets ``root_factor`` times the
simulations. Without it, one search of ``simulations`` waves runs from the root
and the answer is `Tree.best_path` by visits (or, when that ends on an
unfinished node, the terminal with the highest Q).

Ids are assigned in expansion order and wave w samples with seed ``seed + w``
per (context, sample index), so a seeded search builds the same tree every
time, whatever else shares its batch.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from typing import Callable, Sequence

import numpy as np

from treesearch.backends.base import SamplingParams
from treesearch.search.expand import FinalFn, attach, finished, sample
from treesearch.search.result import SearchResult, meter
from treesearch.search.selection import SelectFn, puct
from treesearch.search.values import Scorer, ValueFn, judge, record_rollouts, value_tokens, zero_value
from treesearch.tree import CORRECT, ROOT, UNKNOWN, Tree, backup


from treesearch.config import field, require_positive

_f = field  # a dataclass field with help text (treesearch.config.field)


@dataclasses.dataclass(frozen=True)
class MCTSConfig:
    """MCTS over steps. Defaults are MCTS-DPO's math settings scaled to the embedded policy."""

    simulations: int = _f(32, "simulations (select-expand-evaluate-backup) per search (paper: 64)")
    root_factor: int = _f(4, "with reroot: the first search, from the real root, gets root_factor x simulations (paper: 4)")
    width: int = _f(4, "k: next steps sampled when a node is expanded (paper: 2; the embedded policy is peaked, so identical samples are merged and 4 gives ~2-3 distinct steps)")
    max_depth: int = _f(8, "steps per solution; a node at this depth is terminal")
    step_max_tokens: int = _f(48, "token budget of one step (paper: 128)")
    max_tokens: int = _f(128, "token budget of a whole solution; reaching it ends the path")
    temperature: float = _f(1.0, "sampling temperature of expansions")
    top_p: float = _f(1.0, "nucleus sampling mass of expansions")
    c_puct: float = _f(1.0, "exploration constant c in Q + c·p·sqrt(N_parent)/(1+N) (paper: 1.0)")
    length_penalty: float = _f(1.25, "λ in the step prior p = exp(Σ log π / |a|^λ) (paper: 1.25)")
    correct_reward: float = _f(1.0, "reward at a terminal whose answer verifies")
    wrong_reward: float = _f(-1.0, "reward at any other terminal")
    widen_c: float = _f(1.0, "progressive widening: an expanded node is expanded again while expansions < widen_c · N^widen_alpha")
    widen_alpha: float = _f(0.0, "progressive widening exponent; 0 keeps the paper's fixed width (one expansion per node)")
    reroot: bool = _f(False, "commit to the most visited child and search again until terminal (paper: on)")
    dedup: bool = _f(True, "drop sampled steps identical to a sibling")
    revisit_terminals: bool = _f(True, "a simulation that selects a finished answer re-evaluates it and expands nothing (original); false: selection skips subtrees with nothing left to expand")
    end_cut_steps: bool = _f(False, "a step cut by step_max_tokens ends the path (terminal, judged) instead of becoming an interior node continued mid-line")
    value_prior: float = _f(0.0, "Q = r + value_sum / (visits + value_prior): a prior mean of 0 worth value_prior evaluations (2 = Beta(1,1) with ±1 outcome backups)")
    root_samples: int = _f(0, "independent complete solutions sampled from the root before the simulations, merged into the tree as step chains (a trie), judged and backed up (their tokens count); 0 = none")
    rollouts: int = _f(0, "Monte-Carlo rollouts from each new interior child, continued to the end, added to the tree as steps, judged and backed up (their tokens count); 0 = none")
    token_budget: int = _f(0, "sampled tokens per tree (expansions + value-function rollouts / PRM steps); 0 = off, else simulations is a cap")
    focus: float = _f(0.0, "with token_budget: each tree first spends this share of its budget, then the batch's unspent tokens go in equal shares to the trees that reached a verified answer (where pairs come from); 0 = off")
    step_delimiter: str = _f("\n", "a step ends at this string (the task's step delimiter)")
    seed: int = _f(0, "sampling seed")

    def __post_init__(self):
        require_positive(self, "simulations", "root_factor", "width", "max_depth", "step_max_tokens", "max_tokens")
        if self.temperature < 0:
            raise ValueError(f"MCTSConfig.temperature must be >= 0, got {self.temperature}")
        if self.value_prior < 0 or self.token_budget < 0 or self.rollouts < 0 or self.root_samples < 0:
            raise ValueError("MCTSConfig.value_prior, rollouts, root_samples and token_budget must be >= 0")
        if not 0 <= self.focus < 1 or (self.focus and not self.token_budget) or (self.focus and self.reroot):
            raise ValueError(f"MCTSConfig.focus must be in [0, 1) and needs token_budget > 0 and reroot off, got {self.focus}")

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            n=self.width,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.step_max_tokens,
            stop=(self.step_delimiter,),
            include_stop_str_in_output=True,
            seed=self.seed,
        )


def may_widen(tree: Tree, node: int, *, c: float = 1.0, alpha: float = 0.0) -> bool:
    """Progressive widening (Coulom 2007): sample more children for `node` while its
    expansions < c · N(node)^alpha. With alpha = 0 and c <= 1 a node is expanded once."""
    return bool(tree.expanded[node] < c * float(tree.visits[node]) ** alpha)


def open_nodes(tree: Tree, widen: Callable[[Tree, int], bool] | None = None) -> np.ndarray:
    """[num_nodes] bool: the node's subtree still has something to expand (a non-terminal leaf, or a
    node `widen` would give more children). Children have larger ids, so one reverse pass suffices."""
    n = tree.num_nodes
    out = np.zeros(n, np.bool_)
    term = tree.terminal
    for node in range(n - 1, -1, -1):
        if term[node]:
            continue
        kids = tree.children[node]
        out[node] = not kids or any(out[c] for c in kids) or bool(widen is not None and widen(tree, node))
    return out


def select_leaf(tree: Tree, node: int, select: SelectFn, widen: Callable[[Tree, int], bool] | None = None,
                open_: np.ndarray | None = None) -> int:
    """Descend from `node` by ``argmax select`` until a node without children, or one that `widen` says
    should get more children. With `open_` (`open_nodes`), only children still open are eligible."""
    while tree.children[node]:
        if widen is not None and widen(tree, node):
            return node
        scores = select(tree, node)
        if open_ is not None:
            scores = np.where(open_[tree.children[node]], scores, -np.inf)
        node = tree.children[node][int(np.argmax(scores))]
    return node


def commit(tree: Tree) -> int:
    """The answer node of a finished non-rerooted search: the end of `best_path` if terminal,
    else the terminal with the highest Q (then most visits, then lowest id); ROOT if none."""
    end = tree.best_path()[-1]
    if tree.terminal[end]:
        return end
    terminals = [n for n in range(tree.num_nodes) if tree.terminal[n]]
    if not terminals:
        return ROOT
    return max(terminals, key=lambda n: (tree.q(n), int(tree.visits[n]), -n))


def mcts(
    backend,
    trees: Sequence[Tree],
    config: MCTSConfig = MCTSConfig(),
    *,
    score: Scorer | None = None,
    value_fn: ValueFn = zero_value,
    reward_fn: ValueFn | None = None,
    select: SelectFn | None = None,
    is_final: FinalFn | None = None,
) -> SearchResult:
    """Search every tree (each holding at least its root) and return the committed answer nodes.

    score: outcome of a finished solution text (1.0 right); value_fn: V at new non-terminal
    nodes, one call per wave; reward_fn: instead of `score`, the reward of a finished terminal
    is its value under this ValueFn (e.g. a signed PRM, 2p − 1: test-time search without a
    verifier; one call per wave, no verdict recorded), a cut terminal gets ``wrong_reward``;
    select: selection rule, default `puct` with the config's c_puct and length_penalty;
    is_final: does a path text hold a complete final answer.
    Trees may already hold nodes (a search resumes where it stopped).
    """
    cfg = config
    if score is None and (reward_fn is None or cfg.rollouts or cfg.root_samples or cfg.focus):
        raise ValueError("mcts needs `score` (outcomes of finished solutions), or `reward_fn` and no rollouts, root_samples or focus")
    select = select or functools.partial(puct, c_puct=cfg.c_puct, length_penalty=cfg.length_penalty,
                                         value_prior=cfg.value_prior)
    widen = functools.partial(may_widen, c=cfg.widen_c, alpha=cfg.widen_alpha)
    trees = list(trees)
    st = _Batch.start(trees, cfg)
    waves = functools.partial(_waves, backend, trees, st, cfg, score=score, value_fn=value_fn, reward_fn=reward_fn,
                              select=select, widen=widen, is_final=is_final)
    with meter(backend) as m:
        if cfg.root_samples:
            _sample_roots(backend, trees, st, cfg, score, is_final)
        waves()
        if cfg.focus and _refocus(trees, st, cfg):
            waves()
    # a rerooted search stopped before it committed to a terminal answers like an unrooted one
    selected = [r if cfg.reroot and not (cut and not t.terminal[r]) else commit(t)
                for t, r, cut in zip(trees, st.roots, st.stopped)]
    for tree, node, tok in zip(trees, selected, st.spent):
        tree.meta["search"] = {"algo": "mcts", "selected": int(node), "config": dataclasses.asdict(cfg),
                               "sampled_tokens": int(tok)}
    return SearchResult(trees, list(selected), m.cost)


@dataclasses.dataclass
class _Batch:
    """What one `mcts` call tracks per tree: search root, simulations left, token budget and spend, state."""

    roots: list[int]
    sims: list[int]
    budget: list[float]  # sampled tokens allowed (0 = no token budget)
    spent: list[int]  # tokens sampled: expansions + what the value function reports
    done: list[bool]
    stopped: list[bool]  # stopped by the token budget or with nothing left to expand
    wave: int = 0

    @classmethod
    def start(cls, trees: Sequence[Tree], cfg: MCTSConfig) -> "_Batch":
        n = len(trees)
        first = cfg.token_budget * (cfg.focus or 1.0)
        return cls([ROOT] * n, [cfg.simulations * (cfg.root_factor if cfg.reroot else 1)] * n, [first] * n,
                   [0] * n, [bool(t.terminal[ROOT]) for t in trees], [False] * n)


def _refocus(trees: Sequence[Tree], st: _Batch, cfg: MCTSConfig) -> bool:
    """After the first share of the budget: give the batch's unspent tokens, in equal shares, to the
    trees holding a verified answer (every tree when none does); the simulation cap grows with the
    tokens given, so a share many budgets large can be spent. Returns whether any tree resumes."""
    pool = cfg.token_budget * len(trees) - sum(st.spent)
    live = [i for i, t in enumerate(trees) if not t.terminal[ROOT]]
    hit = [i for i in live if (trees[i].verdict == CORRECT).any()]
    targets = hit or live
    if pool <= 0 or not targets:
        return False
    share = pool / len(targets)
    for i in targets:
        st.budget[i] = st.spent[i] + share
        st.sims[i] = max(cfg.simulations, math.ceil(cfg.simulations * share / cfg.token_budget))
        st.done[i] = st.stopped[i] = False
    return True


def _waves(backend, trees: Sequence[Tree], st: _Batch, cfg: MCTSConfig, *, score, value_fn, reward_fn, select,
           widen, is_final) -> None:
    """Simulations until every tree is done: one select-expand-evaluate-backup per live tree per wave."""
    while not all(st.done):
        # the seed moves with the wave so a widened node draws new samples; a tree still
        # evolves the same whatever shares its batch (every live tree takes part in every wave)
        params = dataclasses.replace(cfg.sampling(), seed=cfg.seed + st.wave)
        st.wave += 1
        live = [i for i in range(len(trees)) if not st.done[i]]
        grow: list[int] = []
        leaves: list[int] = []
        for i in live:
            open_ = None if cfg.revisit_terminals else open_nodes(trees[i], widen)
            if open_ is not None and not open_[st.roots[i]]:
                if not cfg.token_budget:
                    continue  # nothing left to expand below the search root: this tree is finished
                leaf = st.roots[i]  # budget left but nothing open: sample more first steps (widen the root)
            else:
                leaf = select_leaf(trees[i], st.roots[i], select, widen, open_)
            if trees[i].terminal[leaf]:
                backup(trees[i], leaf, float(trees[i].value[leaf]))  # re-evaluate a finished answer
            else:
                grow.append(i)
                leaves.append(leaf)
        outs = sample(backend, [trees[i] for i in grow], leaves, params)
        kw = dict(max_depth=cfg.max_depth, max_tokens=cfg.max_tokens, is_final=is_final, dedup=cfg.dedup)
        new, repeats = [], []
        wave_tokens = dict.fromkeys(live, 0)
        for i, leaf, comps in zip(grow, leaves, outs):
            got = attach(trees[i], leaf, comps, **kw)
            kids = [c for c, _, is_new in got if is_new]
            if not cfg.revisit_terminals:
                repeats.extend((i, c, k - is_new) for c, k, is_new in got if k > is_new)
            if cfg.end_cut_steps:
                for c in kids:
                    if trees[i].finish_reason[c] == "length":
                        trees[i].terminal[c] = True  # cut mid-line: the path ends unfinished
            new.append(kids)
            wave_tokens[i] += sum(len(c.token_ids) for c in comps)
        for i, t in _evaluate(trees, grow, new, cfg, score, value_fn, reward_fn):
            wave_tokens[i] += t
        for i, c, k in repeats:
            _repeat(trees[i], c, k)
        if cfg.rollouts:
            todo = [(i, c) for i, kids in zip(grow, new) for c in kids if not trees[i].terminal[c]]
            for i, t in _rollout(backend, trees, todo, cfg.rollouts, cfg, score, is_final, cfg.seed + st.wave):
                wave_tokens[i] += t
        for i in live:
            st.spent[i] += wave_tokens[i]
            _after_wave(trees[i], i, st, cfg, widen, wave_tokens[i])


def _after_wave(tree: Tree, i: int, st: _Batch, cfg: MCTSConfig, widen, wave_tokens: int) -> None:
    """Count tree i's simulation; stop it (budget, nothing left, simulations spent) or reroot it."""
    st.sims[i] -= 1
    exhausted = not cfg.revisit_terminals and not cfg.token_budget and not open_nodes(tree, widen)[st.roots[i]]
    over = bool(cfg.token_budget) and _over_budget(st.spent[i], wave_tokens, st.budget[i],
                                                   f"{tree.problem_id}:{cfg.seed}:{st.wave}")
    if st.sims[i] > 0 and not over and not exhausted:
        return
    if not cfg.reroot or over or exhausted:
        st.done[i] = True
        st.stopped[i] = bool(over or exhausted)
        return
    child = tree.best_child(st.roots[i])
    if child < 0:  # cannot happen after >= 1 simulation from a non-terminal root
        st.done[i] = True
        return
    st.roots[i] = child
    st.done[i] = bool(tree.terminal[child])
    st.sims[i] = cfg.simulations


def _repeat(tree: Tree, node: int, times: int) -> None:
    """`times` more samples ended at the judged finished answer `node` (folded into it by dedup or
    reproduced by a rollout): back each up and record it as a judged outcome (`record_rollouts`), so
    values and pairs count samples, not distinct answers. Unjudged nodes (interior steps, answers
    rewarded by a `reward_fn`) are left alone."""
    if not tree.terminal[node] or tree.verdict[node] == UNKNOWN:
        return
    for _ in range(times):
        backup(tree, node, float(tree.value[node]))
    record_rollouts(tree, node, times * int(tree.verdict[node] == CORRECT), times)


def _over_budget(spent: int, last_wave: int, budget: float, key: str) -> bool:
    """Stop a tree that spent `spent` of `budget` tokens, its last wave costing `last_wave`? At the
    budget, yes; short of it by r < one more such wave, continue with probability r / last_wave (a
    deterministic draw from `key`): the expected spend is then the budget, even when one wave costs
    about the whole budget (rollouts, PAV), so methods compare at equal tokens on average."""
    if spent >= budget:
        return True
    if last_wave <= 0 or spent + last_wave <= budget:
        return False
    u = zlib.crc32(key.encode()) / 2**32
    return u >= (budget - spent) / last_wave


def _rollout(backend, trees, todo: list[tuple[int, int]], n: int, cfg: MCTSConfig, score: Scorer, is_final,
             seed: int) -> list[tuple[int, int]]:
    """`n` completions from every (tree index, node) in `todo` in ONE generate call, each added under
    its node as a chain of steps (identical steps shared) up to its end, the depth limit or a final
    answer; the chain's end is judged and backed up. Returns [(tree index, tokens sampled)]."""
    from treesearch.rewards.omega import split_completion  # lazy: the rewards package imports the search

    if not todo:
        return []
    budget = max(1, cfg.max_tokens - min(trees[i].num_tokens(c) for i, c in todo))
    params = SamplingParams(n=n, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=budget, seed=seed)
    outs = backend.generate([trees[i].context_ids(c) for i, c in todo], params)
    spent = []
    for (i, c), comps in zip(todo, outs):
        tree = trees[i]
        for comp in comps:
            end, is_new = _attach_chain(tree, c, split_completion(backend, comp, cfg.step_delimiter), comp, cfg, is_final)
            if end is not None and not is_new:
                _repeat(tree, end, 1)
            elif end is not None:
                tree.reward[end] = cfg.correct_reward if judge(tree, end, score) else cfg.wrong_reward
                backup(tree, end, 0.0)
        spent.append((i, sum(len(x.token_ids) for x in comps)))
    return spent


ROOT_SEED = 1_000_003  # offset of the root samples' seed: no wave (seed + w) draws the same numbers


def _sample_roots(backend, trees: Sequence[Tree], st: "_Batch", cfg: MCTSConfig, score: Scorer, is_final) -> None:
    """`cfg.root_samples` complete solutions from the root of every live tree (one call), merged as
    step chains; their tokens count. Under a token budget the samples are one indivisible draw, so a
    long problem's samples overshoot its share: the batch's unspent budget is then shared equally among its
    trees (none left: the search stops), and the batch spends its total budget on average."""
    live = [i for i in range(len(trees)) if not st.done[i]]
    for i, tokens in _rollout(backend, trees, [(i, ROOT) for i in live], cfg.root_samples, cfg, score, is_final,
                              cfg.seed + ROOT_SEED):
        st.spent[i] += tokens
    if not cfg.token_budget or not live:
        return
    pool = sum(st.budget[i] - st.spent[i] for i in live)
    for i in live:
        st.budget[i] = st.spent[i] + max(0.0, pool) / len(live)
        # a wave is spent whole before the budget is checked: take the first one with probability
        # share / its expected cost (`width` steps of this tree's mean step length), as `_over_budget`
        # rounds every last wave, so a share smaller than a wave is spent on average, not exceeded
        t = trees[i]
        step = sum(len(t.token_ids[n]) for n in range(1, t.num_nodes)) / max(1, t.num_nodes - 1)
        if pool <= 0 or _over_budget(st.spent[i], cfg.width * step, st.budget[i], f"{t.problem_id}:{cfg.seed}:root"):
            st.done[i] = st.stopped[i] = True


def _attach_chain(tree: Tree, node: int, pieces, comp, cfg: MCTSConfig, is_final) -> tuple[int | None, bool]:
    """Add rollout `pieces` [(text, ids)] under `node`, reusing identical children. Returns (end, new):
    the node that ends the path (last piece, depth or token limit, final answer), marked terminal, and
    whether it is new (an existing terminal the rollout reproduced is one more sample of that answer);
    end is None when the rollout stopped on an existing interior step."""
    at, offset = node, 0
    for j, (text, ids) in enumerate(pieces):
        lps = comp.logprobs[offset : offset + len(ids)] if comp.logprobs else ()
        offset += len(ids)
        depth, used = int(tree.depth[at]) + 1, tree.num_tokens(at) + len(ids)
        final = bool(is_final and is_final(tree.text_of(at) + text))
        last = j == len(pieces) - 1 or depth >= cfg.max_depth or used >= cfg.max_tokens or final
        same = [k for k in tree.children[at] if tree.token_ids[k] == list(ids)]
        if same:
            at = same[0]
            if tree.terminal[at]:
                return at, False
            if last:  # a known interior step where this rollout stops unfinished: nothing judged
                return None, False
            continue
        finish = comp.finish_reason if j == len(pieces) - 1 else "stop"
        at = tree.add_child(at, text=text, token_ids=ids, logprobs=lps, finish_reason=finish, terminal=last)
        if last:
            return at, True
    return None, False


def _evaluate(trees, grow, new, cfg: MCTSConfig, score: Scorer | None, value_fn: ValueFn,
              reward_fn: ValueFn | None = None) -> list[tuple[int, int]]:
    """Outcome reward at terminal children (`score`, or `reward_fn` in one call), `value_fn` (one
    call) at the others, then backup.

    A value of None means unknown: the child is left unvisited. Returns [(tree index, tokens)]
    the value and reward functions report having sampled or read (`value_tokens`)."""
    pending_i, pending_t, pending_n = [], [], []
    ends_i, ends_t, ends_n = [], [], []
    for i, kids in zip(grow, new):
        tree = trees[i]
        for c in kids:
            if tree.terminal[c] and reward_fn is not None:
                tree.reward[c] = cfg.wrong_reward
                if finished(tree, c):  # a cut solution has no answer to reward
                    ends_i.append(i)
                    ends_t.append(tree)
                    ends_n.append(c)
            elif tree.terminal[c]:
                tree.reward[c] = cfg.correct_reward if judge(tree, c, score) else cfg.wrong_reward
            else:
                pending_i.append(i)
                pending_t.append(tree)
                pending_n.append(c)
    values = value_fn(pending_t, pending_n) if pending_n else []
    if len(values) != len(pending_n):
        raise RuntimeError(f"value_fn returned {len(values)} values for {len(pending_n)} nodes")
    known = set()
    for tree, c, v in zip(pending_t, pending_n, values):
        if v is not None:
            tree.value[c] = float(v)
            known.add((id(tree), c))
    spent = list(zip(pending_i, value_tokens(value_fn, len(pending_n)))) if pending_n else []
    if ends_n:
        rewards = reward_fn(ends_t, ends_n)
        if len(rewards) != len(ends_n) or any(r is None for r in rewards):
            raise RuntimeError(f"reward_fn must return a value for each of the {len(ends_n)} finished terminals")
        for tree, c, r in zip(ends_t, ends_n, rewards):
            tree.reward[c] = float(r)
        spent += list(zip(ends_i, value_tokens(reward_fn, len(ends_n))))
    for i, kids in zip(grow, new):
        for c in kids:
            if trees[i].terminal[c] or (id(trees[i]), c) in known:
                backup(trees[i], c, float(trees[i].value[c]))
    return spent
