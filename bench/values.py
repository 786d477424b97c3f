"""Search values compared: one round from the embedded policy per value method, at equal sampled tokens.

Every method searches the same training problems (configs/bench_loop.yaml's round 0: 2-5 operations,
MCTS width 2), extracts step pairs, trains one round of Step-DPO on them (the loop's trainer settings)
and is evaluated greedily on the same held-out three-operation problems. Methods:

* ``zero``: the loop's settings before this comparison (``BEFORE``: 8 simulations, V = 0 backed up at
  every new interior child, finished answers re-evaluated, pairs by the search's Q, margin 0.1).
  Its sampled tokens per problem set everyone's budget. Every method starts from ``BEFORE``, so the
  config's own search and pair settings (``samples``' since this comparison) do not leak in.
* ``zero_conf``: ``zero``'s very search and pairs, each pair held to ``counts_conf``'s confidence
  rule (an ablation: what the rule does without the new search).
* ``counts``: values from judged outcomes only (`unknown_value`: an unjudged child stays unvisited;
  Q is the Beta(1, 1) posterior mean of the outcomes below), every simulation expands something,
  a repeated sample of a finished answer counts as one more outcome, cut steps end their path;
  pairs by the Beta posterior of judged outcomes (``value: beta``, margin, ``min_judged``, two
  verified samples below the chosen step), first errors held to the same margin.
* ``counts_conf``: ``counts`` made for clean pairs: half of each tree's budget first, then the
  batch's rest to the trees that reached a verified answer (``search.focus: 0.5``), and the
  confidence rule: every token of the shared prefix and of the chosen step had log-probability
  >= -1 when sampled (``pairs.min_logprob``; this policy reaches a third of its right answers
  through a wrong line, and those lines usually hold a low-probability slip).
* ``samples``: ``counts`` whose trees start from three independent complete solutions at temperature
  0.7 (``search.root_samples: 3``, ``search.temperature: 0.7``: a trie of samples, every step on it
  with a Monte-Carlo estimate), the simulations spending what is left of the budget (little: three
  solutions are about zero's budget); pairs as ``counts`` but one verified sample below the chosen step.
* ``samples_strict``: ``samples``' very trees, two verified samples below the chosen step.
* ``rollout``: ``counts`` plus one Monte-Carlo rollout from each new interior child, attached to the
  tree as steps, judged and backed up (Math-Shepherd / OmegaPRM style; its tokens count).
* ``prm``: ``counts`` with a PRM as the value, trained (`train_prm`) on the trees of a *previous*
  round: a ``rollout`` search of other training problems (seed + 1). Each PRM forward pass counts
  the PRM tokens of the step it scores (what a prefix-cached PRM computes anew).
* ``pav``: ``counts`` with process advantages (PAV) as the value, the policy as its own Best-of-4
  prover, one rollout per estimate (policy and prover rollouts count).

Every method but ``zero`` / ``zero_conf`` runs under ``search.token_budget`` = zero's mean sampled tokens per
problem (simulations become a cap), so budgets agree within a few percent; the JSON says how well.
Clean / inverted rates come from the arithmetic step checker (`step_audit`), a diagnostic only.

    python bench/values.py [--problems 8192] [--eval 3000] [--methods zero,zero_conf,counts,counts_conf,rollout,prm,pav]
                           [--out runs/bench_values] [--searches EARLIER_OUT,...] [--seed 0] [--set search.width=2 ...]
                           [--method-set samples:search.temperature=0.5 ...]

Resumable (each method is a `treesearch.loop.Run` directory); runs whose search settings agree share
one round-0 search (within ``--out``, and from ``--searches``), so pair rules can be varied on the
same trees. Last line: JSON
``{"methods": {NAME: {"pairs", "clean_rate", "inverted_rate", "sampled_tokens", "accuracy", ...}},
"best": NAME, "base_accuracy", ...}``; best = highest held-out accuracy. Plot: ``OUT/values.png``
(accuracy against the problems with pairs and against the clean rate, one point per method).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

METHODS = ("zero", "zero_conf", "counts", "counts_conf", "samples", "samples_strict", "rollout", "prm", "pav")
# every method starts from the loop's settings before search values were compared (issue 17), whatever
# the config's defaults are now: `zero` is exactly that search and pair rule; step pairs only, the
# kinds whose cleanliness the benchmark audits (the loop has since added trajectory pairs)
BEFORE = {"search": {"simulations": 8, "temperature": 1.0, "root_samples": 0, "token_budget": 0, "revisit_terminals": True,
                     "end_cut_steps": False, "value_prior": 0.0},
          "value": {"method": "zero"},
          "pairs": {"kinds": ["sibling", "first_error"], "value": "q", "margin": 0.1, "min_judged": 0, "min_correct": 0}}
# the new methods' search and pair settings
NEW_SEARCH = {"revisit_terminals": False, "end_cut_steps": True, "value_prior": 2.0}
NEW_PAIRS = {"value": "beta", "margin": 0.3, "min_judged": 1, "min_correct": 2}
CLEAN = {"focus": 0.5, "min_logprob": -1.0}  # counts_conf: search.focus and pairs.min_logprob
SAMPLES = {"root_samples": 3, "temperature": 0.7}  # samples: a trie of independent solutions first (T 0.5: see README)
# what fixes a run's round-0 search: runs equal in these share one search (`share_search`)
SEARCH_KEYS = ("policy", "task", "train_problems", "train_n_ops", "search_batch", "seed", "device", "backend", "search", "value")


def method_overrides(method: str, budget: int, cap: int, prm_path: str = "") -> dict:
    """Config overrides of one method (see the module docstring), over `BEFORE`."""
    from treesearch.config import merge

    return merge(BEFORE, _own_settings(method, budget, cap, prm_path))


def _own_settings(method: str, budget: int, cap: int, prm_path: str) -> dict:
    if method == "zero":
        return {}
    if method == "zero_conf":  # zero's search and pairs, held to the confidence rule
        return {"pairs": {"min_logprob": CLEAN["min_logprob"]}}
    search = {**NEW_SEARCH, "token_budget": int(budget), "simulations": cap}
    value: dict = {"method": "counts"}
    if method == "rollout":
        search["rollouts"] = 1
    elif method == "prm":
        value = {"method": "prm", "prm": prm_path}
    elif method == "pav":
        value = {"method": "pav", "rollout": {"k": 1, "record": True}, "pav_best_of_k": 4}
    pairs = dict(NEW_PAIRS)
    if method == "counts_conf":
        search["focus"], pairs["min_logprob"] = CLEAN["focus"], CLEAN["min_logprob"]
    if method in ("samples", "samples_strict"):
        search.update(SAMPLES)
        # three samples rarely put two verified ones below a step: one suffices, except for `samples_strict`
        pairs["min_correct"] = 2 if method == "samples_strict" else 1
    return {"search": search, "value": value, "pairs": pairs}


def open_run(out: Path, name: str, config: str, sets: dict, extra: dict, log_lines: list[str]):
    import torch

    torch.set_num_threads(int(os.environ.get("TREESEARCH_THREADS", "1")))
    from treesearch.config import merge
    from treesearch.loop import Run, load_loop_config

    cfg = load_loop_config(config, merge(sets, extra))
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} [{name}] {msg}"
        log_lines.append(line)
        with (run_dir / "log.txt").open("a") as fh:
            fh.write(line + "\n")
        print(line, flush=True)

    return Run(run_dir, cfg, log=log)


def share_search(sources: list[Path], dst: Path) -> Path | None:
    """Copy round 0's search (trees, search.json, held-out eval, a trained PRM) into run `dst` from the
    first finished run among `sources` whose search settings (SEARCH_KEYS) equal dst's, paths
    compared relative to each run's parent: variants that differ only in their pair rules train on
    the very same trees. Returns the source used, or None."""
    want = json.loads((dst / "config.json").read_text())
    if (dst / "round_0" / "search.json").is_file():
        return None
    for src in sources:
        if src == dst or not (src / "round_0" / "search.json").is_file() or not (src / "config.json").is_file():
            continue
        have = json.loads((src / "config.json").read_text())
        same = all(json.dumps(have.get(k)).replace(str(src.parent), "@") == json.dumps(want.get(k)).replace(str(dst.parent), "@")
                   for k in SEARCH_KEYS)
        if same:
            (dst / "round_0").mkdir(parents=True, exist_ok=True)
            for name in ("trees.jsonl", "search.json", "eval.json"):
                shutil.copy2(src / "round_0" / name, dst / "round_0" / name)
            if (src / "round_0" / "prm").is_dir() and not (dst / "round_0" / "prm").exists():
                shutil.copytree(src / "round_0" / "prm", dst / "round_0" / "prm")
            return src
    return None


def share_eval(src: Path, dst: Path) -> None:
    """Round 0's held-out evaluation depends on the starting policy alone: copy it."""
    (dst / "round_0").mkdir(parents=True, exist_ok=True)
    if not (dst / "round_0" / "eval.json").is_file():
        shutil.copy2(src / "round_0" / "eval.json", dst / "round_0" / "eval.json")


