"""Expansion: one batched backend call turning leaves of many trees into children.

Every search grows its trees through `expand`: the contexts of all (tree, node)
pairs of a wave go to the backend in ONE `generate` call (``params.n`` samples
each), and each sample becomes a child whose token ids continue the parent's
context exactly, so the backend's prefix cache serves the shared prefix.

A child is terminal when its completion ended with EOS, when it reaches the
depth or token limit, or when `is_final` finds a complete final answer in the
path text (``is_final(text) -> bool``, e.g. a finished ``Answer: N`` line).

A terminal that only hit the depth or token limit did not finish its solution:
its ``finish_reason`` is set to ``"depth"`` or ``"max_tokens"`` (`CUT_REASONS`
lists every reason that means "cut", including the search's own ``"budget"``
and ``"repetition"``), and `finished` is False for it, so no verifier judges
an answer from it.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Sequence

from treesearch.backends.base import Completion, SamplingParams
from treesearch.tree import Tree

FinalFn = Callable[[str], bool]

CUT_REASONS = ("depth", "max_tokens", "length", "budget", "repetition")
_ANSWER_DONE = re.compile(r"(?m)^\s*Answer:[^\S\n]*\S[^\n]*\n")


def answer_line_done(text: str) -> bool:
    """Default `is_final`: a complete ``Answer: ...`` line (newline-terminated) is in `text`."""
    return _ANSWER_DONE.search(text) is not None


def finished(tree: Tree, node: int) -> bool:
    """Did the solution ending at `node` finish (EOS or a complete final answer), rather than being cut?"""
    return bool(tree.terminal[node]) and tree.finish_reason[node] not in CUT_REASONS


def end_reason(
    tree: Tree, parent: int, c: Completion, *, max_depth: int, max_tokens: int, is_final: FinalFn | None
) -> str | None:
    """None if `c` under `parent` does not end the solution; else the finish reason the child records:
    the backend's own when the solution finished (EOS, or "final" for a complete answer cut at the
    step budget), "depth" / "max_tokens" when a limit cut it."""
    if c.finish_reason == "eos":
        return "eos"
    if is_final and is_final(tree.text_of(parent) + c.text):
        return "final" if c.finish_reason in CUT_REASONS else c.finish_reason
    if int(tree.depth[parent]) + 1 >= max_depth:
        return "depth"
    if tree.num_tokens(parent) + len(c.token_ids) >= max_tokens:
        return "max_tokens"
    return None


def attach(
    tree: Tree,
    node: int,
    comps: Sequence[Completion],
    *,
    max_depth: int,
    max_tokens: int,
    is_final: FinalFn | None = None,
    dedup: bool = True,
) -> list[tuple[int, int, bool]]:
    """Add `comps` as children of `node`; returns [(child id, samples it stands for, is new)].

    With `dedup`, a sample whose token ids equal an earlier sample's or an existing
    child's is folded into that child (its count grows) instead of becoming a node.
    Entries keep the order in which each child first appeared in `comps`.
    """
    made: dict[tuple[int, ...], int] = {}
    out: list[tuple[int, int, bool]] = []
    if dedup:
        existing = {tuple(tree.token_ids[k]): k for k in tree.children[node]}
    for c in comps:
        key = tuple(c.token_ids)
        if dedup and key in made:
            j = made[key]
            out[j] = (out[j][0], out[j][1] + 1, out[j][2])
            continue
        if dedup and key in existing:
            made[key] = len(out)
            out.append((existing[key], 1, False))
            continue
        why = end_reason(tree, node, c, max_depth=max_depth, max_tokens=max_tokens, is_final=is_final)
        child = tree.add_child(
            node, text=c.text, token_ids=c.token_ids, logprobs=c.logprobs,
            finish_reason=c.finish_reason if why is None else why, terminal=why is not None,
        )
        made[key] = len(out)
        out.append((child, 1, True))
    return out


def sample(backend, trees: Sequence[Tree], nodes: Sequence[int], params: SamplingParams) -> list[list[Completion]]:
    """ONE `generate` call over the contexts of all (trees[i], nodes[i]) pairs."""
    if not nodes:
        return []
    outs = backend.generate([t.context_ids(n) for t, n in zip(trees, nodes)], params)
    if len(outs) != len(nodes):
        raise RuntimeError(f"backend returned {len(outs)} results for {len(nodes)} prompts")
    for t, n in zip(trees, nodes):
        t.expanded[n] += 1
    return outs


def sample_counts(backend, trees: Sequence[Tree], nodes: Sequence[int], counts: Sequence[int],
                  params: SamplingParams) -> list[list[Completion]]:
    """``counts[i]`` completions for each (trees[i], nodes[i]), in input order: one `generate` call per
    distinct count, since the protocol takes one ``n`` per call and sending a context twice would
    replay the same seeded samples (so k searchers sharing a node ask for k·m samples of it once)."""
    by_n: dict[int, list[int]] = {}
    for i, n in enumerate(counts):
        by_n.setdefault(int(n), []).append(i)
    out: list[list[Completion]] = [[] for _ in nodes]
    for n in sorted(by_n):
        idx = by_n[n]
        got = sample(backend, [trees[i] for i in idx], [nodes[i] for i in idx], dataclasses.replace(params, n=n))
        for i, comps in zip(idx, got):
            out[i] = comps
    return out


def expand(
    backend,
    trees: Sequence[Tree],
    nodes: Sequence[int],
    params: SamplingParams,
    *,
    max_depth: int,
    max_tokens: int,
    is_final: FinalFn | None = None,
    dedup: bool = True,
) -> list[list[int]]:
    """Sample ``params.n`` children for each ``(trees[i], nodes[i])`` in one `generate` call.

    Returns the new child ids per pair (in sample order). With `dedup`, a sample whose
    token ids equal an earlier sibling's (from this call or before) is dropped, so
    siblings are distinct steps (a node without children always gets at least one).
    """
    outs = sample(backend, trees, nodes, params)
    kw = dict(max_depth=max_depth, max_tokens=max_tokens, is_final=is_final, dedup=dedup)
    return [[c for c, _, is_new in attach(t, n, comps, **kw) if is_new] for t, n, comps in zip(trees, nodes, outs)]
