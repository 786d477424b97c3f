"""Drawing a search tree: a tidy layout from the arrays, an interactive plotly view, a static matplotlib one.

    from treesearch.viz import plot_tree, save_tree
    fig = plot_tree(tree, color="q", pairs=pair_records)   # plotly Figure
    save_tree(tree, "tree.html", pairs=pair_records)        # standalone HTML, plotly.js inlined
    save_tree(tree, "tree.svg")                             # same layout through matplotlib (.png/.svg/.pdf)

What is drawn, for MCTS trees and tree-segment trees alike (both are `Tree`):

* one marker per node at its `tidy_layout` position (depth downwards); marker
  area grows with ``visits``;
* fill colour by ``color="q"`` (``Q = r + V``, red-yellow-green scale) or
  ``color="verdict"``: terminals green (correct), red (wrong) or grey (not
  judged); other nodes a light tint of what the verifier found below them
  (light green: some correct terminal below, light red: only wrong ones,
  light grey: nothing judged below);
* hover text: node id, depth, visits, Q, V, prior (summed log-probability),
  reward, verdict, finish reason, token count and the full step text;
* the best path (`Tree.best_path`, by visits) as thick gold edges and the
  search's selected answer node (``meta["search"]["selected"]``) as a star;
* preference pairs (records of `treesearch.pairs`, matched on ``problem_id``,
  drawn from ``node_ids = [parent, chosen, rejected]``): chosen nodes get a
  blue outline, rejected ones an orange outline (blue/orange because the fills
  already use green/red), and a dashed arc links each chosen node to its
  rejected one;
* large trees stay readable through `select_nodes`: nodes under ``min_visits``
  are dropped and at most ``max_nodes`` are kept, most visited subtrees first;
  the best path, the selected node and every pair node are always kept, and a
  kept node with hidden descendants is labelled ``+k``; the title gives the
  total hidden.

Static images use matplotlib, not plotly's kaleido: kaleido needs a Chrome
binary at export time, matplotlib draws the same `TreeView` offline anywhere.
plotly and matplotlib are imported lazily (the ``viz`` extra).
"""
from __future__ import annotations

import dataclasses
import heapq
import html
import textwrap
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from treesearch.io import atomic_write_text, save_figure
from treesearch.pairs import terminal_stats
from treesearch.tree import CORRECT, NO_PARENT, ROOT, UNKNOWN, WRONG, Tree

COLOR_MODES = ("q", "verdict")
DEFAULT_MAX_NODES = 500
NODE_TRACE = "nodes"  # name of the plotly trace holding exactly one point per drawn node

# colours shared by both renderers
BEST_PATH = "#e6a100"
EDGE = "#b0b0b0"
CHOSEN = "#1f4fff"
REJECTED = "#ff7f0e"
BOTH = "#9b30ff"  # a node chosen in one pair and rejected in another
PAIR_LINK = "#7a3fbf"
OUTLINE = "#404040"
VERDICT_COLORS = {
    "correct": "#2ca02c",
    "wrong": "#d62728",
    "not judged": "#8c8c8c",
    "correct below": "#b7e4b0",
    "only wrong below": "#f4b6b6",
    "open": "#e3e3e3",
}
Q_SCALE = "RdYlGn"