def summary(run_dir: Path) -> dict:
    from tasks import get_task
    from treesearch.io import read_jsonl
    from treesearch.pairs import solution_audit, step_audit
    from treesearch.search.runner import read_trees

    check = get_task("arithmetic").check_step
    pairs = json.loads((run_dir / "round_0" / "pairs.json").read_text())
    # audited here, from the files, so runs written before the audit grew keys report them too
    records = list(read_jsonl(run_dir / "round_0" / "pairs.jsonl"))
    trees = read_trees(run_dir / "round_0" / "trees.jsonl")
    audit = step_audit(records, check)
    solutions = solution_audit(trees, check)
    search = json.loads((run_dir / "round_0" / "search.json").read_text())
    return {
        "pairs": pairs["pairs"],
        "clean_rate": audit["clean"],
        "inverted_rate": audit["inverted"],
        "both_wrong_rate": audit["both_wrong"],
        "right_prefix": audit["right_prefix"],
        "clean_right_prefix": audit["clean_right_prefix"],
        "inverted_right_prefix": audit["inverted_right_prefix"],
        "correct_with_wrong_line": solutions["correct_with_wrong_line"],
        "rejected_preferred": rejected_preferred(records, trees),
        "problems_with_pairs": pairs.get("problems_with_pairs", 0),
        "by_kind": pairs.get("by_kind", {}),
        # tokens the round-0 search sampled (expansions, rollouts, PRM steps), from each tree's meta
        "sampled_tokens": sum(int(t.meta["search"].get("sampled_tokens", 0)) for t in trees),
        "search_accuracy": round(search["accuracy"], 4),
        "coverage": round(search["coverage"], 4),
        "search_minutes": round(search["cost"].get("wall_s", 0.0) / 60, 2),
        "accuracy": json.loads((run_dir / "round_1" / "eval.json").read_text())["accuracy"],
    }


