"""Benchmark test-time strategies at equal compute on the embedded policy (issue 18's targets).

1. A PRM for the PRM-guided strategies: ``--prm PATH``, or trained here (cached in
   ``OUT/prm``): an MCTS search (judged-count values, one rollout per expansion) over
   ``--prm-problems`` 3-operation *training* problems, then `train_prm` on its trees (the PRM
   never sees a test problem). Step scores aggregate by ``--prm-aggregate`` (min, Math-Shepherd's).
   With ``--prm-kind verifier`` it is instead the policy trained into a verifier of its own
   solutions (`treesearch.rewards.verifier_train`, cached in ``OUT/verifier``) on
   ``--verifier-samples`` best-of-N samples of each of ``--verifier-problems`` 3-operation
   training problems; read it with ``--prm-aggregate last``. ``--verifier-sft-steps S`` first
   fine-tunes its backbone on reference solutions of 64·S training problems (the verifier gets
   its own, stronger backbone; the policy searched is unchanged).
2. Temperature, tuned for every strategy alike (maj@k included) on ``--dev`` held-out
   3-operation problems that are not scored below: each strategy at budget ``--tune-budget``,
   seed 0, at every temperature of ``--temperatures``; the most accurate wins.
3. The frontier on ``--problems`` held-out 3-operation problems (default 500): every strategy
   at every budget (default 4, 16, 64) and seed (default 0, 1, 2), the selectors over
   independent samples subsampled from one run at the largest budget (`treesearch.sweep`).

    .venv/bin/python bench/testtime.py [--problems 500] [--seeds 0,1,2] [--budgets 4,16,64] [--out runs/bench_testtime]

Headline (the last line, one JSON object, also written to ``OUT/headline.json``):

* ``best_strategy``: the most accurate strategy at budget ``--headline-budget`` (16), greedy excluded;
* ``best_vs_greedy_points``: its accuracy minus greedy's, in points (target >= 10);
* ``best_vs_maj_points``: its accuracy minus maj@k's at equal tokens computed (maj@k read off the
  sample tables at the k whose tokens are closest, required within 10%; target >= 5);
* ``segments_coverage_ratio``: segments' coverage (some trajectory verifies) at the headline budget
  over independent sampling's at equal tokens computed, same temperature (target >= 1.0);
* ``verifier_greedy_accuracy`` (a likelihood verifier only): its checkpoint's own greedy accuracy
  on the same problems, decoding as a policy: how strong a judge the policy was searched with;
* ``table``: every frontier point (strategy, budget, temperature, seeds, accuracy, ci95, seed_sd,
  coverage, tokens_per_problem), and ``temperatures``: the tuned temperature of each strategy.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STRATEGIES = "greedy,maj,best-of-n,best-of-n-prm,weighted-bon,beam,dvts,mcts,segments"


def build_verifier(backend, task, out: Path, problems: int, samples: int, temperature: float, sft_steps: int = 0) -> Path:
    """Train the policy into a verifier of its own solutions (`treesearch.rewards.verifier_train`) on
    `samples` best-of-N solutions of each of `problems` 3-operation *training* problems, its backbone first
    fine-tuned for `sft_steps` on reference solutions of 64 x `sft_steps` training problems (2-5 operations,
    seed 1) when asked; cached in out/verifier."""
    from treesearch.rewards.verifier_train import MODEL_DIR, VerifierTrainConfig, graded_samples, references, train_verifier
    from treesearch.search import BestOfNConfig, run_search

    model = out / "verifier" / MODEL_DIR
    if not (model / "config.json").is_file():
        train = task.problems("train", problems, seed=0, n_ops=3)
        print(f"verifier data: {samples} samples of {problems} training problems at T {temperature:g}", flush=True)
        res = run_search("best-of-n", backend, task, train, BestOfNConfig(n=samples, temperature=temperature, max_tokens=256),
                         batch_size=64)
        cfg = VerifierTrainConfig(base="embedded", sft_steps=sft_steps)
        refs = references(task.problems("train", cfg.sft_batch * sft_steps, seed=1)) if sft_steps else []
        info = train_verifier(graded_samples(res.trees, task), cfg, out / "verifier", references=refs, log=print)
        print(f"verifier: {info['problems']} training problems, {info['pairs']} pairs, {res.cost.computed_tokens} tokens; "
              f"within-problem AUC {info.get('val_auc_base')} -> {info.get('val_auc_sft', '-')} (references) -> "
              f"{info.get('val_auc')}", flush=True)
    return model


def greedy_of(path: Path, task, problems, max_tokens: int = 128) -> float:
    """Greedy accuracy of a checkpoint decoding as a policy: what a verifier's backbone could do on its own."""
    from treesearch.backends.hf import HFBackend
    from treesearch.evaluate import EvalConfig, evaluate

    backend = HFBackend.from_pretrained(str(path), device="cpu")
    return evaluate(backend, task, problems, EvalConfig(strategy="greedy", max_tokens=max_tokens))[1]["accuracy"]