# -- layout and filtering -------------------------------------------------------------------------
def tidy_layout(tree: Tree, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(x, y)``, each ``[num_nodes]`` (NaN for nodes not in `keep`).

    Leaves of the kept tree take consecutive integer x slots in depth-first order
    (children in id order, i.e. expansion order); a parent sits midway between its
    first and last kept child; ``y = -depth``. Subtrees cover disjoint leaf ranges,
    so nodes of one depth are at least 1 apart and no two nodes overlap.
    `keep` must contain the root and be closed under taking parents.
    """
    n = tree.num_nodes
    keep = np.ones(n, bool) if keep is None else np.asarray(keep, bool)
    if keep.shape != (n,) or not keep[ROOT]:
        raise ValueError(f"tree {tree.problem_id!r}: keep must be a [{n}] mask that contains the root")
    x = np.full(n, np.nan)
    y = np.where(keep, -tree.depth.astype(np.float64), np.nan)
    kids = [[c for c in tree.children[v] if keep[c]] for v in range(n)]
    slot = 0
    # iterative post-order: a node is placed after all its children
    stack: list[tuple[int, bool]] = [(ROOT, False)]
    while stack:
        node, done = stack.pop()
        if done:
            if kids[node]:
                x[node] = (x[kids[node][0]] + x[kids[node][-1]]) / 2.0
            else:
                x[node] = slot
                slot += 1
            continue
        stack.append((node, True))
        for c in reversed(kids[node]):
            stack.append((c, False))
    missing = np.flatnonzero(keep & np.isnan(x))
    if missing.size:
        raise ValueError(f"tree {tree.problem_id!r}: kept node {int(missing[0])} has a hidden parent")
    return x, y


def select_nodes(
    tree: Tree, *, min_visits: int = 0, max_nodes: int | None = None, always: Iterable[int] = ()
) -> np.ndarray:
    """A ``[num_nodes]`` bool mask of the nodes to draw, closed under taking parents.

    The root, `always` and their ancestors are kept first (even past `max_nodes`);
    then, best first by visits (ties: lower id), nodes whose parent is kept and
    whose visits are at least `min_visits`, until `max_nodes` are kept. Since a
    node has at least the visits of any child, this keeps the most visited subtrees.
    """
    n = tree.num_nodes
    if max_nodes is not None and max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
    parent, visits = tree.parent, tree.visits
    keep = np.zeros(n, bool)
    for node in [ROOT, *always]:
        if not 0 <= node < n:
            raise ValueError(f"tree {tree.problem_id!r}: node {node} out of range 0..{n - 1}")
        while node != NO_PARENT and not keep[node]:
            keep[node] = True
            node = int(parent[node])
    budget = n if max_nodes is None else max_nodes
    count = int(keep.sum())
    heap = [(-int(visits[c]), c) for v in np.flatnonzero(keep) for c in tree.children[v] if not keep[c]]
    heapq.heapify(heap)
    while heap and count < budget:
        neg, node = heapq.heappop(heap)
        if keep[node] or -neg < min_visits:
            continue
        keep[node] = True
        count += 1
        for c in tree.children[node]:
            heapq.heappush(heap, (-int(visits[c]), c))
    return keep


def hidden_below(tree: Tree, keep: np.ndarray) -> np.ndarray:
    """``[num_nodes]``: how many descendants of each node are not in `keep` (children have larger ids)."""
    n = tree.num_nodes
    out = np.zeros(n, np.int64)
    for node in range(n - 1, 0, -1):
        out[int(tree.parent[node])] += out[node] + (0 if keep[node] else 1)
    return out


# -- what to draw --------------------------------------------------------------------------------
@dataclasses.dataclass
class TreeView:
    """Everything both renderers draw, in drawing order ``nodes`` (kept node ids, ascending).

    Arrays are aligned with ``nodes``: ``x``, ``y`` (layout), ``size`` (marker
    diameter in points), ``value`` (Q, used by ``color="q"``), ``fill`` (hex
    colours for ``color="verdict"``), ``outline`` / ``outline_width`` (pair
    marks), ``hidden`` (hidden descendants), ``hover`` (HTML hover text).
    """

    tree: Tree
    color: str
    nodes: np.ndarray
    x: np.ndarray
    y: np.ndarray
    size: np.ndarray
    value: np.ndarray
    fill: list[str]
    category: list[str]
    outline: list[str]
    outline_width: np.ndarray
    hidden: np.ndarray
    hover: list[str]
    best_path: list[int]
    selected: int
    pair_links: list[dict]
    hidden_total: int
    index: dict[int, int]

    @property
    def num_leaves(self) -> int:
        return int(np.nanmax(self.x)) + 1 if len(self.x) else 0

    def title(self) -> str:
        t = self.tree
        algo = t.meta.get("search", {}).get("algo", "")
        shown = f"{len(self.nodes)} of {t.num_nodes} nodes"
        if self.hidden_total:
            shown += f" ({self.hidden_total} hidden)"
        prompt = t.prompt.strip().splitlines()[0] if t.prompt.strip() else ""
        parts = [t.problem_id, algo, prompt, f"answer {t.answer}" if t.answer else "", shown]
        if self.pair_links:
            parts.append(f"{len(self.pair_links)} pair{'' if len(self.pair_links) == 1 else 's'}")
        return " · ".join(p for p in parts if p)


def _wrap(text: str, width: int = 80) -> str:
    lines = []
    for raw in text.split("\n"):
        lines.extend(textwrap.wrap(raw, width, replace_whitespace=False, drop_whitespace=False) or [""])
    return "<br>".join(html.escape(line) for line in lines)


def _verdict_name(v: int) -> str:
    return {CORRECT: "correct", WRONG: "wrong", UNKNOWN: "not judged"}.get(int(v), str(int(v)))


def hover_text(tree: Tree, node: int, *, hidden: int = 0, marks: Sequence[str] = ()) -> str:
    """HTML hover text of one node: its numbers, then its full step text (escaped, wrapped)."""
    v = int(tree.visits[node])
    head = f"<b>node {node}</b> · depth {int(tree.depth[node])}"
    if node != ROOT:
        head += f" · parent {int(tree.parent[node])}"
    lines = [
        head,
        f"visits {v} · Q {tree.q(node):+.3f} · V {tree.value[node]:+.3f} · reward {tree.reward[node]:+.3f}",
        f"prior (Σ log p) {tree.prior[node]:.3f} · tokens {len(tree.token_ids[node])}",
        f"verdict {_verdict_name(tree.verdict[node])} · finish {tree.finish_reason[node] or '-'}"
        + (" · terminal" if tree.terminal[node] else ""),
    ]
    if hidden:
        lines.append(f"<i>{hidden} descendants hidden</i>")
    lines.extend(f"<i>{html.escape(m)}</i>" for m in marks)
    body = _wrap(tree.prompt) if node == ROOT else _wrap(tree.text[node])
    lines.append(("prompt:<br>" if node == ROOT else "step:<br>") + body)
    return "<br>".join(lines)


def _tree_pairs(tree: Tree, pairs: Iterable[dict]) -> list[dict]:
    out = []
    for i, p in enumerate(pairs):
        if p.get("problem_id", tree.problem_id) != tree.problem_id:
            continue
        ids = p.get("node_ids")
        if not (isinstance(ids, (list, tuple)) and len(ids) == 3 and all(isinstance(k, int) for k in ids)):
            raise ValueError(f"pair {i} of {tree.problem_id!r}: field 'node_ids' must be [parent, chosen, rejected]")
        if not all(0 <= k < tree.num_nodes for k in ids):
            raise ValueError(f"pair {i} of {tree.problem_id!r}: node_ids {ids} out of range 0..{tree.num_nodes - 1}")
        out.append(p)
    return out


def tree_view(
    tree: Tree,
    *,
    color: str = "q",
    pairs: Iterable[dict] = (),
    min_visits: int = 0,
    max_nodes: int | None = DEFAULT_MAX_NODES,
) -> TreeView:
    """Compute layout, filtering, sizes, colours, marks and hover text (see the module docstring).

    `pairs`: pair records; those of other problems are ignored, so all pairs of a
    run can be passed.
    """
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {', '.join(COLOR_MODES)}, got {color!r}")
    mine = _tree_pairs(tree, pairs)
    best = tree.best_path()
    sel = tree.meta.get("search", {}).get("selected", -1)
    selected = int(sel) if isinstance(sel, int) and 0 < sel < tree.num_nodes else -1
    always = [*best, *([selected] if selected > 0 else []), *(k for p in mine for k in p["node_ids"])]
    keep = select_nodes(tree, min_visits=min_visits, max_nodes=max_nodes, always=always)
    x_all, y_all = tidy_layout(tree, keep)
    nodes = np.flatnonzero(keep)
    hid = hidden_below(tree, keep)

    visits = tree.visits[nodes].astype(np.float64)
    top = max(1.0, float(tree.visits.max()))
    size = 6.0 + 22.0 * np.sqrt(visits / top)  # area grows with visits

    category = _categories(tree, nodes)
    roles = _pair_roles(mine)
    outline, width = _pair_outlines(nodes, roles)
    hover = [hover_text(tree, int(n), hidden=int(hid[n]), marks=_marks(int(n), roles, selected)) for n in nodes]

    return TreeView(
        tree=tree,
        color=color,
        nodes=nodes,
        x=x_all[nodes],
        y=y_all[nodes],
        size=size,
        value=np.array([tree.q(int(n)) for n in nodes]),
        fill=[VERDICT_COLORS[c] for c in category],
        category=category,
        outline=outline,
        outline_width=width,
        hidden=hid[nodes],
        hover=hover,
        best_path=best,
        selected=selected,
        pair_links=mine,
        hidden_total=int(tree.num_nodes - len(nodes)),
        index={int(n): i for i, n in enumerate(nodes)},
    )


def _categories(tree: Tree, nodes: np.ndarray) -> list[str]:
    """Each node's fill category: a terminal's verdict, else what its judged terminals below say."""
    correct, total = terminal_stats(tree)
    return [
        _verdict_name(tree.verdict[n]) if tree.terminal[n]
        else "correct below" if correct[n] else "only wrong below" if total[n] else "open"
        for n in nodes
    ]


def _pair_roles(pairs: list[dict]) -> dict[int, list[tuple[str, dict]]]:
    """Node id -> its roles in the tree's pairs, ``("chosen" | "rejected", pair)``, in pair order."""
    roles: dict[int, list[tuple[str, dict]]] = {}
    for p in pairs:
        _, chosen, rejected = p["node_ids"]
        roles.setdefault(chosen, []).append(("chosen", p))
        roles.setdefault(rejected, []).append(("rejected", p))
    return roles


def _pair_outlines(nodes: np.ndarray, roles: dict[int, list]) -> tuple[list[str], np.ndarray]:
    """Outline colour and width per node: thick for a pair's chosen or rejected step (or both)."""
    colour = {frozenset({"chosen"}): CHOSEN, frozenset({"rejected"}): REJECTED, frozenset({"chosen", "rejected"}): BOTH}
    outline = [colour.get(frozenset(role for role, _ in roles.get(int(n), ())), OUTLINE) for n in nodes]
    return outline, np.array([0.6 if c == OUTLINE else 3.5 for c in outline], dtype=np.float64)


def _marks(n: int, roles: dict[int, list], selected: int) -> list[str]:
    """Hover lines naming what node n is: the selected answer, a step of a pair."""
    marks = ["selected answer of the search"] if n == selected else []
    marks += [f"{role} in a {p.get('kind', '')} pair (depth {p.get('depth', '?')})" for role, p in roles.get(n, ())]
    return marks


def _edges(view: TreeView, nodes: Iterable[int]) -> tuple[list, list]:
    """Polyline coordinates (None-separated) of the edges into `nodes` from their parents."""
    xs, ys = [], []
    t, ix = view.tree, view.index
    for n in nodes:
        if n == ROOT:
            continue
        a, b = ix[int(t.parent[n])], ix[int(n)]
        xs += [view.x[a], view.x[b], None]
        ys += [view.y[a], view.y[b], None]
    return xs, ys


def _arc(view: TreeView, a: int, b: int, steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """A dashed pair link from node a to node b: a parabola dipping below both (siblings share a depth)."""
    ia, ib = view.index[a], view.index[b]
    s = np.linspace(0.0, 1.0, steps)
    x = view.x[ia] + (view.x[ib] - view.x[ia]) * s
    y = view.y[ia] + (view.y[ib] - view.y[ia]) * s - 0.45 * 4 * s * (1 - s)
    return x, y


def _q_range(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    if -1.0 <= lo and hi <= 1.0 and (lo < 0 < hi or hi - lo > 1.0):
        return -1.0, 1.0  # outcome rewards: keep ±1 fixed so trees are comparable
    if hi - lo < 1e-9:
        return lo - 0.5, hi + 0.5
    return lo, hi


# -- plotly ---------------------------------------------------------------------------------------
def plot_tree(
    tree: Tree | TreeView,
    *,
    color: str = "q",
    pairs: Iterable[dict] = (),
    min_visits: int = 0,
    max_nodes: int | None = DEFAULT_MAX_NODES,
    title: str | None = None,
):
    """An interactive `plotly.graph_objects.Figure` of the tree (or of a ready `TreeView`).

    The trace named ``"nodes"`` holds exactly one point per drawn node, in
    ``view.nodes`` order; its ``customdata`` is the node id.
    """
    import plotly.graph_objects as go

    view = tree if isinstance(tree, TreeView) else tree_view(
        tree, color=color, pairs=pairs, min_visits=min_visits, max_nodes=max_nodes
    )
    t = view.tree
    fig = go.Figure()
    _plotly_links(fig, view)
    _plotly_nodes(fig, view)
    _plotly_legend(fig, view)
    depth = int(t.depth[view.nodes].max()) if len(view.nodes) else 0
    fig.update_layout(
        title=dict(text=html.escape(title if title is not None else view.title()), font=dict(size=13)),
        height=int(min(1600, 170 + 95 * (depth + 1))),
        plot_bgcolor="white",
        hovermode="closest",
        hoverlabel=dict(align="left", font=dict(family="monospace", size=11)),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
        margin=dict(l=30, r=30, t=80, b=30),
        xaxis=dict(visible=False),
        yaxis=dict(title="depth", tickvals=[-d for d in range(depth + 1)], ticktext=[str(d) for d in range(depth + 1)],
                   range=[-depth - 0.8, 0.6], zeroline=False, gridcolor="#f0f0f0"),
    )
    return fig


def _plotly_links(fig, view: TreeView) -> None:
    """The tree's edges, the best path over them, and a dashed arc per pair (its label on hover)."""
    import plotly.graph_objects as go

    ex, ey = _edges(view, view.nodes)
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color=EDGE, width=1), hoverinfo="skip", name="edges", showlegend=False))
    bx, by = _edges(view, view.best_path)
    fig.add_trace(go.Scatter(x=bx, y=by, mode="lines", line=dict(color=BEST_PATH, width=5), hoverinfo="skip", name="best path"))
    for k, p in enumerate(view.pair_links):
        _, c, r = p["node_ids"]
        ax, ay = _arc(view, c, r)
        label = (f"{p.get('kind', 'pair')} pair at depth {p.get('depth', '?')}: chosen {c} "
                 f"({p.get('chosen_value', float('nan')):+.3f}) vs rejected {r} ({p.get('rejected_value', float('nan')):+.3f})")
        fig.add_trace(go.Scatter(
            x=ax, y=ay, mode="lines", line=dict(color=PAIR_LINK, width=1.5, dash="dash"),
            hovertext=[label] * len(ax), hoverinfo="text", name="pair link", legendgroup="pairs", showlegend=k == 0,
        ))


