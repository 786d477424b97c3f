"""Acceptance benchmark of the self-improvement loop on the embedded default.

Three rounds of MCTS + Step-DPO against two baselines that consume the same
search budget each round (the same MCTS settings, so the same sampled tokens):
rejection-sampling fine-tuning on the policy's own verified-correct solutions
(`method: rft`) and trajectory-level DPO (`method: traj_dpo`). Every method
starts from the embedded policy; held-out greedy accuracy on 3-operation
problems is measured after every round. Repeated over seeds (problem draws,
sampling, training order).

Round 0 (evaluation and search with the starting policy) does not depend on the
method, so it runs once per seed and is copied into every method's run
directory; then each (seed, method) run continues on its own. ``--jobs N`` runs
that many of these in parallel processes (one torch thread each: the tiny policy
is latency-bound, and one process per core beats two threads per process).
Run directories are resumable, so an interrupted benchmark continues where it
stopped, and ``--set rounds=N`` extends finished runs by more rounds. Each run's
log (and, under ``--jobs``, its progress bars) is ``OUT/seedS/METHOD/log.txt``.

    python bench/loop.py --seeds 3 --jobs 2 [--config configs/bench_loop.yaml] [--out runs/bench_loop]
                         [--set train_problems=4096 --set search.width=4 ...]

Last line: JSON with base_acc, final_acc, gain_points, rft_acc, traj_dpo_acc
(means over seeds of held-out greedy accuracy), their standard deviations,
per-seed and per-round values, each method's cost (sampled search tokens over
all rounds, search and training minutes; means over seeds), and seeds.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = ("eval.json", "trees.jsonl", "search.json")  # round 0's method-independent outputs


def parse_sets(items: list[str], flag: str = "--set") -> dict:
    """``["search.width=2", "train_problems=4096"]`` -> nested overrides (values parsed as YAML)."""
    import yaml

    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{Path(sys.argv[0]).name}: error: {flag} {item!r}: expected KEY=VALUE")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def _open_run(config: str, seed: int, method: str, out: str, sets: dict):
    """A `Run` whose log lines go to its own log.txt (parallel runs would interleave on stdout)."""
    import torch

    torch.set_num_threads(int(os.environ.get("TREESEARCH_THREADS", "1")))
    from treesearch.config import merge
    from treesearch.loop import Run, load_loop_config

    cfg = load_loop_config(config, merge(sets, {"seed": seed, "method": method}))
    run_dir = Path(out) / f"seed{seed}" / method
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "log.txt"
    if mp.parent_process() is not None:  # a pool worker: its progress bars and prints go to the run's log
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def log(msg: str) -> None:
        with log_path.open("a") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {msg}\n")

    return Run(run_dir, cfg, log=log)


def explore_round0(job: tuple) -> tuple[int, float]:
    config, seed, method, out, sets = job
    ev, _ = _open_run(config, seed, method, out, sets).explore(0)
    return seed, ev["accuracy"]


def full_run(job: tuple) -> tuple[int, str, list[float], float]:
    config, seed, method, out, sets = job
    t0 = time.time()
    rows = _open_run(config, seed, method, out, sets).run()
    return seed, method, [r["eval"]["accuracy"] for r in rows], time.time() - t0


def share_round0(seed_dir: Path, source: str, methods: list[str]) -> None:
    """Copy round 0's evaluation and trees from `source`'s run into the other methods' runs
    (the search is deterministic per problem, so this is what they would compute)."""
    src = seed_dir / source / "round_0"
    for m in methods:
        dst = seed_dir / m / "round_0"
        if m == source or (dst / "search.json").is_file():
            continue
        dst.mkdir(parents=True, exist_ok=True)
        for name in SHARED:
            shutil.copy2(src / name, dst / name)


def pool_map(fn, jobs: list, n_jobs: int, desc: str):
    """fn over jobs in `n_jobs` spawned processes (in this process when 1), results as they finish."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, dynamic_ncols=True)
    if n_jobs <= 1:
        for j in jobs:
            yield fn(j)
            bar.update(1)
    else:
        with mp.get_context("spawn").Pool(min(n_jobs, len(jobs)), maxtasksperchild=1) as pool:
            for r in pool.imap_unordered(fn, jobs):
                yield r
                bar.update(1)
    bar.close()


