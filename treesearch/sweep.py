"""Strategies at equal compute: accuracy against tokens computed, one curve per strategy.

Each strategy has one budget knob (samples for maj@k and best-of-n, beam width
for beam, simulations for MCTS, width for tree-segment rollouts); the sweep
runs every strategy at every budget on the same problems and records accuracy
and model tokens computed per problem (prefill + decode, after prefix-cache
reuse), in ``sweep.jsonl``, ``sweep.md`` and ``sweep.png``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from treesearch.io import append_jsonl, atomic_write_text, read_jsonl, save_figure

KNOBS = {"maj": "k", "best-of-n": "n", "beam": "beam_width", "mcts": "simulations", "segments": "max_width"}


def run_sweep(backend, task, problems, strategies, budgets, out_dir, *, seed: int = 0, max_tokens: int = 128,
              log=print) -> list[dict]:
    """Rows {strategy, budget, accuracy, tokens_per_problem}; resumes rows already in sweep.jsonl."""
    from treesearch.evaluate import EvalConfig, evaluate, evaluate_search, search_defaults

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sweep.jsonl"
    rows = list(read_jsonl(path, allow_torn_tail=True)) if path.is_file() else []
    done = {(r["strategy"], r["budget"]) for r in rows}
    unknown = [s for s in strategies if s != "greedy" and s not in KNOBS]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; expected greedy or one of {', '.join(KNOBS)}")
    for strategy in strategies:
        for budget in ([1] if strategy == "greedy" else budgets):
            if (strategy, budget) in done:
                continue
            if strategy in ("greedy", "maj"):
                cfg = EvalConfig(strategy="greedy" if strategy == "greedy" else "sample", k=budget, seed=seed,
                                 max_tokens=max_tokens)
                _, summary = evaluate(backend, task, problems, cfg, progress=False)
                acc = summary["accuracy"] if strategy == "greedy" else summary[f"maj@{budget}"]
            else:
                cfg = EvalConfig(strategy=strategy, k=budget, seed=seed, max_tokens=max_tokens)
                scfg = dataclasses.replace(search_defaults(cfg)[strategy], **{KNOBS[strategy]: budget})
                _, summary = evaluate_search(backend, task, problems, cfg, progress=False, search_config=scfg)
                acc = summary["accuracy"]
            row = {"strategy": strategy, "budget": budget, "accuracy": acc,
                   "tokens_per_problem": summary["tokens_per_problem"], "problems": len(problems)}
            append_jsonl(path, [row])
            rows.append(row)
            log(f"{strategy:>10} budget {budget:>3}: accuracy {acc:.3f} at {row['tokens_per_problem']:.0f} tokens/problem")
    lines = ["| strategy | budget | accuracy | tokens/problem |", "|---|---|---|---|"]
    lines += [f"| {r['strategy']} | {r['budget']} | {r['accuracy']:.3f} | {r['tokens_per_problem']:.0f} |" for r in rows]
    atomic_write_text(out / "sweep.md", "\n".join(lines) + "\n")
    plot_sweep(rows, out / "sweep.png")
    return rows


def plot_sweep(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        pts = sorted((r["tokens_per_problem"], r["accuracy"]) for r in rows if r["strategy"] == strategy)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if len(pts) > 1 else "o", label=strategy)
    ax.set_xscale("log")
    ax.set_xlabel("model tokens computed per problem (prefill + decode)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
