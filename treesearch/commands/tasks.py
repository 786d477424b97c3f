"""`treesearch tasks`: list the built-in task suites (name, source, verifier, step delimiter, description)."""
from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("tasks", help="list the task suites (and how to use your own GSM8K / MATH / MBPP files)")
    p.add_argument("--json", action="store_true", help="one JSON object per suite instead of a table")
    p.set_defaults(func=run)


def suite_rows() -> list[dict[str, str]]:
    """One row per built-in suite: name, source, verifier, step_delimiter (escaped), description."""
    from tasks import TASKS
    from tasks.suite import builtin_spec

    rows = []
    for name in sorted(TASKS):
        spec = builtin_spec(name)
        rows.append(
            {
                "name": spec.name,
                "source": spec.source.describe(),
                "verifier": spec.verifier,
                "step_delimiter": spec.step_delimiter.encode("unicode_escape").decode(),
                "splits": ",".join(spec.splits),
                "description": spec.description,
            }
        )
    return rows


def render_table(rows: list[dict[str, str]]) -> str:
    """Aligned plain-text table of `suite_rows()`, then how to name your own files."""
    from tasks import FORMATS

    cols = ("name", "source", "verifier", "step_delimiter", "splits", "description")
    heads = {"step_delimiter": "step", "description": "description"}
    widths = {c: max(len(heads.get(c, c)), *(len(r[c]) for r in rows)) for c in cols[:-1]}
    line = lambda r: "  ".join(r[c].ljust(widths[c]) for c in cols[:-1]) + "  " + r["description"]  # noqa: E731
    out = [line({c: heads.get(c, c) for c in cols})]
    out += [line(r) for r in rows]
    out.append("")
    formats = ", ".join(FORMATS)
    out.append(f"Your own files: --task FORMAT:PATH with FORMAT one of {formats} (JSONL in the published format),")
    out.append("or --task PATH.yaml for a suite file of your own (see tasks/suite.py).")
    return "\n".join(out) + "\n"


def run(args) -> int:
    rows = suite_rows()
    if args.json:
        print("\n".join(json.dumps(r) for r in rows))
    else:
        print(render_table(rows), end="")
    return 0