def parse_args() -> tuple[argparse.Namespace, list[str], list[int], dict]:
    """The arguments, the methods and seeds to run, and the --set overrides, all checked before any work."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-list", default=None, help="comma-separated seeds to run (default: 0..seeds-1)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "bench_loop.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_loop"))
    ap.add_argument("--methods", default="step_dpo,rft,traj_dpo")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel, one process each (about one per core)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field, e.g. --set train_problems=4096 --set search.width=4")
    args = ap.parse_args()
    sets = parse_sets(args.set)
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    from treesearch.loop import METHODS

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"--methods: unknown method {bad[0]!r}; expected some of {', '.join(METHODS)}")
    seeds = [int(x) for x in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    return args, methods, seeds, sets


def headline(base: dict[int, float], curves: dict[str, dict[int, list[float]]], seeds: list[int], out: Path) -> dict:
    """The last line: Step-DPO's final accuracy and gain over the base policy, the baselines', their spreads
    over seeds, every seed's and round's accuracy, and each method's cost."""
    def finals(m: str) -> list[float]:
        return [curves[m][s][-1] for s in seeds] if m in curves else []

    def mean(xs):
        return round(statistics.fmean(xs), 4) if xs else None

    def sd(xs):
        return round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0

    base_list = [base[s] for s in seeds]
    step = finals("step_dpo")
    return {
        "base_acc": mean(base_list),
        "final_acc": mean(step),
        "gain_points": round(100 * (mean(step) - mean(base_list)), 2) if step else None,
        "rft_acc": mean(finals("rft")),
        "traj_dpo_acc": mean(finals("traj_dpo")),
        "final_acc_sd": sd(step),
        "rft_acc_sd": sd(finals("rft")),
        "traj_dpo_acc_sd": sd(finals("traj_dpo")),
        "per_seed": {"base": base_list, **{m: finals(m) for m in curves}},
        "per_round": {m: [curves[m][s] for s in seeds] for m in curves},
        "cost": {m: method_cost(out, seeds, m) for m in curves},
        "seeds": len(seeds),
    }


def main() -> None:
    args, methods, seeds, sets = parse_args()
    t0 = time.time()
    base: dict[int, float] = {}
    for seed, acc in pool_map(explore_round0, [(args.config, s, methods[0], args.out, sets) for s in seeds],
                               args.jobs, "round 0 (shared)"):
        base[seed] = acc
        print(f"seed {seed}: base policy {acc:.3f}", flush=True)
    for s in seeds:
        share_round0(Path(args.out) / f"seed{s}", methods[0], methods)

    curves: dict[str, dict[int, list[float]]] = {m: {} for m in methods}
    # method-major: every seed of the first method, then of the next; a benchmark stopped early has the
    # main comparison (step_dpo against rft) on all seeds first
    jobs = [(args.config, s, m, args.out, sets) for m in methods for s in seeds]
    for seed, method, accs, secs in pool_map(full_run, jobs, args.jobs, "runs"):
        curves[method][seed] = accs
        print(f"seed {seed} {method}: " + " -> ".join(f"{a:.3f}" for a in accs) + f"  ({secs / 60:.1f} min)",
              flush=True)
    out = headline(base, curves, seeds, Path(args.out))
    out["minutes"] = round((time.time() - t0) / 60, 1)  # this invocation's wall (less when it resumed)
    plot_methods(out["per_round"], Path(args.out) / "accuracy_by_round.png", base=out["base_acc"])
    print(f"plot: {Path(args.out) / 'accuracy_by_round.png'}", flush=True)
    print(json.dumps(out))


def method_cost(out: Path, seeds: list[int], method: str) -> dict:
    """What a method spent, mean over seeds, from its runs' metrics.jsonl: sampled (decoded) search
    tokens over all rounds (the budget the methods share), and search and training minutes.

    A round's search.json sums the cost share each tree carries, exact across kills and resumes.
    Rounds written before trees carried shares counted only their last invocation's batches; those
    are scaled up by problems / problems searched then (a batch takes `simulations` calls)."""
    tokens, search_s, train_s, resumed = [], [], [], 0
    for s in seeds:
        run = out / f"seed{s}" / method
        cfg = json.loads((run / "config.json").read_text())
        per_call = cfg["search_batch"] / cfg["search"]["simulations"]  # problems searched per backend call
        rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        total = 0.0
        for r in rows:
            if "search" not in r:
                continue
            c, n = r["search"]["cost"], r["search"]["n_problems"]
            counted = r["search"].get("cost_problems", min(n, c["calls"] * per_call))
            scale = n / counted if counted else 1.0
            resumed += scale > 1.0
            total += c.get("decode_tokens", 0) * scale
        tokens.append(total)
        search_s.append(sum(r["search"]["cost"].get("wall_s", 0.0) for r in rows if "search" in r))
        train_s.append(sum(r["train"].get("seconds", 0.0) for r in rows if "train" in r))
    return {
        "sampled_tokens": round(statistics.fmean(tokens)),
        "resumed_rounds": resumed,
        "search_minutes": round(statistics.fmean(search_s) / 60, 1),
        "train_minutes": round(statistics.fmean(train_s) / 60, 1),
    }


def plot_methods(per_round: dict[str, list[list[float]]], path: Path, *, base: float | None) -> None:
    """Held-out greedy accuracy by round for each method: mean over seeds, band = ±1 sd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from treesearch.io import save_figure

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=130)
    names = {"step_dpo": "MCTS + Step-DPO", "rft": "RFT (verified solutions)", "traj_dpo": "trajectory DPO"}
    for method, curves in per_round.items():
        if not curves:
            continue
        a = np.array(curves, dtype=float)  # [seeds, rounds + 1]
        x = np.arange(a.shape[1])
        m, s = a.mean(0), a.std(0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1])
        ax.plot(x, m, "o-", label=f"{names.get(method, method)} ({len(a)} seed{'s' if len(a) > 1 else ''})")
        ax.fill_between(x, m - s, m + s, alpha=0.2)
    if base is not None:
        ax.axhline(base + 0.15, color="grey", ls=":", lw=1, label="base + 15 points")
    ax.set_xlabel("round (0 = base policy)")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_xticks(range(max(len(c[0]) for c in per_round.values() if c)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
