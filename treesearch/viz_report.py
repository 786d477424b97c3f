"""One self-contained HTML report of a run directory (`treesearch viz RUN_DIR`).

    from treesearch.viz_report import write_report
    write_report("runs/tiny", "runs/tiny/report.html", problem=None)

Reads what `treesearch.loop` writes (``round_k/{eval,search,pairs,train}.json``,
``round_k/trees.jsonl``, ``round_k/pairs.jsonl``), straight from the round
files, so a run still in progress can be reported too. A directory written by
`treesearch search` (``trees.jsonl`` and ``summary.json`` at the top) is
reported as a single round holding only trees. The page holds:

* held-out accuracy by round (greedy, pass@k, maj@k; search accuracy and
  coverage on the round's training problems);
* tokens spent per round (evaluation + search, model-computed tokens);
* preference pairs by depth and kind, one panel per round;
* the search trees of one problem (every round that searched it), drawn by
  `treesearch.viz.plot_tree` with that round's pairs marked; by default the first
  problem that has pairs, else the first problem searched;
* a table of every searched problem (nodes, correct, pairs), to pick ``--problem``.

plotly.js is inlined once in the page head; nothing is fetched from the network.
Each tree plot sits in a ``<div class="tree-view">`` whose ``data-nodes-drawn``
equals the points of its ``"nodes"`` trace (what the browser test checks).
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from treesearch.io import atomic_write_text, read_jsonl
from treesearch.tree import Tree

_ROUND = re.compile(r"^round_(\d+)$")


@dataclass
class RoundFiles:
    """What one round directory holds (missing files are None / empty)."""

    k: int
    path: Path
    eval: dict | None = None
    search: dict | None = None
    pairs_stats: dict | None = None
    train: dict | None = None
    pairs: list[dict] = field(default_factory=list)
    trees_path: Path | None = None
    _trees: list[Tree] | None = field(default=None, repr=False)

    def trees(self) -> list[Tree]:
        """The round's search trees (parsed once; a torn last line, from a run still writing, is skipped)."""
        if self._trees is None:
            path = self.trees_path
            self._trees = [] if path is None else [
                Tree.from_json(d, where=f"{path}:{i}") for i, d in enumerate(read_jsonl(path, allow_torn_tail=True), 1)
            ]
        return self._trees

    @property
    def tokens(self) -> dict[str, int]:
        """Model-computed tokens: held-out evaluation and search (as `Run.metrics` counts them)."""
        return {
            "eval": int((self.eval or {}).get("tokens", 0)),
            "search": int((self.search or {}).get("cost", {}).get("computed_tokens", 0)),
        }


def _json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: bad JSON ({e.msg})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return d