def build_prm(backend, task, out: Path, problems: int, epochs: int) -> Path:
    """Train a PRM on MCTS trees (judged-count values, one rollout per expansion) of 3-operation *training*
    problems; cached in out/prm."""
    from treesearch.rewards.prm_train import MODEL_DIR, PRMTrainConfig, train_prm
    from treesearch.search import MCTSConfig, run_search

    model = out / "prm" / MODEL_DIR
    if not (model / "config.json").is_file():
        train = task.problems("train", problems, seed=0, n_ops=3)
        search = MCTSConfig(simulations=8, width=2, max_tokens=96, revisit_terminals=False, end_cut_steps=True,
                            value_prior=2.0, rollouts=1)
        res = run_search("mcts", backend, task, train, search, value="counts", batch_size=64)
        info = train_prm(res.trees, PRMTrainConfig(base="embedded", epochs=epochs), out / "prm")
        print(f"prm: {len(res.trees)} training trees, {res.cost.computed_tokens} tokens; "
              f"val {json.dumps({k: v for k, v in info.items() if k.startswith('val')})}", flush=True)
    return model


def tune(backend, task, dev, strategies, temperatures, budget, base, out: Path) -> dict[str, float]:
    """Each strategy's most accurate temperature on the dev problems (seed 0, one budget)."""
    from treesearch.sweep import frontier, run_sweep

    acc: dict[str, dict[float, float]] = {}
    for t in temperatures:
        cfg = dataclasses.replace(base, strategies=tuple(s for s in strategies if s != "greedy"), budgets=(budget,),
                                  seeds=(0,), temperature=t, temperatures=())
        rows = run_sweep(backend, task, dev, cfg, out / f"T{t:g}", log=lambda *_: None)
        for p in frontier(rows):
            acc.setdefault(p["strategy"], {})[t] = p["accuracy"]
    for s, by_t in acc.items():
        print(f"tune {s:>13}: " + "  ".join(f"T={t:g} {a:.3f}" for t, a in by_t.items()), flush=True)
    return {s: max(by_t, key=lambda t: (by_t[t], -t)) for s, by_t in acc.items()}


def pooled_curve(tables_by_seed, n: int, *, draws: int) -> list[dict]:
    """Independent samples read at every k = 1..n (maj@k accuracy, coverage, tokens), pooled over seeds."""
    import numpy as np

    from treesearch.sweep import curve

    out = []
    for k in range(1, n + 1):
        res = [curve(tabs, "maj", k, draws=draws, seed=seed) for seed, tabs in tables_by_seed.items()]
        out.append({"k": k, **{f: float(np.mean([r[f] for r in res])) for f in ("accuracy", "coverage", "tokens_per_problem")}})
    return out


