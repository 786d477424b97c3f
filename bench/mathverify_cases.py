"""(gold, prediction, expected, settings) cases read from math-verify's own test files.

The cases are not committed: `sdist_cases(path)` reads them out of the
math-verify sdist (``pip download --no-binary :all: --no-deps math-verify==0.9.0``)
at benchmark time. The test modules are parsed with `ast`, never imported or
executed: a case is one row of a ``@pytest.mark.parametrize`` whose argument
names include ``gold`` and ``pred`` (or ``gold, pred, result``), with its
expected verdict from ``expected`` / ``result``, and its settings taken from the
keywords of the test body's ``compare_strings(...)`` call (a keyword naming a
parametrized argument takes that row's value), plus the literal
``assert compare_strings(...) == 1`` statements outside a parametrize. Rows are
read with ``ast.literal_eval``; the one kind of non-literal row the suite has,
an f-string of ``math.sqrt(17)``, is evaluated with only the ``math`` module in
scope (`_math_row`); anything else is skipped and counted.

    settings: {"match_types": ["latex", "expr"], "precision": 6, "strict": True,
               "allow_set_relation_comp": False, "helper": "compare_strings" | "parse_verify"}
"""
from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

DEFAULTS = {"match_types": ["latex", "expr"], "precision": 6, "strict": True, "allow_set_relation_comp": False}
SDIST = "math-verify==0.9.0"


@dataclasses.dataclass(frozen=True)
class Case:
    gold: str
    pred: str
    expected: bool
    settings: dict
    where: str  # "tests/test_all.py:62"


def download_sdist(dest: str | Path) -> Path:
    """The math-verify sdist, fetched with pip into `dest` (once)."""
    dest = Path(dest)
    found = sorted(dest.glob("math_verify-*.tar.gz"))
    if found:
        return found[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-q",
                    "-d", str(dest), SDIST], check=True)
    return sorted(dest.glob("math_verify-*.tar.gz"))[0]


def _parametrize(dec: ast.expr) -> tuple[list[str], ast.expr] | None:
    if not (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == "parametrize"):
        return None
    if len(dec.args) < 2 or not isinstance(dec.args[0], ast.Constant):
        return None
    names = [n.strip() for n in str(dec.args[0].value).split(",")]
    return names, dec.args[1]


def _body_settings(fn: ast.FunctionDef) -> tuple[str, dict] | None:
    """("compare_strings", {kw: ast node}) or ("parse_verify", {}) from the test body."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "compare_strings":
                return "compare_strings", {k.arg: k.value for k in node.keywords if k.arg}
            if node.func.id == "verify" and node.args and isinstance(node.args[0], ast.Call):
                inner = node.args[0].func
                if isinstance(inner, ast.Name) and inner.id == "parse":
                    return "parse_verify", {}
    return None


def _math_row(node: ast.expr):
    """A row whose only names are ``math.<function>`` calls (f"{math.sqrt(17):.15f}"), evaluated with
    nothing but the math module in scope; ValueError for anything else."""
    import math

    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id != "math":
            raise ValueError("not a math-only row")
        if isinstance(sub, ast.Attribute) and not (isinstance(sub.value, ast.Name) and sub.value.id == "math"):
            raise ValueError("not a math-only row")
    return eval(compile(ast.Expression(node), "<row>", "eval"), {"__builtins__": {}, "math": math})  # noqa: S307


def _inline_cases(fn: ast.FunctionDef, filename: str) -> list[Case]:
    """``assert compare_strings(gold, pred, kw=...) == expected`` statements with literal arguments."""
    out = []
    for node in ast.walk(fn):
        if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
            continue
        call, comparators = node.test.left, node.test.comparators
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "compare_strings"):
            continue
        try:
            gold, pred = (ast.literal_eval(a) for a in call.args[:2])
            kws = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
            expected = ast.literal_eval(comparators[0])
        except (ValueError, IndexError):
            continue
        out.append(Case(gold, pred, bool(expected), dict(DEFAULTS, helper="compare_strings", **kws),
                        f"{filename}:{node.lineno}"))
    return out


def cases_from_source(source: str, filename: str) -> tuple[list[Case], int]:
    """(cases, rows skipped because not literal) of one test module's text."""
    out: list[Case] = []
    skipped = 0
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef):
            continue
        if not fn.decorator_list and fn.name.startswith("test_"):
            out.extend(_inline_cases(fn, filename))
        body = _body_settings(fn)
        if body is None:
            continue
        helper, kws = body
        for dec in fn.decorator_list:
            spec = _parametrize(dec)
            if spec is None or not isinstance(spec[1], (ast.List, ast.Tuple)):
                continue
            names, rows = spec
            if "gold" not in names or "pred" not in names:
                continue
            verdict = "expected" if "expected" in names else "result" if "result" in names else None
            if verdict is None:
                continue
            for row in rows.elts:
                try:
                    values = ast.literal_eval(row)
                except ValueError:
                    try:
                        values = _math_row(row)
                    except (ValueError, TypeError, NameError, SyntaxError):
                        skipped += 1
                        continue
                if not isinstance(values, tuple) or len(values) != len(names):
                    skipped += 1
                    continue
                case = dict(zip(names, values))
                settings = dict(DEFAULTS, helper=helper)
                if helper == "parse_verify":
                    settings["boxed_priority"] = 50
                for key, node in kws.items():
                    if isinstance(node, ast.Name) and node.id in case:
                        settings[key] = case[node.id]
                    else:
                        try:
                            settings[key] = ast.literal_eval(node)
                        except ValueError:
                            pass
                if not isinstance(case["gold"], str) or not isinstance(case["pred"], str):
                    skipped += 1
                    continue
                out.append(Case(case["gold"], case["pred"], bool(case[verdict]), settings, f"{filename}:{row.lineno}"))
    return out, skipped


def sdist_cases(sdist: str | Path) -> tuple[list[Case], int]:
    """Every case of the sdist's tests/*.py, in file and line order; and the count of skipped rows."""
    cases: list[Case] = []
    skipped = 0
    with tarfile.open(sdist) as tar:
        members = sorted((m for m in tar.getmembers() if "/tests/test_" in m.name and m.name.endswith(".py")),
                         key=lambda m: m.name)
        for m in members:
            text = tar.extractfile(m).read().decode("utf-8")
            name = "tests/" + m.name.rsplit("/tests/", 1)[1]
            found, sk = cases_from_source(text, name)
            cases.extend(found)
            skipped += sk
    return cases, skipped


def mathverify_verdict(case: Case) -> bool:
    """math-verify's own verdict on `case` with the test's settings (in this process: trusted test data only)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    s = case.settings
    if s["helper"] == "parse_verify":
        return bool(verify(parse(case.gold, parsing_timeout=None), parse(case.pred, parsing_timeout=None),
                           timeout_seconds=None))
    targets = []
    for t in s["match_types"]:
        targets.append(LatexExtractionConfig(boxed_match_priority=0) if t == "latex" else ExprExtractionConfig())
    g = parse(case.gold, targets, parsing_timeout=None)
    p = parse(case.pred, targets, parsing_timeout=None)
    return bool(verify(g, p, float_rounding=s["precision"], strict=s["strict"],
                       allow_set_relation_comp=s["allow_set_relation_comp"], timeout_seconds=None))


if __name__ == "__main__":
    import logging

    logging.disable(logging.CRITICAL)
    path = download_sdist(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    cases, skipped = sdist_cases(path)
    agree = sum(mathverify_verdict(c) == c.expected for c in cases)
    print(f"{len(cases)} cases ({skipped} skipped); math-verify with the tests' settings agrees on {agree}")