def read_run(run_dir: str | Path) -> list[RoundFiles]:
    """The rounds of a run directory in order; ValueError if it is not one."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such run directory")
    rounds = []
    for p in root.iterdir():
        m = _ROUND.match(p.name)
        if m and p.is_dir():
            rounds.append((int(m.group(1)), p))
    if not rounds:
        if (root / "trees.jsonl").is_file():  # a `treesearch search --out` directory
            return [RoundFiles(0, root, search=_json(root / "summary.json"), trees_path=root / "trees.jsonl")]
        raise ValueError(f"{root}: not a run directory (no round_*/ folders and no trees.jsonl)")
    out = []
    for k, p in sorted(rounds):
        r = RoundFiles(k, p, _json(p / "eval.json"), _json(p / "search.json"), _json(p / "pairs.json"), _json(p / "train.json"))
        if (p / "pairs.jsonl").is_file():
            r.pairs = [x for x in read_jsonl(p / "pairs.jsonl") if "node_ids" in x]  # rft solutions carry no node ids
        if (p / "trees.jsonl").is_file():
            r.trees_path = p / "trees.jsonl"
        out.append(r)
    return out


def choose_problem(rounds: list[RoundFiles], problem: str | None = None) -> str:
    """`problem` if some round searched it; by default the first problem with pairs, else the first searched."""
    searched = [t.problem_id for r in rounds for t in r.trees()]
    if not searched:
        where = rounds[0].path.parent if _ROUND.match(rounds[0].path.name) else rounds[0].path
        raise ValueError(f"{where}: no searched problems yet (no round has trees in trees.jsonl)")
    if problem is not None:
        if problem not in searched:
            shown = ", ".join(dict.fromkeys(searched[:8]))
            raise ValueError(f"problem {problem!r} is in no round's trees.jsonl; searched problems include {shown}")
        return problem
    for r in rounds:
        for p in r.pairs:
            if p.get("problem_id") in searched:
                return p["problem_id"]
    return searched[0]


# -- figures --------------------------------------------------------------------------------------
def accuracy_figure(rounds: list[RoundFiles]):
    """Held-out accuracy (greedy, pass@k, maj@k) and search accuracy / coverage, by round."""
    import plotly.graph_objects as go

    fig = go.Figure()
    ev = [r for r in rounds if r.eval]
    keys = ["accuracy"] + sorted({k for r in ev for k in r.eval if re.match(r"^(pass|maj)@\d+$", k) and k != "pass@1"})
    for key in keys:
        xs = [r.k for r in ev if key in r.eval]
        fig.add_trace(go.Scatter(x=xs, y=[r.eval[key] for r in ev if key in r.eval], mode="lines+markers",
                                 name="held-out greedy" if key == "accuracy" else f"held-out {key}"))
    se = [r for r in rounds if r.search and "accuracy" in r.search]
    for key, name in (("accuracy", "search accuracy (train problems)"), ("coverage", "search coverage (train problems)")):
        fig.add_trace(go.Scatter(x=[r.k for r in se], y=[r.search.get(key) for r in se], mode="lines+markers",
                                 line=dict(dash="dot"), name=name))
    fig.update_layout(title="Accuracy by round", xaxis=dict(title="round", dtick=1), yaxis=dict(title="accuracy", range=[0, 1.02]),
                      height=380, margin=dict(l=50, r=20, t=50, b=40), plot_bgcolor="white")
    return fig


def tokens_figure(rounds: list[RoundFiles]):
    """Model-computed tokens per round, stacked: held-out evaluation and search."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for part in ("eval", "search"):
        fig.add_trace(go.Bar(x=[r.k for r in rounds], y=[r.tokens[part] for r in rounds],
                             name="held-out evaluation" if part == "eval" else "search"))
    fig.update_layout(title="Tokens spent per round (prefill + decode + scored)", barmode="stack",
                      xaxis=dict(title="round", dtick=1), yaxis=dict(title="tokens"), height=340,
                      margin=dict(l=60, r=20, t=50, b=40), plot_bgcolor="white")
    return fig


def pairs_figure(rounds: list[RoundFiles]):
    """Pairs by prefix depth, stacked by kind, one panel per round that has pairs; None if no pairs."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    with_pairs = [r for r in rounds if r.pairs]
    if not with_pairs:
        return None
    kinds = list(dict.fromkeys(p.get("kind", "?") for r in with_pairs for p in r.pairs))
    fig = make_subplots(rows=1, cols=len(with_pairs), shared_yaxes=True,
                        subplot_titles=[f"round {r.k}: {len(r.pairs)} pairs" for r in with_pairs])
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
    for col, r in enumerate(with_pairs, 1):
        depths = sorted({int(p.get("depth", 0)) for p in r.pairs})
        for i, kind in enumerate(kinds):
            counts = [sum(1 for p in r.pairs if p.get("kind", "?") == kind and int(p.get("depth", 0)) == d) for d in depths]
            fig.add_trace(go.Bar(x=depths, y=counts, name=kind, legendgroup=kind, showlegend=col == 1,
                                 marker_color=palette[i % len(palette)]), row=1, col=col)
        fig.update_xaxes(title_text="prefix depth", dtick=1, row=1, col=col)
    fig.update_yaxes(title_text="pairs", row=1, col=1)
    fig.update_layout(title="Preference pairs by depth and kind", barmode="stack", height=340,
                      margin=dict(l=60, r=20, t=70, b=40), plot_bgcolor="white")
    return fig


# -- page -----------------------------------------------------------------------------------------
_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 24px auto; max-width: 1400px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } tr.chosen td { background: #fff6d5; }
pre { background: #f7f7f7; padding: 8px; white-space: pre-wrap; font-size: 12px; }
.note { color: #666; font-size: 13px; }
"""


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    return "\n".join(out) + "</table>"


def _fig_div(fig, div_id: str) -> str:
    from treesearch.viz import figure_html

    return figure_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id)


