"""`treesearch viz RUN_DIR`: one self-contained HTML report of a run (accuracy, tokens, pairs, search trees).

    treesearch viz runs/tiny                         # -> runs/tiny/report.html
    treesearch viz runs/tiny --problem arith-train-4-000004 --color verdict --out tiny.html

RUN_DIR is a `treesearch iterate` directory (round_k/ folders) or a `treesearch
search` directory (trees.jsonl). The page inlines plotly.js and opens offline.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "viz",
        help="HTML report of a run: accuracy and tokens by round, pairs by depth, the search trees of one problem",
        description="Write one self-contained HTML report of a run directory (plotly.js inlined, no network needed).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="directory written by `treesearch iterate` or `treesearch search`")
    p.add_argument("--problem", default=None, metavar="ID", help="problem whose trees are drawn (default: the first with pairs)")
    p.add_argument("--out", default=None, metavar="FILE.html", help="output file (default: RUN_DIR/report.html)")
    p.add_argument("--color", default="q", choices=["q", "verdict"], help="node colour: Q = r + V, or the verifier verdict")
    p.add_argument("--max-nodes", type=int, default=500, help="nodes drawn per tree at most (most visited subtrees and the best path kept)")
    p.set_defaults(func=run)


def run(args) -> int:
    from treesearch.viz_report import write_report

    if args.out is not None and not str(args.out).lower().endswith((".html", ".htm")):
        raise ValueError(f"--out {args.out}: the report is HTML; give a FILE.html")
    if args.max_nodes < 1:
        raise ValueError(f"--max-nodes must be >= 1, got {args.max_nodes}")
    path = write_report(args.run_dir, args.out, problem=args.problem, color=args.color, max_nodes=args.max_nodes)
    print(f"wrote {path}")
    return 0
