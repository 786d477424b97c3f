"""Confirm a loop comparison on held-out problems that chose no setting.

bench/loop.py evaluates every round on one held-out sample (the config's ``eval.seed``). Once that
sample has picked among training settings, a small lead on it is weak evidence. This script
evaluates the final policy of finished runs on another sample of the same kind (same split, size
and operation count, drawn with ``--eval-seed``; the loop's own disjointness check against every
round's training problems still applies), greedy and sampled exactly as the loop's evaluation, and
compares methods there. Results land next to the loop's own, in
``round_K/eval_seed{S}.json``, so a rerun only evaluates what is missing.

    python bench/confirm.py --eval-seed 1 --jobs 2 \\
        --run both=runs/loop_both --run rft=runs/loop_samples:rft [--run LABEL=OUT[:METHOD] ...]

``OUT`` is a bench/loop.py output directory (``OUT/seedS/METHOD``, METHOD default ``step_dpo``);
every seed directory in it counts. Without ``--run``: the three methods of bench/loop.py's default
output, ``runs/bench_loop``. The starting policy (round 0 of the first run's first seed: every seed
starts from it) is evaluated too, as ``base``.

Last line: JSON with eval_seed, problems, and per label the mean greedy accuracy on the fresh
sample (``acc``), its standard deviation over seeds, ``held_out_acc`` (the same policies on the
loop's own sample), per-seed values, and pass@1 / maj@k / pass@k means.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


LOOP_OUT = ROOT / "runs" / "bench_loop"  # bench/loop.py's default output (`make bench` runs it first)
DEFAULT_RUNS = [f"step_dpo={LOOP_OUT}", f"rft={LOOP_OUT}:rft", f"traj_dpo={LOOP_OUT}:traj_dpo"]


def parse_runs(items: list[str], ap: argparse.ArgumentParser) -> dict[str, list[tuple[int, Path]]]:
    """``["both=runs/loop_both", "rft=runs/loop_samples:rft"]`` -> {label: [(seed, run dir), ...]}."""
    runs: dict[str, list[tuple[int, Path]]] = {}
    for item in items:
        label, sep, spec = item.partition("=")
        if not sep or not label or not spec:
            ap.error(f"--run {item!r}: expected LABEL=OUT[:METHOD]")
        if label in runs or label == "base":
            ap.error(f"--run {item!r}: label {label!r} is {'reserved' if label == 'base' else 'given twice'}")
        out, _, method = spec.partition(":")
        method = method or "step_dpo"
        dirs = []
        for d in Path(out).glob("seed*"):
            seed = d.name.removeprefix("seed")
            if seed.isdigit() and (d / method / "config.json").is_file():
                dirs.append((int(seed), d / method))
        if not dirs:
            ap.error(f"--run {item!r}: no {out}/seedS/{method}/config.json")
        dirs.sort()
        runs[label] = dirs
    return runs


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", default=[], metavar="LABEL=OUT[:METHOD]",
                    help=f"a bench/loop.py output's runs of one method (default: {', '.join(DEFAULT_RUNS)})")
    ap.add_argument("--eval-seed", type=int, default=1, help="seed of the fresh held-out sample")
    ap.add_argument("--jobs", type=int, default=1, help="evaluations in parallel, one process each")
    args = ap.parse_args()
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    return args, parse_runs(args.run or DEFAULT_RUNS, ap)


def check_job(job: tuple):
    """(run, the round the job evaluates, the loop's own result for it); SystemExit naming the file
    when the run cannot be confirmed (checked for every job before any work)."""
    label, seed, run_dir, eval_seed = job
    from treesearch.loop import Run

    try:
        run = Run.reopen(run_dir, log=lambda msg: None)
    except ValueError as e:
        raise SystemExit(f"confirm.py: error: {e}") from None
    if eval_seed == run.cfg.eval.seed:
        raise SystemExit(f"confirm.py: error: {run_dir}/config.json: eval.seed is {eval_seed}, the loop's own "
                         "held-out sample; give another --eval-seed")
    k = 0 if label == "base" else run.cfg.rounds
    own = run.eval_path(k)
    if not own.is_file():
        raise SystemExit(f"confirm.py: error: {own}: missing; the run has not finished round {k} "
                         "(resume bench/loop.py first)")
    return run, k, own


def evaluate_final(job: tuple) -> tuple[str, int, dict, dict]:
    """(label, seed, fresh result, loop's own result) for one run's final policy (round 0: `base`)."""
    label, seed, _, eval_seed = job
    import torch

    torch.set_num_threads(int(os.environ.get("TREESEARCH_THREADS", "1")))
    from tasks import get_task

    run, k, own = check_job(job)
    if run.eval_path(k, eval_seed).is_file():  # done by an earlier invocation: no engine needed
        fresh = json.loads(run.eval_path(k, eval_seed).read_text())
    else:
        try:
            fresh = run.evaluate(k, run.serve(k), get_task(run.cfg.task), seed=eval_seed)
        finally:
            run.release(keep=False)
    return label, seed, fresh, json.loads(own.read_text())


def summarize(results: list[tuple[str, int, dict, dict]], eval_seed: int, problems: int) -> dict:
    def mean(xs):
        return round(statistics.fmean(xs), 4)

    def sd(xs):
        return round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0

    out: dict = {"eval_seed": eval_seed, "problems": problems, "methods": {}}
    for label in dict.fromkeys(r[0] for r in results):
        rows = sorted((s, f, o) for lab, s, f, o in results if lab == label)
        acc = [f["accuracy"] for _, f, _ in rows]
        entry = {"acc": mean(acc), "acc_sd": sd(acc), "held_out_acc": mean([o["accuracy"] for _, _, o in rows]),
                 "per_seed": {str(s): f["accuracy"] for s, f, _ in rows}}
        for key in rows[0][1]:
            if key.startswith(("pass@", "maj@")):
                entry[key] = mean([f[key] for _, f, _ in rows])
        out["methods"][label] = entry
    return out


def main() -> None:
    args, runs = parse_args()
    from loop import pool_map  # bench/loop.py's, this script's directory being on sys.path

    first = next(iter(runs.values()))
    jobs = [("base", *first[0], args.eval_seed)]  # one starting policy for every seed, so one evaluation
    jobs += [(label, s, d, args.eval_seed) for label, dirs in runs.items() for s, d in dirs]
    for job in jobs:
        check_job(job)
    t0 = time.time()
    results = []
    for r in pool_map(evaluate_final, jobs, args.jobs, f"evaluations (eval seed {args.eval_seed})"):
        results.append(r)
        print(f"{r[0]} seed {r[1]}: fresh {r[2]['accuracy']:.3f}, loop's own {r[3]['accuracy']:.3f}", flush=True)
    from treesearch.loop import Run

    out = summarize(results, args.eval_seed, Run.reopen(first[0][1], log=lambda m: None).cfg.eval.problems)
    for label, e in out["methods"].items():
        print(f"{label:>12}: fresh {e['acc']:.3f} ± {e['acc_sd']:.3f}   loop's own sample {e['held_out_acc']:.3f}")
    out["minutes"] = round((time.time() - t0) / 60, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
