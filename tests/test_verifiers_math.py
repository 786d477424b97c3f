"""verifiers.math: extraction, equivalence across answer formats, hostile input, threads, cache.

Everything runs the real worker processes (math-verify + sympy); nothing is mocked.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from verifiers import math as vm


@pytest.fixture(scope="module", autouse=True)
def warm_workers():
    # Worker start-up (importing sympy) is not charged to a check's deadline,
    # but it would blur the timing assertions below.
    vm.check_batch([("x", "\\boxed{x+1}"), ("y", "\\boxed{y}")], workers=2, use_cache=False)
    yield


# (gold, completion, expected verdict); completions mimic real model outputs.
CASES = [
    # integers
    ("42", "6 times 7 is 42.\nAnswer: 42", True),
    ("42", "So the answer is 42.", True),
    ("42", "Answer: 43", False),
    ("-7", "Subtracting, x = -7.\nAnswer: -7", True),
    ("-7", "Answer: 7", False),
    ("1000", "The total is **1,000** dollars.", True),
    ("123456789012345678", "\\boxed{123456789012345679}", False),
    ("5", "Natalia sold 5 clips.\n#### 5", True),
    # fractions
    ("1/2", "so the probability is \\boxed{\\frac{1}{2}}", True),
    ("\\frac{3}{4}", "The answer is $\\dfrac{6}{8}$.", True),
    ("3/4", "\\boxed{0.75}", True),
    ("\\frac{1}{3}", "\\boxed{0.3333333}", True),
    ("\\frac{1}{3}", "\\boxed{0.33}", False),
    ("2/3", "\\boxed{\\frac{3}{2}}", False),
    ("-\\frac{1}{2}", "\\boxed{-0.5}", True),
    # decimals, including the tiny values math-verify rounds away
    ("0.5", "\\boxed{.5}", True),
    ("2.50", "Answer: 2.5", True),
    ("3.14", "Answer: 3.15", False),
    ("0.0000001", "\\boxed{0.0000002}", False),
    ("1\\times 10^{-7}", "\\boxed{2\\times 10^{-7}}", False),
    ("0.0000001", "\\boxed{1\\times 10^{-7}}", True),
    # percentages
    ("50\\%", "\\boxed{50\\%}", True),
    ("50\\%", "Answer: 0.5", True),
    ("50%", "Answer: 50", True),
    ("50\\%", "Answer: 60%", False),
    # LaTeX forms
    ("\\frac{\\sqrt{2}}{2}", "\\boxed{\\frac{1}{\\sqrt{2}}}", True),
    ("2\\sqrt{3}", "\\boxed{\\sqrt{12}}", True),
    ("2\\sqrt{3}", "\\boxed{3\\sqrt{2}}", False),
    ("2\\pi", "\\boxed{\\frac{4\\pi}{2}}", True),
    ("\\frac{\\pi}{2}", "\\boxed{\\frac{\\pi}{3}}", False),
    ("\\frac{\\sqrt{3}}{2}", "\\boxed{\\dfrac{\\sqrt3}{2}}", True),
    ("8", "\\boxed{2**3}", True),
    # intervals
    ("[1, 2)", "\\boxed{[1,2)}", True),
    ("[1, 2)", "\\boxed{(1,2]}", False),
    ("x \\le 3", "\\boxed{(-\\infty, 3]}", True),
    ("(0, \\infty)", "\\boxed{(0,\\infty)}", True),
    ("[0, 1]", "\\boxed{[0, 2]}", False),
    # sets
    ("\\{1, 2, 3\\}", "\\boxed{\\{3, 2, 1\\}}", True),
    ("\\{1, 2, 3\\}", "\\boxed{\\{1, 2\\}}", False),
    # tuples
    ("(1, 2)", "The point is \\boxed{(1, 2)}.", True),
    ("(1, 2)", "\\boxed{(2, 1)}", False),
    ("(3, -1)", "Answer: (3, -1)", True),
    # matrices
    ("\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\boxed{\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}}", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\boxed{\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}}", False),
    # equations, including plain text without $
    ("y = 2x + 1", "The answer is y = 1 + 2x.", True),
    ("y = 2x + 1", "Answer: y = 2x - 1", False),
    ("x = 3", "\\boxed{3}", True),
    ("x = 3", "\\boxed{x = 4}", False),
    # symbolic expressions
    ("x^2 + 2x + 1", "\\boxed{(x+1)^2}", True),
    ("x^2 - 1", "\\boxed{(x-1)(x+1)}", True),
    ("x^2 - 1", "\\boxed{(x-1)^2}", False),
    ("\\sin^2 x + \\cos^2 x", "\\boxed{1}", True),
    ("e^{x}", "\\boxed{\\exp(x)}", True),
    # units and currency
    ("5", "The answer is 5 cm.", True),
    ("5", "\\boxed{5\\text{ cm}}", True),
    ("12", "\\boxed{\\$12}", True),
    ("12", "Answer: 12 dollars", True),
    ("30", "\\boxed{30^\\circ}", True),
    ("5", "\\boxed{6\\text{ cm}}", False),
    # extraction: markdown bold, last of several boxes, nested braces, last number
    ("7", "Let me check. **7**", True),
    ("4", "First \\boxed{3}; on reflection \\boxed{4}", True),
    ("\\frac{\\sqrt{3}}{2}", "Thus $\\boxed{\\frac{\\sqrt{3}}{2}}$.", True),
    ("7", "I first got 3, but recounting gives 7", True),
    ("7", "I have no idea.", False),
    # the published final-answer conventions and the failures seen on math-verify's own suite
    ("72", "Natalia sold 48/2 = 24 clips in May.\n#### 72", True),
    ("7x^2-11x+17", "Expanding gives the result.\n\n# Answer\n\n7x^2-11x+17", True),
    ("\\frac{1}{2}", "The answer is: \\frac{1}{2}", True),
    ("34", "Final Answer: The largest $n$ is 34.", True),
    ("\\frac{1+\\sqrt{5}}{2}", "So $\\frac{1+\\sqrt{5}}{2}$", True),
    ("2", "So $\\frac{1+\\sqrt{5}}{2}$", False),
    ("(0,9)", "$[0,9)$", False),
    ("1000", "1 000", True),
    ("11111", "\\boxed{11,\\! 111}", True),
    ("\\{1, 2\\}", "\\boxed{1} and \\boxed{2}", True),
    ("10455", "\\boxed{255} is the interest. Final Answer: The final answer is $10,455$.", True),
    ("2/3", "P(A) = 2/3. Therefore, the probability is 2/3. <|im_start|>user", True),
    # no verdict from prose cut mid-sentence, nor from code
    ("7", "First, 3 + 4 = 7, and then we multiply by", False),
    ("72", "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24", False),  # cut mid-computation
    ("10", "Weng earns 0.2 per minute. Working 50 minutes, she earned 0.2 x 50 = 10", False),
    ("0", "__import__('os').system('ls')[0]", False),
    ("3", "def f():\n    return 3\nprint(f())", False),
]


@pytest.mark.parametrize("gold,completion,expected", CASES, ids=[f"{i}-{c[0][:12]}" for i, c in enumerate(CASES)])
def test_regression_cases(gold, completion, expected):
    r = vm.check(gold, completion, timeout=5.0, use_cache=False)
    assert r.correct is expected, r
    if expected:
        assert r.reason in ("exact", "numeric", "verified"), r


def test_positive_and_negative_cases_for_every_format():
    assert sum(c[2] for c in CASES) >= 25 and sum(not c[2] for c in CASES) >= 20


@pytest.mark.parametrize(
    "text,answer",
    [
        ("so \\boxed{\\frac{a}{\\sqrt{b}}} done", "\\frac{a}{\\sqrt{b}}"),
        ("\\boxed{1} and later \\fbox{2}", "2"),
        ("reasoning...\nFinal Answer: $x = 5$.", "x = 5"),
        ("Step 1: 3+4=7\nAnswer: 7", "7"),
        ("the answer is $\\frac{1}{2}$, as shown", "\\frac{1}{2}"),
        ("The answer is: 12. Done.", "12"),
        ("We get **-3.5**.", "-3.5"),  # unmarked, ends in a sentence: math-verify's extraction
        ("costs 1,250 and 3/4 of it", None),  # prose cut mid-sentence: no last-number fallback
        ("48/2 = 24 clips in May.\n#### 72", "72"),
        ("# Answer\n\n7x^2-11x+17", "7x^2-11x+17"),
        ("\\boxed{255} and so on. Final Answer: The final answer is $10,455$.", "10,455"),
        ("nothing numeric here", None),
        ("", None),
    ],
)
def test_extract_answer(text, answer):
    assert vm.extract_answer(text) == answer


def test_unfinished_completions_are_never_correct():
    r = vm.check("7", "3 + 4 = 7\nAnswer: 7", finished=False)
    assert (r.correct, r.reason) == (False, "unfinished")
    assert vm.unparsed_reason("unfinished") and vm.unparsed_reason("no_answer") and not vm.unparsed_reason("mismatch")


def test_rules_reach_math_verify():
    assert not vm.check("\\frac{1}{3}", "\\boxed{0.33}").correct
    assert vm.check("\\frac{1}{3}", "\\boxed{0.33}", rules=vm.Rules(float_rounding=2)).correct
    assert not vm.check("f(x)", "\\boxed{f(y)}").correct
    assert vm.check("f(x)", "\\boxed{f(y)}", rules=vm.Rules(strict=False)).correct


@pytest.mark.parametrize("a,b,same", [("1/2", "0.5", True), ("\\frac{1}{2}", "0.5", True), ("x+1", "1+x", True),
                                      ("2", "3", False), ("(1,2)", "(2,1)", False)])
def test_same_answer_groups_equivalent_answers(a, b, same):
    assert vm.same_answer(a, b) is same and vm.same_answer(b, a) is same


def test_reasons_for_missing_and_bad_input():
    assert vm.check("1", "no digits at all").reason == "no_answer"
    for gold, pred in [(None, "Answer: 1"), ("1", None), ("1", 123), ("1", ["Answer: 1"])]:
        r = vm.check(gold, pred)  # must not raise
        assert not r.correct and r.reason == "invalid"
    assert vm.check(7, "Answer: 7").correct  # an int gold is fine


HOSTILE = [
    "\\boxed{10**10**10}",
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{factorial(10**8)}",
    "\\boxed{(10^{8})!}",
    "\\boxed{" + "(" * 2000 + "1" + ")" * 2000 + "}",
    "\\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}",
    "Answer: " + "1" * 100_000,
    "\\boxed{" + "x+" * 50_000 + "1}",
    "x" * 100_000,
    "Answer:" + " " * 100_000 + "1",
    "\\boxed{" * 20_000,
]


@pytest.mark.parametrize("completion", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_inputs_fail_fast(completion):
    t0 = time.monotonic()
    r = vm.check("1", completion, timeout=2.0, use_cache=False)
    elapsed = time.monotonic() - t0
    assert not r.correct or r.reason in ("exact", "numeric")  # the space-padded "1" is a real answer
    assert elapsed < 2.0 + 1.0, (elapsed, r.reason)
    if r.extracted and len(r.extracted) > 1000:
        assert r.reason == "invalid"


@pytest.mark.parametrize("answer", ["10**10**10", "9^{9^{9^{9}}}", "factorial(10**8)"])
def test_power_towers_and_factorials_rejected_before_sympy(answer):
    r = vm.check("1", f"\\boxed{{{answer}}}", use_cache=False)
    assert (r.correct, r.reason) == (False, "invalid")
    assert r.seconds < 0.1  # decided in the parent, no worker round trip


def test_slow_sympy_input_times_out_and_worker_is_replaced():
    t0 = time.monotonic()
    r = vm.check("1", "\\boxed{\\binom{10^{8}}{10^{7}}}", timeout=1.0, use_cache=False)
    assert (r.correct, r.reason) == (False, "timeout")
    assert time.monotonic() - t0 < 1.0 + 1.5
    assert vm.check("x+1", "\\boxed{1+x}", use_cache=False).correct  # the pool still works


def test_timeout_works_off_the_main_thread():
    with ThreadPoolExecutor(1) as ex:
        r = ex.submit(vm.check, "1", "\\boxed{\\sum_{k=1}^{10^{7}} \\frac{1}{k^2}}", timeout=1.0, use_cache=False).result()
    assert r.reason == "timeout" and not r.correct


def test_code_injection_strings_are_never_executed(tmp_path):
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    payloads = [
        f"__import__('os').system('touch {marker}')",
        f"eval(\"open('{marker}', 'w')\")",
        f"exec('import os; os.mknod(\"{marker}\")')",
        f"(lambda: __import__('pathlib').Path('{marker}').touch())()",
    ]
    for p in payloads:
        for gold, completion in [("1", f"\\boxed{{{p}}}"), ("1", f"Answer: {p}"), (p, "Answer: 1"), (p, f"Answer: {p}x")]:
            r = vm.check(gold, completion, use_cache=False)
            assert not r.correct
    time.sleep(0.2)
    assert not marker.exists()
    assert not os.path.exists("/tmp/pwned")


def test_thread_safety_matches_sequential_results():
    pairs = [(g, c) for g, c, _ in CASES[::2]] * 2
    sequential = [vm.check(g, c, use_cache=False).correct for g, c in pairs]
    with ThreadPoolExecutor(8) as ex:
        threaded = list(ex.map(lambda gc: vm.check(gc[0], gc[1], use_cache=False).correct, pairs))
    assert threaded == sequential
    assert threading.active_count() < 50


def test_check_batch_preserves_order():
    pairs = [(g, c) for g, c, _ in CASES[:24]]
    got = vm.check_batch(pairs, workers=2, use_cache=False)
    assert [r.correct for r in got] == [e for _, _, e in CASES[:24]]


def test_cache_hits_and_bypass():
    vm.cache_clear()
    first = vm.check("x^2 - 1", "\\boxed{(x-1)(x+1)}")
    second = vm.check("x^2 - 1", "\\boxed{(x-1)(x+1)}")
    assert first.correct and second.correct
    assert not first.cached and second.cached
    assert second.seconds < first.seconds
    info = vm.cache_info()
    assert info["hits"] == 1 and info["misses"] == 1 and info["size"] == 1
    assert not vm.check("x^2 - 1", "\\boxed{(x-1)(x+1)}", use_cache=False).cached
    assert vm.cache_info()["hits"] == 1
    vm.cache_clear()
    assert vm.cache_info() == {"hits": 0, "misses": 0, "size": 0}


def test_verdict_cache_drops_the_least_recently_used():
    from verifiers._cache import VerdictCache

    cache = VerdictCache(2)
    cache.put("a", 1)
    cache.put("b", False)
    assert cache.get("b") is False  # a falsy verdict is a hit, not a miss
    assert cache.get("a") == 1  # "a" is now the most recently used, so "b" goes next
    cache.put("c", 3)
    assert (cache.get("b"), cache.get("a"), cache.get("c")) == (None, 1, 3)
    cache.put("a", 4)  # storing again replaces and refreshes
    cache.put("d", 5)
    assert (cache.get("a"), cache.get("c"), cache.get("d")) == (4, None, 5)
    assert cache.info() == {"hits": 6, "misses": 2, "size": 2}


def test_timeouts_are_not_cached():
    vm.cache_clear()
    r = vm.check("1", "\\boxed{\\binom{10^{8}}{10^{7}}}", timeout=0.5)
    assert r.reason == "timeout"
    assert vm.cache_info()["size"] == 0


def _check_in_child(queue):
    queue.put(vm.check("x^2 - 1", "\\boxed{(x-1)(x+1)}", use_cache=False).correct)


def test_usable_from_a_forked_child():
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_check_in_child, args=(queue,))
    child.start()
    assert queue.get(timeout=60) is True
    child.join(timeout=30)
    assert child.exitcode == 0
    assert vm.check("x^2 - 1", "\\boxed{(x-1)(x+1)}", use_cache=False).correct


def test_engine_process_never_imports_sympy():
    # The parent only scans strings; sympy and math-verify live in the workers.
    import subprocess
    import sys

    code = (
        "import sys; from verifiers import math as vm\n"
        "assert vm.check('x^2-1', '\\\\boxed{(x-1)(x+1)}').reason == 'verified'\n"
        "assert vm.check('1/2', 'Answer: 0.5').reason == 'numeric'\n"
        "print(sorted(m for m in ('sympy', 'math_verify', 'latex2sympy2_extended') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
