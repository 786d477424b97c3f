"""`treesearch demo`: the main job on the embedded default, small enough for a 2-core laptop."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="evaluate the embedded policy on held-out arithmetic (greedy, maj@16, pass@16)")
    p.add_argument("--n-problems", type=int, default=100)
    p.add_argument("--out", default="runs/demo")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from tasks import get_task
    from treesearch.backends.hf import HFBackend
    from treesearch.evaluate import EvalConfig, evaluate, write_run

    console = Console()
    task = get_task("arithmetic")
    problems = task.problems("test", args.n_problems, seed=0, n_ops=3)
    backend = HFBackend.from_pretrained("embedded")
    console.print(f"[bold]treesearch demo[/]: embedded policy on {len(problems)} held-out 3-operation problems")
    rows = []
    for cfg in (EvalConfig(strategy="greedy"), EvalConfig(strategy="sample", k=16, temperature=1.0)):
        records, summary = evaluate(backend, task, problems, cfg)
        write_run(f"{args.out}/{cfg.strategy}", records, summary)
        rows.append(summary)
    greedy, sample = rows
    table = Table(title="embedded policy, arithmetic (3 ops), held-out")
    for col in ("metric", "value", "tokens/problem"):
        table.add_column(col)
    table.add_row("greedy accuracy", f"{greedy['accuracy']:.3f}", f"{greedy['tokens_per_problem']:.0f}")
    for key in ("pass@1", "maj@16", "pass@4", "pass@16"):
        table.add_row(key, f"{sample[key]:.3f}", f"{sample['tokens_per_problem']:.0f}")
    console.print(table)
    example = records[0]
    console.print(f"example: {problems[0].prompt}\n{example['completion']}")
    console.print(f"results in {args.out}/")
    return 0
