"""`treesearch sweep`: compare strategies at equal compute; accuracy vs tokens table and plot."""
from __future__ import annotations


from treesearch.commands.backend_args import add_backend_args, backend_from_args


def register(sub) -> None:
    p = sub.add_parser("sweep", help="strategies at equal compute: accuracy against tokens, with a plot")
    p.add_argument("--model", default="embedded")
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--split", default="test")
    p.add_argument("--n-problems", type=int, default=50)
    p.add_argument("--n-ops", type=int, default=None)
    p.add_argument("--strategies", default="greedy,maj,best-of-n,beam,mcts,segments")
    p.add_argument("--budgets", default="4,8,16", help="comma-separated budget levels (samples, beams, simulations, width)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    add_backend_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def run(args) -> int:
    from treesearch.commands.evaluate import load_problems
    from treesearch.sweep import run_sweep

    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        raise ValueError(f"--budgets must be comma-separated integers, got {args.budgets!r}") from None
    if not budgets or min(budgets) < 1:
        raise ValueError(f"--budgets must be positive integers, got {args.budgets!r}")
    task, problems = load_problems(args)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    backend = backend_from_args(args)
    try:
        run_sweep(backend, task, problems, strategies, budgets, args.out, seed=args.seed, max_tokens=args.max_tokens)
    finally:
        backend.close()
    print(open(f"{args.out}/sweep.md").read())
    print(f"plot: {args.out}/sweep.png")
    return 0