def _plotly_nodes(fig, view: TreeView) -> None:
    """The node trace (one point per drawn node, its node id as customdata), the selected answer's
    star and the count of hidden descendants under a node."""
    import plotly.graph_objects as go

    marker: dict[str, Any] = dict(size=view.size, line=dict(color=view.outline, width=view.outline_width), opacity=1.0)
    if view.color == "q":
        lo, hi = _q_range(view.value)
        marker.update(color=view.value, colorscale=Q_SCALE, cmin=lo, cmax=hi, colorbar=dict(title="Q", thickness=12, len=0.6))
    else:
        marker.update(color=view.fill)
    fig.add_trace(go.Scatter(
        x=view.x, y=view.y, mode="markers", marker=marker, name=NODE_TRACE, customdata=view.nodes.tolist(),
        hovertext=view.hover, hoverinfo="text", showlegend=False,
    ))
    if view.selected > 0:
        i = view.index[view.selected]
        fig.add_trace(go.Scatter(
            x=[view.x[i]], y=[view.y[i] + 0.32], mode="markers", name="selected answer",
            marker=dict(symbol="star", size=14, color="#222222"), hoverinfo="skip",
        ))
    h = np.flatnonzero(view.hidden)
    if h.size:
        fig.add_trace(go.Scatter(
            x=view.x[h], y=view.y[h] - 0.3, mode="text", text=[f"+{int(k)}" for k in view.hidden[h]],
            textfont=dict(size=10, color="#555555"), hoverinfo="skip", name="hidden descendants", showlegend=False,
        ))


