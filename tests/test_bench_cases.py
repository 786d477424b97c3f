"""bench/mathverify_cases.py reads math-verify's test cases from source text, without importing or running it."""
import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "mathverify_cases", Path(__file__).resolve().parent.parent / "bench" / "mathverify_cases.py"
)
_module = importlib.util.module_from_spec(_spec)
sys.modules["mathverify_cases"] = _module  # dataclasses look their module up there
_spec.loader.exec_module(_module)
cases_from_source = _module.cases_from_source

SOURCE = '''
import pytest, math
from math_verify import parse

@pytest.mark.parametrize(
    "gold,pred,expected",
    [
        ("-5", "-5", 1),
        ("1000", "1 000", 1),
        (f"{math.sqrt(4):.3f}", "$2$", 1),
        (open("/etc/passwd").read(), "x", 0),
    ],
)
def test_numbers(gold, pred, expected):
    assert compare_strings(gold, pred, match_types=["expr"]) == expected


@pytest.mark.parametrize("gold,pred,strict,expected", [("$f(x)$", "$f(y)$", False, True)])
def test_strict(gold, pred, strict, expected):
    assert compare_strings(gold, pred, match_types=["latex", "expr"], strict=strict) == expected


def test_inline():
    assert compare_strings("$\\\\frac{1}{3}$", "0.3333$", match_types=["latex", "expr"], precision=4) == 1


@pytest.mark.parametrize("gold,pred,result", [("1", "1", 1)])
def test_defaults(gold, pred, result):
    assert int(verify(parse(gold), parse(pred))) == result
'''


def test_cases_come_with_their_settings_and_nothing_runs():
    cases, skipped = cases_from_source(SOURCE, "tests/t.py")
    assert skipped == 1  # the open() row is not a math-only expression: never evaluated
    got = [(c.gold, c.pred, c.expected) for c in cases]
    assert got == [("-5", "-5", True), ("1000", "1 000", True), ("2.000", "$2$", True),
                   ("$f(x)$", "$f(y)$", True), ("$\\frac{1}{3}$", "0.3333$", True), ("1", "1", True)]
    by_gold = {c.gold: c.settings for c in cases}
    assert by_gold["-5"]["match_types"] == ["expr"] and by_gold["-5"]["precision"] == 6
    assert by_gold["$f(x)$"]["strict"] is False
    assert by_gold["$\\frac{1}{3}$"]["precision"] == 4
    assert by_gold["1"]["helper"] == "parse_verify"
    assert cases[0].where == "tests/t.py:8"