def closest(points: list[dict], tokens: float) -> dict:
    """The point of a `pooled_curve` whose tokens computed are closest to `tokens`."""
    return min(points, key=lambda p: abs(p["tokens_per_problem"] - tokens))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--dev", type=int, default=200)
    ap.add_argument("--n-ops", type=int, default=3)
    ap.add_argument("--strategies", default=STRATEGIES)
    ap.add_argument("--budgets", default="4,16,64")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--temperatures", default="0.5,0.7,1.0", help="the grid every strategy is tuned over")
    ap.add_argument("--tune-budget", type=int, default=16)
    ap.add_argument("--headline-budget", type=int, default=16)
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prm", default="", help="a PRM checkpoint; default: train one on training problems (cached)")
    ap.add_argument("--prm-problems", type=int, default=1000)
    ap.add_argument("--prm-epochs", type=int, default=2)
    ap.add_argument("--prm-kind", default="step", choices=("step", "verifier"),
                    help="what --prm is trained as when not given: a step PRM on MCTS trees, or the policy trained "
                         "into a verifier of its own best-of-N samples (then --prm-aggregate last)")
    ap.add_argument("--verifier-problems", type=int, default=4096)
    ap.add_argument("--verifier-samples", type=int, default=16)
    ap.add_argument("--verifier-temperature", type=float, default=0.7)
    ap.add_argument("--verifier-sft-steps", type=int, default=0,
                    help="fine-tune the verifier's backbone on reference solutions of training problems first (steps of 64)")
    ap.add_argument("--prm-aggregate", default="min", choices=("last", "min", "prod"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/bench_testtime")
    return ap.parse_args()


def judge(args, backend, task, out: Path) -> str:
    """The PRM the guided strategies read: --prm, or one trained here as --prm-kind says (cached in OUT)."""
    if args.prm:
        return args.prm
    if args.prm_kind == "verifier":
        return str(build_verifier(backend, task, out, args.verifier_problems, args.verifier_samples,
                                  args.verifier_temperature, args.verifier_sft_steps))
    return str(build_prm(backend, task, out, args.prm_problems, args.prm_epochs))


def versus_sampling(at: dict, best: str, curve_at, maj_t: float, seg_t: float | None) -> dict:
    """The headline's comparisons with independent samples at equal tokens computed: `best` against maj@k
    (required within 10% of its tokens), and segments' coverage against independent sampling's."""
    maj = closest(curve_at(maj_t), at[best]["tokens_per_problem"])
    within = abs(maj["tokens_per_problem"] / at[best]["tokens_per_problem"] - 1) <= 0.10
    head = {"best_vs_maj_points": round(100 * (at[best]["accuracy"] - maj["accuracy"]), 2) if within else None,
            "maj_matched": {"k": maj["k"], "accuracy": round(maj["accuracy"], 4),
                            "tokens_per_problem": round(maj["tokens_per_problem"], 1),
                            "best_tokens_per_problem": round(at[best]["tokens_per_problem"], 1),
                            "within_10pct": within}}
    if "segments" in at:
        seg = at["segments"]
        ind = closest(curve_at(seg_t), seg["tokens_per_problem"])
        head.update({"segments_coverage_ratio": round(seg["coverage"] / ind["coverage"], 4) if ind["coverage"] else None,
                     "segments_coverage": round(seg["coverage"], 4), "independent_coverage": round(ind["coverage"], 4),
                     "coverage_tokens": [round(seg["tokens_per_problem"], 1), round(ind["tokens_per_problem"], 1)],
                     "independent_k": ind["k"]})
    return head


def headline(points: list[dict], budget: int, backend, task, problems, cfg, sweep_dir: Path, draws: int) -> dict:
    """The best strategy at `budget` against greedy decoding, then against plain sampling's pooled
    curves at the same token spend (`versus_sampling`)."""
    from treesearch.sweep import cached_tables

    at = {p["strategy"]: p for p in points if p["budget"] == budget}
    greedy = next(p for p in points if p["strategy"] == "greedy")
    best = max((s for s in at if s != "greedy"), key=lambda s: at[s]["accuracy"])
    head = {"best_strategy": best, "best_accuracy": round(at[best]["accuracy"], 4),
            "greedy_accuracy": round(greedy["accuracy"], 4),
            "best_vs_greedy_points": round(100 * (at[best]["accuracy"] - greedy["accuracy"]), 2)}
    curves: dict[float, list[dict]] = {}
    top = max(cfg.budgets)

    def curve_at(t: float) -> list[dict]:  # one pooled curve per temperature, shared by both comparisons
        if t not in curves:
            tabs = {s: cached_tables(backend, task, problems, cfg, sweep_dir, t, s, top, None) for s in cfg.seeds}
            curves[t] = pooled_curve(tabs, top, draws=draws)
        return curves[t]

    head.update(versus_sampling(at, best, curve_at, cfg.temperature_of("maj"),
                                cfg.temperature_of("segments") if "segments" in at else None))
    return head


def main() -> None:
    args = parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from tasks import get_task
    from treesearch.backends.hf import HFBackend
    from treesearch.io import atomic_write_text
    from treesearch.rewards.prm_train import saved_prm_config
    from treesearch.sweep import SweepConfig, frontier, frontier_table, plot_sweep, run_sweep

    t0 = time.time()
    out = Path(args.out)
    task = get_task("arithmetic")
    everything = task.problems("test", args.problems + args.dev, seed=0, n_ops=args.n_ops)
    problems, dev = everything[: args.problems], everything[args.problems :]
    backend = HFBackend.from_pretrained("embedded", device="cpu")
    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    budgets = tuple(int(b) for b in args.budgets.split(","))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    prm = judge(args, backend, task, out)
    base = SweepConfig(strategies=strategies, budgets=budgets, seeds=seeds, max_tokens=args.max_tokens, prm=prm,
                       prm_aggregate=args.prm_aggregate, draws=args.draws)
    temps = tune(backend, task, dev, strategies, [float(t) for t in args.temperatures.split(",")], args.tune_budget,
                 base, out / "tune")
    cfg = dataclasses.replace(base, temperatures=tuple(temps.items()))
    points = frontier(run_sweep(backend, task, problems, cfg, out / "sweep"))

    own = None  # a likelihood verifier is a causal LM: what it decodes greedily on the same problems
    if saved_prm_config(prm).head == "likelihood":
        own = round(greedy_of(Path(prm), task, problems, args.max_tokens), 4)
    plot_sweep(points, out / "sweep" / "sweep.png", levels={"the verifier's own greedy": own} if own is not None else {},
               title=f"embedded policy, {len(problems)} held-out 3-op problems, seeds {args.seeds}, PRM-guided vs not")

    head = headline(points, args.headline_budget, backend, task, problems, cfg, out / "sweep", args.draws)
    if own is not None:
        head["verifier_greedy_accuracy"] = own
    print(frontier_table(points))
    print(f"wall {time.time() - t0:.0f} s; plot {out / 'sweep' / 'sweep.png'}", flush=True)
    table = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()} for p in points]
    line = json.dumps({**head, "temperatures": temps, "problems": len(problems), "seeds": list(seeds),
                       "budgets": list(budgets), "prm": prm, "table": table})
    atomic_write_text(out / "headline.json", line + "\n")  # what notebook 03 reads
    print(line)


if __name__ == "__main__":
    main()