def _plotly_legend(fig, view: TreeView) -> None:
    """Legend entries for the marks: empty traces, so the legend shows their style."""
    import plotly.graph_objects as go

    if view.pair_links:
        for name, col in (("chosen (pair)", CHOSEN), ("rejected (pair)", REJECTED)):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name,
                                     marker=dict(size=11, color="white", line=dict(color=col, width=3))))
    if view.color == "verdict":
        for name in dict.fromkeys(view.category):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, marker=dict(size=11, color=VERDICT_COLORS[name])))


# -- matplotlib -----------------------------------------------------------------------------------
def _figsize(view: TreeView) -> tuple[float, float]:
    """Inches: wide enough for ~0.28 in per leaf slot, tall enough for ~0.85 in per depth level."""
    depth = int(view.tree.depth[view.nodes].max()) if len(view.nodes) else 0
    return min(60.0, max(7.0, 0.28 * view.num_leaves + 2)), min(30.0, max(3.0, 0.85 * (depth + 1) + 1.6))


def draw_tree(
    tree: Tree | TreeView,
    ax=None,
    *,
    color: str = "q",
    pairs: Iterable[dict] = (),
    min_visits: int = 0,
    max_nodes: int | None = DEFAULT_MAX_NODES,
    title: str | None = None,
):
    """The same view drawn with matplotlib on `ax` (a new figure sized to the tree if None); returns the Axes."""
    view = tree if isinstance(tree, TreeView) else tree_view(
        tree, color=color, pairs=pairs, min_visits=min_visits, max_nodes=max_nodes
    )
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=_figsize(view), dpi=100)
    _mpl_edges(ax, view)
    _mpl_nodes(ax, view)
    handles = _mpl_legend(view)
    ax.legend(handles=handles, loc="lower left", fontsize=7, frameon=False, ncol=min(4, len(handles)))
    ax.set_title(title if title is not None else view.title(), fontsize=9)
    depth = int(view.tree.depth[view.nodes].max()) if len(view.nodes) else 0
    ax.set_yticks([-d for d in range(depth + 1)], [str(d) for d in range(depth + 1)])
    ax.set_ylabel("depth")
    ax.set_xticks([])
    ax.set_xlim(-1, max(1, view.num_leaves))
    ax.set_ylim(-depth - 1.2, 0.7)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    return ax


