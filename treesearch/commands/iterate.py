"""`treesearch iterate --config FILE --out DIR`: rounds of search -> pairs -> Step-DPO -> evaluation."""
from __future__ import annotations


from treesearch.commands.backend_args import add_backend_args, loop_overrides


def register(sub) -> None:
    p = sub.add_parser("iterate", help="iterative self-improvement: search, pairs, Step-DPO, evaluation, per round")
    p.add_argument("--config", default=None, help="YAML run config (strict: unknown keys are errors)")
    p.add_argument("--out", required=True, help="run directory; rerunning the same command resumes it")
    p.add_argument("--rounds", type=int, default=None, help="override the config's rounds")
    add_backend_args(p, device=False, default=None)
    p.set_defaults(func=run)


def run(args) -> int:
    from treesearch.loop import Run, load_loop_config

    overrides = {"rounds": args.rounds} if args.rounds is not None else {}
    cfg = load_loop_config(args.config, {**overrides, **loop_overrides(args)})
    rows = Run(args.out, cfg).run()
    print_table(rows, cfg.eval.k)
    print(f"run directory: {args.out} (metrics.jsonl, accuracy.png, round_*/)")
    return 0


def print_table(rows, k: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from treesearch.loop import results_table

    table = Table(title="held-out accuracy by round")
    for col in ("round", "greedy", f"pass@{k}", "train records", "tokens spent"):
        table.add_column(col)
    for r in results_table(rows, k):
        table.add_row(*r)
    Console().print(table)
