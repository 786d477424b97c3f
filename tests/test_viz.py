"""Tree drawing: layout invariants, filtering of 1,000+ node trees, colour modes, pair marks, HTML/PNG/SVG export.

Trees come from the real searches (MCTS, tree-segment rollouts) over the scripted
bandit policy of `treesearch.search.testing`, so they have real visits, values,
verdicts and pairs without a model.
"""
import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from treesearch import viz
from treesearch.pairs import PairConfig, extract_pairs
from treesearch.search import MCTSConfig, SegmentConfig, mcts, segment_rollouts
from treesearch.search.testing import ScriptedBackend, bandit_policy, bandit_score
from treesearch.tree import ROOT, Tree

ARMS = {ch: 1.0 for ch in "abcdefghijkl"}


def _root(backend, pid="p0", prompt="pick <a> & go"):
    return Tree(problem_id=pid, prompt=prompt, prompt_ids=backend.encode_prompt(prompt))


@pytest.fixture(scope="module")
def backend():
    return ScriptedBackend(bandit_policy(ARMS, depth=6))


@pytest.fixture(scope="module")
def big_mcts(backend):
    """An MCTS tree of 1,000+ nodes (12 arms, depth 6, width 4, 300 simulations)."""
    tree = _root(backend, "big")
    mcts(backend, [tree], MCTSConfig(simulations=300, width=4, max_depth=6), score=bandit_score("a"))
    assert tree.num_nodes >= 1000
    return tree


@pytest.fixture(scope="module")
def small_mcts():
    b = ScriptedBackend(bandit_policy({"a": 0.4, "b": 0.3, "c": 0.3}, depth=3))
    tree = _root(b, "small")
    mcts(b, [tree], MCTSConfig(simulations=24, width=3, max_depth=3), score=bandit_score("a"))
    return tree, b


@pytest.fixture(scope="module")
def seg_tree(backend):
    tree = _root(backend, "seg")
    segment_rollouts(backend, [tree], SegmentConfig(segment_len=2, max_width=32, init_copies=4, branch=2))
    return tree