def rejected_preferred(records: list[dict], trees) -> float:
    """Share of pairs whose rejected step the policy preferred (higher mean token log-probability than
    the chosen step's): the pairs that can move greedy decoding, and the ones outcome labels get wrong most."""
    by_id = {t.problem_id: t for t in trees}
    flags = []
    for r in records:
        t = by_id[r["problem_id"]]
        _, chosen, rejected = r["node_ids"]
        mean = lambda n: sum(t.logprobs[n]) / max(1, len(t.logprobs[n]))  # noqa: E731
        flags.append(mean(rejected) > mean(chosen))
    return round(sum(flags) / len(flags), 4) if flags else 0.0


def parse_args() -> tuple[argparse.Namespace, list[str], dict[str, dict]]:
    """The arguments, the methods asked for (zero among them) and each method's own --method-set overrides,
    all checked before any work."""
    from loop import parse_sets  # bench/loop.py's KEY=VALUE parser

    from treesearch.config import merge

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=8192, help="training problems searched by every method")
    ap.add_argument("--eval", type=int, default=3000, help="held-out three-operation problems")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cap", type=int, default=64, help="simulation cap of the budgeted methods")
    ap.add_argument("--config", default=str(ROOT / "configs" / "bench_loop.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_values"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    ap.add_argument("--method-set", action="append", default=[], metavar="METHOD:KEY=VALUE",
                    help="override a field of one method's own settings, e.g. samples:search.temperature=0.5 "
                         "(a method's search and pair settings win over --set)")
    ap.add_argument("--searches", default="", help="earlier --out directories (comma-separated): reuse their round-0 "
                                                  "searches where the search settings match (other pair rules, same trees)")
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or "zero" not in methods:
        ap.error(f"--methods: {'unknown method ' + repr(bad[0]) if bad else 'zero is required (it sets the budget)'}")
    own: dict[str, dict] = {}
    for item in args.method_set:
        name, sep, rest = item.partition(":")
        if not sep or name not in METHODS:
            ap.error(f"--method-set {item!r}: expected METHOD:KEY=VALUE with METHOD one of {', '.join(METHODS)}")
        own[name] = merge(own.get(name, {}), parse_sets([rest], f"--method-set {name}:"))
    return args, methods, own


def main() -> None:
    from loop import parse_sets

    from treesearch.config import merge

    args, methods, own = parse_args()

    def overrides(m: str, *a) -> dict:
        return merge(method_overrides(m, *a), own.get(m, {}))

    sets = merge(parse_sets(args.set), {"rounds": 1, "train_problems": args.problems, "seed": args.seed,
                                        "method": "step_dpo", "eval": {"problems": args.eval, "k": 0}})
    out = Path(args.out)
    t0, lines = time.time(), []
    results: dict[str, dict] = {}

    def sources() -> list[Path]:
        dirs = [out] + [Path(d) for d in args.searches.split(",") if d]
        return [run for d in dirs if d.is_dir() for run in sorted(d.iterdir()) if (run / "config.json").is_file()]

    def start(name: str, extra_sets: dict, overrides: dict):
        run = open_run(out, name, args.config, extra_sets, overrides, lines)
        src = share_search(sources(), run.root)
        if src is not None:
            print(f"{name}: round-0 search shared from {src}", flush=True)
        return run

    zero = start("zero", sets, overrides("zero", 0, 0))
    zero.run()
    results["zero"] = summary(zero.root)
    budget = round(results["zero"]["sampled_tokens"] / args.problems)
    print(f"budget: {budget} sampled tokens per problem (zero's)", flush=True)

    prm_path = ""
    if "prm" in methods:
        # the previous round: a rollout search of other problems, then a PRM trained on its trees
        prev = start("prm_previous_round", merge(sets, {"seed": args.seed + 1}), method_overrides("rollout", budget, args.cap))
        share_eval(zero.root, prev.root)
        prev.explore(0)
        prm_path = str(prev.train_prm(0))

    for m in methods:
        if m == "zero":
            continue
        run = start(m, sets, overrides(m, budget, args.cap, prm_path))
        share_eval(zero.root, run.root)
        run.run()
        results[m] = summary(run.root)
        print(f"{m}: {json.dumps(results[m])}", flush=True)

    head = headline(results)
    plot_values(results, out / "values.png")
    base = json.loads((zero.root / "round_0" / "eval.json").read_text())["accuracy"]
    print(json.dumps({**head, "base_accuracy": base, "problems": args.problems, "eval_problems": args.eval,
                      "budget_per_problem": budget, "minutes": round((time.time() - t0) / 60, 1)}))


def headline(results: dict[str, dict]) -> dict:
    """Each method's tokens against zero's (set in place), the most accurate method, and whether every
    method's sampled tokens are within 10% of zero's."""
    ref = results["zero"]["sampled_tokens"]
    for r in results.values():
        r["tokens_vs_zero"] = round(r["sampled_tokens"] / ref, 3) if ref else None
    best = max(results, key=lambda m: (results[m]["accuracy"], m == "zero"))
    return {"methods": results, "best": best,
            "equal_tokens": all(abs(r["tokens_vs_zero"] - 1) <= 0.10 for r in results.values())}


def plot_values(results: dict[str, dict], path: Path) -> None:
    """One point per method: held-out accuracy after one round against the problems its pairs cover
    (left) and against how clean they are (right), with zero's accuracy and the issue's targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from treesearch.io import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.6), dpi=130, sharey=True)
    zero = results["zero"]["accuracy"]
    for ax, key, label in ((axes[0], "problems_with_pairs", "training problems with a step pair"),
                           (axes[1], "clean_rate", "clean pairs (step checker, a diagnostic)")):
        for name, r in results.items():
            ax.scatter(r[key], r["accuracy"], s=12 + r["pairs"] / 40, alpha=0.7)
            ax.annotate(name, (r[key], r["accuracy"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.axhline(zero, color="grey", lw=1, label="zero")
        ax.axhline(zero + 0.03, color="grey", ls=":", lw=1, label="zero + 3 points (target)")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[1].axvline(0.9, color="tab:red", ls=":", lw=1, label="90% clean (target)")
    axes[0].set_ylabel("held-out greedy accuracy, 1 round")
    axes[1].legend(fontsize=7)
    fig.suptitle("search values: accuracy follows breadth, not cleanliness (marker area ~ pairs)", fontsize=9)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