def _mpl_edges(ax, view: TreeView) -> None:
    """draw_tree's lines: every edge, the best path over them, and a dashed arc per exported pair."""
    from matplotlib.collections import LineCollection

    def segments(nodes):
        xs, ys = _edges(view, nodes)
        return [[(xs[i], ys[i]), (xs[i + 1], ys[i + 1])] for i in range(0, len(xs), 3)]

    ax.add_collection(LineCollection(segments(view.nodes), colors=EDGE, linewidths=0.8, zorder=1))
    ax.add_collection(LineCollection(segments(view.best_path), colors=BEST_PATH, linewidths=3.5, zorder=2))
    for p in view.pair_links:
        px, py = _arc(view, p["node_ids"][1], p["node_ids"][2])
        ax.plot(px, py, linestyle="--", color=PAIR_LINK, linewidth=1.2, zorder=2)


def _mpl_nodes(ax, view: TreeView) -> None:
    """draw_tree's marks: nodes filled by Q (with a colour bar) or by verdict, a star over the selected
    answer, and "+n" under a node whose n descendants are hidden."""
    area = (view.size * 0.75) ** 2  # plotly size is a diameter in px; scatter takes an area in pt²
    if view.color == "q":
        lo, hi = _q_range(view.value)
        sc = ax.scatter(view.x, view.y, s=area, c=view.value, cmap=Q_SCALE, vmin=lo, vmax=hi,
                        edgecolors=view.outline, linewidths=view.outline_width * 0.75, zorder=3)
        ax.figure.colorbar(sc, ax=ax, label="Q", fraction=0.03, pad=0.01)
    else:
        ax.scatter(view.x, view.y, s=area, c=view.fill, edgecolors=view.outline,
                   linewidths=view.outline_width * 0.75, zorder=3)
    if view.selected > 0:
        i = view.index[view.selected]
        ax.scatter([view.x[i]], [view.y[i] + 0.32], marker="*", s=90, c="#222222", zorder=4)
    for i in np.flatnonzero(view.hidden):
        ax.annotate(f"+{int(view.hidden[i])}", (view.x[i], view.y[i] - 0.3), ha="center", va="top", fontsize=7, color="#555555")