def _check_layout(tree: Tree, keep: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    assert np.isnan(x[~keep]).all() and np.isnan(y[~keep]).all()
    kept = np.flatnonzero(keep)
    assert not np.isnan(x[kept]).any() and not np.isnan(y[kept]).any(), "every kept node is placed"
    for n in kept[1:]:
        p = int(tree.parent[n])
        assert y[n] == y[p] - 1, f"child {n} sits one level below its parent {p}"
    kids = {n: [c for c in tree.children[n] if keep[c]] for n in kept}
    leaves = [n for n in kept if not kids[n]]
    assert sorted(x[leaves]) == list(range(len(leaves))), "leaves take distinct consecutive slots"
    for n in kept:
        if kids[n]:
            assert x[n] == (x[kids[n][0]] + x[kids[n][-1]]) / 2, f"parent {n} centred over its children"
            assert list(x[kids[n]]) == sorted(x[kids[n]]), "children keep expansion order left to right"
    for d in np.unique(y[kept]):
        row = np.sort(x[kept][y[kept] == d])
        assert (np.diff(row) >= 1.0).all(), f"nodes at depth {-d} overlap"


@pytest.mark.parametrize("name", ["big_mcts", "seg_tree", "small"])
def test_layout_places_every_node_without_overlap(name, request):
    tree = request.getfixturevalue("small_mcts")[0] if name == "small" else request.getfixturevalue(name)
    keep = np.ones(tree.num_nodes, bool)
    x, y = viz.tidy_layout(tree)
    _check_layout(tree, keep, x, y)


def test_layout_of_a_filtered_tree_and_its_errors(big_mcts):
    keep = viz.select_nodes(big_mcts, max_nodes=150)
    x, y = viz.tidy_layout(big_mcts, keep)
    _check_layout(big_mcts, keep, x, y)
    orphan = keep.copy()
    child = next(c for c in range(1, big_mcts.num_nodes) if keep[c] and big_mcts.children[c] and keep[big_mcts.children[c][0]])
    orphan[child] = False  # its kept child now has a hidden parent
    with pytest.raises(ValueError, match="hidden parent"):
        viz.tidy_layout(big_mcts, orphan)
    with pytest.raises(ValueError, match="contains the root"):
        viz.tidy_layout(big_mcts, np.zeros(big_mcts.num_nodes, bool))


def test_filtering_1000_nodes_keeps_best_path_most_visited_and_counts_hidden(big_mcts):
    t = big_mcts
    view = viz.tree_view(t, max_nodes=200)
    kept = set(view.nodes.tolist())
    assert len(kept) == 200 and view.hidden_total == t.num_nodes - 200
    assert set(t.best_path()) <= kept and view.selected in kept
    assert int(view.hidden[view.index[ROOT]]) == view.hidden_total, "the root counts every hidden node below it"
    # per kept node: hidden descendants = nodes in its subtree that are not kept
    sub = np.ones(t.num_nodes, np.int64)
    for n in range(t.num_nodes - 1, 0, -1):
        sub[int(t.parent[n])] += sub[n]
    for i, n in enumerate(view.nodes):
        kept_below = sum(1 for m in kept if m != n and n in t.path(m))
        assert view.hidden[i] == sub[n] - 1 - kept_below
    # most visited first: no hidden node has more visits than a node kept for its visits
    mandatory = set()
    for n in [*t.best_path(), view.selected]:
        mandatory.update(t.path(n))
    free = [n for n in kept if n not in mandatory]
    hidden = [n for n in range(t.num_nodes) if n not in kept]
    assert max(t.visits[hidden]) <= min(t.visits[free])
    fig = viz.plot_tree(view)
    assert f"200 of {t.num_nodes} nodes ({t.num_nodes - 200} hidden)" in fig.layout.title.text
    labels = next(tr for tr in fig.data if tr.name == "hidden descendants")
    assert sum(int(s[1:]) for s in labels.text) >= view.hidden_total  # nested counts overlap; each hidden node counted at least once


def test_min_visits_and_a_budget_below_the_best_path(big_mcts):
    t = big_mcts
    view = viz.tree_view(t, min_visits=5, max_nodes=None)
    best = set(t.best_path()) | set(t.path(view.selected))
    assert all(t.visits[n] >= 5 or n in best for n in view.nodes)
    assert len(view.nodes) == int(sum(t.visits >= 5)) + len(best - set(np.flatnonzero(t.visits >= 5).tolist()))
    tiny = viz.tree_view(t, max_nodes=2)  # the best path is kept even past the budget
    assert set(t.best_path()) <= set(tiny.nodes.tolist()) and len(tiny.nodes) > 2
    with pytest.raises(ValueError, match="max_nodes"):
        viz.select_nodes(t, max_nodes=0)


def _nodes_trace(fig):
    (trace,) = [tr for tr in fig.data if tr.name == viz.NODE_TRACE]
    return trace


def test_colour_modes_sizes_and_hover(small_mcts):
    tree, _ = small_mcts
    q = _nodes_trace(viz.plot_tree(tree, color="q"))
    assert list(q.customdata) == list(range(tree.num_nodes))
    np.testing.assert_allclose(q.marker.color, [tree.q(n) for n in range(tree.num_nodes)])
    assert q.marker.colorscale is not None and q.marker.cmin == -1 and q.marker.cmax == 1
    sizes = np.asarray(q.marker.size)
    order = np.argsort(tree.visits, kind="stable")
    assert (np.diff(sizes[order]) >= 0).all() and sizes[ROOT] == sizes.max(), "marker size grows with visits"

    v = _nodes_trace(viz.plot_tree(tree, color="verdict"))
    colours = list(v.marker.color)
    for n in range(tree.num_nodes):
        if tree.terminal[n]:
            want = {1: "correct", 0: "wrong", -1: "not judged"}[int(tree.verdict[n])]
            assert colours[n] == viz.VERDICT_COLORS[want]
    assert colours[ROOT] == viz.VERDICT_COLORS["correct below"]  # the search found the right answer
    with pytest.raises(ValueError, match="color must be one of"):
        viz.tree_view(tree, color="rainbow")

    leaf = next(n for n in range(tree.num_nodes) if tree.terminal[n])
    hover = q.hovertext[leaf]
    for part in (f"node {leaf}", f"depth {tree.depth[leaf]}", f"visits {tree.visits[leaf]}", f"Q {tree.q(leaf):+.3f}",
                 f"prior (Σ log p) {tree.prior[leaf]:.3f}", f"reward {tree.reward[leaf]:+.3f}", "finish eos", "terminal",
                 html_escape(tree.text[leaf])):
        assert part in hover, part
    assert "pick &lt;a&gt; &amp; go" in q.hovertext[ROOT], "the root shows the prompt, HTML-escaped"


def html_escape(s):
    import html

    return html.escape(s)


def test_pairs_are_marked_and_linked(small_mcts):
    tree, backend = small_mcts
    pairs = extract_pairs([tree], PairConfig(margin=0.1), decode=backend.decode)
    assert pairs, "the scripted search yields preference pairs"
    other = dict(pairs[0], problem_id="someone-else", node_ids=[0, 999, 998])  # ignored: another problem
    fig = viz.plot_tree(tree, pairs=[*pairs, other])
    trace = _nodes_trace(fig)
    chosen = {p["node_ids"][1] for p in pairs}
    rejected = {p["node_ids"][2] for p in pairs}
    for n in range(tree.num_nodes):
        colour, width = trace.marker.line.color[n], trace.marker.line.width[n]
        if n in chosen and n in rejected:
            assert colour == viz.BOTH
        elif n in chosen:
            assert colour == viz.CHOSEN and width > 2 and "chosen in a" in trace.hovertext[n]
        elif n in rejected:
            assert colour == viz.REJECTED and width > 2 and "rejected in a" in trace.hovertext[n]
        else:
            assert colour == viz.OUTLINE and width < 1
    links = [tr for tr in fig.data if tr.name == "pair link"]
    assert len(links) == len(pairs)
    for link, p in zip(links, pairs):
        _, c, r = p["node_ids"]
        view = viz.tree_view(tree)
        assert (link.x[0], link.x[-1]) == (view.x[c], view.x[r]) and min(link.y) < min(view.y[c], view.y[r])
    with pytest.raises(ValueError, match="node_ids"):
        viz.tree_view(tree, pairs=[{"problem_id": tree.problem_id, "node_ids": [0, 1]}])
    with pytest.raises(ValueError, match="out of range"):
        viz.tree_view(tree, pairs=[{"problem_id": tree.problem_id, "node_ids": [0, 1, 10**6]}])


def test_html_export_is_standalone(small_mcts, tmp_path):
    tree, _ = small_mcts
    path = viz.save_tree(tree, tmp_path / "tree.html", color="verdict")
    page = path.read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", page), "no external scripts: plotly.js is inlined"
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']https?:", page)
    assert page.count("Plotly.newPlot(") == 1 and len(page) > 1_000_000  # the plotly.js bundle is in the page
    assert f'"name":"{viz.NODE_TRACE}"' in page


def test_png_svg_pdf_export(big_mcts, seg_tree, small_mcts, tmp_path):
    from PIL import Image

    tree, backend = small_mcts
    pairs = extract_pairs([tree], PairConfig(margin=0.1), decode=backend.decode)
    png = viz.save_tree(tree, tmp_path / "t.png", pairs=pairs, color="verdict")
    img = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    assert img.shape[0] > 200 and img.std() > 10, "the PNG is not blank"
    for colour in (viz.CHOSEN, viz.REJECTED, viz.BEST_PATH):
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(img - rgb).sum(axis=2) < 30).sum() > 20, f"{colour} is drawn"
    svg = viz.save_tree(big_mcts, tmp_path / "big.svg", max_nodes=300)
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and len(list(root.iter("{http://www.w3.org/2000/svg}path"))) > 300
    assert b"%PDF" in viz.save_tree(seg_tree, tmp_path / "seg.pdf").read_bytes()[:8]
    with pytest.raises(ValueError, match="unknown image type"):
        viz.save_tree(tree, tmp_path / "t.gif")


