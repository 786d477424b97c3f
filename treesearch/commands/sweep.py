"""`treesearch sweep`: the accuracy-vs-tokens frontier of test-time strategies, with seeds, bands and a plot."""
from __future__ import annotations


from treesearch.commands.backend_args import add_backend_args, backend_from_args
from treesearch.commands.prm_args import add_prm_args


def register(sub) -> None:
    p = sub.add_parser("sweep", help="strategies at equal compute: accuracy against tokens, with a plot")
    p.add_argument("--model", default="embedded")
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--split", default="test")
    p.add_argument("--n-problems", type=int, default=50)
    p.add_argument("--n-ops", type=int, default=None)
    p.add_argument("--strategies", default="greedy,maj,best-of-n,beam,mcts,segments",
                   help="comma-separated: greedy, maj, best-of-n, best-of-n-prm, weighted-bon, beam, dvts, mcts, segments")
    p.add_argument("--budgets", default="4,8,16", help="comma-separated budget levels (samples, samples per step, simulations, width)")
    p.add_argument("--seeds", default="0", help="comma-separated sampling seeds; points pool them with a 95%% band")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of every strategy")
    p.add_argument("--temperatures", default="", help="per-strategy overrides, e.g. maj=0.7,beam=1.0")
    add_prm_args(p, what="for best-of-n-prm, weighted-bon, dvts (and beam, mcts)")
    p.add_argument("--draws", type=int, default=8, help="random subsets per problem and budget when subsampling")
    p.add_argument("--no-subsample", action="store_true", help="sample anew at every budget instead of subsampling the largest")
    p.add_argument("--max-tokens", type=int, default=128)
    add_backend_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def _ints(text: str, flag: str, low: int) -> tuple[int, ...]:
    try:
        vals = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < low:
        raise ValueError(f"{flag} must be integers >= {low}, got {text!r}")
    return vals


def _temperatures(text: str) -> tuple[tuple[str, float], ...]:
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, eq, value = item.partition("=")
        try:
            out.append((name.strip(), float(value)))
        except ValueError:
            eq = ""
        if not eq:
            raise ValueError(f"--temperatures: expected STRATEGY=FLOAT, got {item!r}")
    return tuple(out)


def config_from_args(args):
    from treesearch.sweep import SweepConfig

    return SweepConfig(strategies=tuple(s.strip() for s in args.strategies.split(",") if s.strip()),
                       budgets=_ints(args.budgets, "--budgets", 1), seeds=_ints(args.seeds, "--seeds", 0),
                       temperature=args.temperature, temperatures=_temperatures(args.temperatures),
                       max_tokens=args.max_tokens, prm=args.prm, prm_aggregate=args.prm_aggregate, prm_sets=tuple(args.prm_sets), prm_device=args.prm_device,
                       draws=args.draws, subsample=not args.no_subsample)


def run(args) -> int:
    from treesearch.commands.evaluate import load_problems
    from treesearch.sweep import run_sweep

    cfg = config_from_args(args)
    task, problems = load_problems(args)
    backend = backend_from_args(args)
    try:
        run_sweep(backend, task, problems, cfg, args.out)
    finally:
        backend.close()
    print(open(f"{args.out}/sweep.md").read())
    print(f"plot: {args.out}/sweep.png")
    return 0