def build_report(run_dir: str | Path, *, problem: str | None = None, color: str = "q", max_nodes: int | None = 500) -> str:
    """The report page as one HTML string (plotly.js inlined once)."""
    from plotly.offline import get_plotlyjs

    root = Path(run_dir)
    rounds = read_run(root)
    pid = choose_problem(rounds, problem)
    parts = [f"<h1>treesearch run <code>{html.escape(str(root))}</code></h1>", *_run_note(root), *_run_figures(rounds)]
    parts.append(f"<h2>Search trees of <code>{html.escape(pid)}</code></h2>")
    parts.append("<p class='note'>marker area: visits · colour: " + ("Q = r + V" if color == "q" else "verifier verdict")
                 + " · gold: best path (by visits) · star: selected answer · blue / orange outline: chosen / rejected step of a pair"
                 + " · dashed arc: pair link · +k: hidden descendants. Hover a node for its numbers and full step text.</p>")
    index_rows, index_cls = [], []
    for r in rounds:
        if not r.trees_path:
            continue
        n_pairs: dict[str, int] = {}
        for p in r.pairs:
            n_pairs[p.get("problem_id", "")] = n_pairs.get(p.get("problem_id", ""), 0) + 1
        for tree in r.trees():
            s = tree.meta.get("search", {})
            index_rows.append([r.k, tree.problem_id, tree.num_nodes, int(tree.visits[0]), s.get("correct", ""), n_pairs.get(tree.problem_id, 0)])
            index_cls.append("chosen" if tree.problem_id == pid else "")
            if tree.problem_id == pid:
                parts += _tree_section(r, tree, color, max_nodes)
    parts.append("<h2>Searched problems</h2><p class='note'>pick one with <code>treesearch viz RUN_DIR --problem ID</code></p>")
    parts.append(_table(["round", "problem", "nodes", "root visits", "selected correct", "pairs"], index_rows, index_cls))

    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>treesearch run {html.escape(root.name)}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def _run_note(root: Path) -> list[str]:
    """One line of the run's settings from its config.json (nothing when it has none)."""
    cfg = _json(root / "config.json") or {}
    if not cfg:
        return []
    s = cfg.get("search", {})
    return ["<p class='note'>" + html.escape(
        f"policy {cfg.get('policy')} · task {cfg.get('task')} · method {cfg.get('method')} · rounds {cfg.get('rounds')} · "
        f"{cfg.get('train_problems')} training problems per round · MCTS {s.get('simulations')} simulations, width {s.get('width')}"
    ) + "</p>"]


def _run_figures(rounds: list) -> list[str]:
    """Accuracy and tokens by round (when the run was evaluated), and pairs by depth and kind."""
    parts = []
    if any(r.eval for r in rounds):
        parts += ["<h2>Accuracy by round</h2>", _fig_div(accuracy_figure(rounds), "accuracy")]
        parts += ["<h2>Tokens spent per round</h2>", _fig_div(tokens_figure(rounds), "tokens")]
    parts.append("<h2>Pairs by depth and kind</h2>")
    pf = pairs_figure(rounds)
    parts.append(_fig_div(pf, "pairs") if pf is not None else "<p class='note'>no preference pairs in this run</p>")
    return parts


def _tree_section(r, tree, color: str, max_nodes: int | None) -> list[str]:
    """Round r's tree of the chosen problem: the plot, the question and answer, the best path, the root's children."""
    from treesearch.viz import plot_tree, tree_view

    view = tree_view(tree, color=color, pairs=r.pairs, max_nodes=max_nodes)
    div = f"tree-round-{r.k}"
    s = tree.meta.get("search", {})
    summ = tree.summary()
    return [
        f"<h3>round {r.k}</h3>",
        f'<div class="tree-view" data-problem-id="{html.escape(tree.problem_id)}" data-round="{r.k}" data-plot-id="{div}" '
        f'data-nodes-drawn="{len(view.nodes)}" data-tree-nodes="{tree.num_nodes}" data-hidden="{view.hidden_total}">'
        + _fig_div(plot_tree(view), div) + "</div>",
        f"<p>question: <code>{html.escape(tree.prompt)}</code> · reference answer <code>{html.escape(tree.answer)}</code>"
        f" · selected answer correct: {html.escape(str(s.get('correct', '?')))}</p>",
        "<pre>best path (by visits):\n" + html.escape(summ["best_text"]) + "</pre>",
        _table(["root child", "visits", "Q", "step"],
               [[c["node"], c["visits"], f"{c['q']:+.3f}", c["text"]] for c in summ["root_children"]]),
    ]


def write_report(run_dir: str | Path, out: str | Path | None = None, **kw) -> Path:
    """Write `build_report` to `out` (default ``RUN_DIR/report.html``) atomically; returns the path."""
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write_text(path, build_report(run_dir, **kw))
    return path