def test_segment_trees_draw_their_trajectories(seg_tree):
    fig = viz.plot_tree(seg_tree, max_nodes=None)
    assert len(_nodes_trace(fig).x) == seg_tree.num_nodes
    view = viz.tree_view(seg_tree, max_nodes=None)
    assert view.selected in seg_tree.meta["trajectories"]
    assert next(tr for tr in fig.data if tr.name == "selected answer").x[0] == view.x[view.index[view.selected]]


def test_draw_tree_on_given_axes(small_mcts):
    from matplotlib.figure import Figure

    tree, _ = small_mcts
    fig = Figure()
    ax = viz.draw_tree(tree, fig.add_subplot(), title="custom")
    assert ax.get_title() == "custom" and len(ax.collections) >= 3  # edges, best path, nodes
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


def test_report_command_errors(tmp_path, small_mcts):
    import argparse
    import json

    from treesearch.commands import viz as cmd

    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())

    def run(*argv):
        args = parser.parse_args(["viz", *map(str, argv)])
        return args.func(args)

    with pytest.raises(FileNotFoundError, match="no such run directory"):
        run(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a run directory"):
        run(tmp_path)
    tree, _ = small_mcts
    (tmp_path / "trees.jsonl").write_text(json.dumps(tree.to_json()) + "\n")  # a `treesearch search` directory
    with pytest.raises(ValueError, match="FILE.html"):
        run(tmp_path, "--out", tmp_path / "r.png")
    with pytest.raises(ValueError, match="problem 'nope' is in no round's trees.jsonl; searched problems include small"):
        run(tmp_path, "--problem", "nope")
    assert run(tmp_path) == 0
    page = (tmp_path / "report.html").read_text()
    assert f'data-nodes-drawn="{tree.num_nodes}"' in page and "no preference pairs" in page
    (tmp_path / "trees.jsonl").write_text('{"format": "treesearch.tree/1"}\n')
    with pytest.raises(ValueError, match=r"trees.jsonl:1: missing field"):
        run(tmp_path)