def _mpl_legend(view: TreeView) -> list:
    """draw_tree's legend handles: the best path, and the marks this view shows."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=BEST_PATH, linewidth=3.5, label="best path")]
    if view.selected > 0:
        handles.append(Line2D([], [], marker="*", linestyle="", color="#222222", label="selected answer"))
    if view.pair_links:
        handles += [
            Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor=CHOSEN, markeredgewidth=2.5, label="chosen (pair)"),
            Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor=REJECTED, markeredgewidth=2.5, label="rejected (pair)"),
            Line2D([], [], color=PAIR_LINK, linestyle="--", label="pair link"),
        ]
    if view.color == "verdict":
        handles += [Line2D([], [], marker="o", linestyle="", color=VERDICT_COLORS[c], label=c) for c in dict.fromkeys(view.category)]
    return handles


# -- files ----------------------------------------------------------------------------------------
def figure_html(fig, *, full_html: bool = True, include_plotlyjs: bool = True, div_id: str | None = None) -> str:
    """HTML of a plotly figure; ``include_plotlyjs=True`` inlines plotly.js (no CDN: works offline)."""
    return fig.to_html(
        full_html=full_html,
        include_plotlyjs=include_plotlyjs,
        include_mathjax=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "svg"}},
    )


def save_tree(tree: Tree | TreeView, path: str | Path, **kw) -> Path:
    """Write the tree view to `path`: ``.html`` (plotly, standalone) or ``.png`` / ``.svg`` / ``.pdf`` (matplotlib).

    Keywords are those of `tree_view` (color, pairs, min_visits, max_nodes) and `title`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".html", ".htm"):
        atomic_write_text(path, figure_html(plot_tree(tree, **kw)))  # ~4.5 MB: plotly.js inlined
        return path
    if suffix in (".png", ".svg", ".pdf"):
        # a bare Figure, not pyplot: no display or GUI backend needed, and a notebook's backend is untouched
        from matplotlib.figure import Figure

        title = kw.pop("title", None)
        view = tree if isinstance(tree, TreeView) else tree_view(tree, **kw)
        fig = Figure(figsize=_figsize(view), dpi=100)
        draw_tree(view, fig.add_subplot(), title=title)
        save_figure(fig, path)
        return path
    raise ValueError(f"{path}: unknown image type {suffix!r}; expected .html, .png, .svg or .pdf")


__all__ = [
    "COLOR_MODES",
    "TreeView",
    "draw_tree",
    "figure_html",
    "hidden_below",
    "hover_text",
    "plot_tree",
    "save_tree",
    "select_nodes",
    "tidy_layout",
    "tree_view",
]
