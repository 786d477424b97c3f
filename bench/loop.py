"""Acceptance benchmark of the self-improvement loop on the embedded default.

Three rounds of MCTS + Step-DPO against two baselines that consume the same
search budget each round (the same MCTS settings, so the same sampled tokens):
rejection-sampling fine-tuning on the policy's own verified-correct solutions
(`method: rft`) and trajectory-level DPO (`method: traj_dpo`). Every method
starts from the embedded policy; held-out greedy accuracy on 3-operation
problems is measured after the last round. Repeated over seeds (problem draws,
sampling, training order); run directories are resumable, so an interrupted
benchmark continues where it stopped.

    python bench/loop.py --seeds 3 [--config configs/bench_loop.yaml] [--out runs/bench_loop]

Last line: JSON with base_acc, final_acc, gain_points, rft_acc, traj_dpo_acc
(means over seeds), their per-seed values and standard deviations, and seeds.
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


def share_round0_search(seed_dir: Path, method: str, methods: list[str]) -> None:
    """Round 0 searches the same problems with the same policy and seed for every method, so its
    evaluation and trees are computed once and copied (the search is deterministic per problem)."""
    import shutil

    mine = seed_dir / method / "round_0"
    for other in methods:
        src = seed_dir / other / "round_0"
        if other != method and (src / "search.json").is_file() and not (mine / "search.json").is_file():
            mine.mkdir(parents=True, exist_ok=True)
            for name in ("eval.json", "trees.jsonl", "search.json"):
                shutil.copy2(src / name, mine / name)
            return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-list", default=None, help="comma-separated seeds to run (default: 0..seeds-1)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "bench_loop.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_loop"))
    ap.add_argument("--methods", default="step_dpo,rft,traj_dpo")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("TREESEARCH_THREADS", "1")))
    from treesearch.loop import Run, load_loop_config

    methods = [m.strip() for m in args.methods.split(",")]
    finals: dict[str, list[float]] = {m: [] for m in methods}
    base: list[float] = []
    t0 = time.time()
    seeds = [int(x) for x in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    for seed in seeds:
        for method in methods:
            cfg = load_loop_config(args.config, {"seed": seed, "method": method})
            run_dir = Path(args.out) / f"seed{seed}" / method
            share_round0_search(Path(args.out) / f"seed{seed}", method, methods)
            run = Run(run_dir, cfg, log=lambda m: print(m, flush=True))
            rows = run.run()
            finals[method].append(rows[-1]["eval"]["accuracy"])
            if method == methods[0]:
                base.append(rows[0]["eval"]["accuracy"])
            print(f"seed {seed} {method}: " + " -> ".join(f"{r['eval']['accuracy']:.3f}" for r in rows), flush=True)

    def mean(xs):
        return round(statistics.fmean(xs), 4) if xs else None

    def sd(xs):
        return round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0

    out = {
        "base_acc": mean(base),
        "final_acc": mean(finals.get("step_dpo", [])),
        "gain_points": round(100 * (mean(finals.get("step_dpo", [])) - mean(base)), 2) if "step_dpo" in finals else None,
        "rft_acc": mean(finals.get("rft", [])),
        "traj_dpo_acc": mean(finals.get("traj_dpo", [])),
        "final_acc_sd": sd(finals.get("step_dpo", [])),
        "rft_acc_sd": sd(finals.get("rft", [])),
        "traj_dpo_acc_sd": sd(finals.get("traj_dpo", [])),
        "per_seed": {"base": base, **finals},
        "seeds": args.seeds,
        "minutes": round((time.time() - t0) / 60, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
