"""`treesearch eval`: evaluate a policy on a task with a decoding strategy; JSONL + summary + table."""
from __future__ import annotations


from treesearch.commands.backend_args import add_backend_args, backend_from_args
from treesearch.commands.prm_args import add_prm_args


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a policy on a task suite (greedy, sampling with maj@k and pass@k)")
    p.add_argument("--model", default="embedded", help="'embedded', a checkpoint directory or a Hugging Face name")
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--split", default="test")
    p.add_argument("--n-problems", type=int, default=200)
    p.add_argument("--n-ops", type=int, default=None, help="arithmetic only: fix the number of operations")
    p.add_argument("--strategy", default="greedy",
                   help="greedy | sample | maj@K | best-of-n | weighted-bon | beam | dvts | mcts | segments "
                        "(search settings: --set KEY=VALUE; weighted-bon and dvts need --prm)")
    p.add_argument("--k", type=int, default=16, help="samples per problem for sample / best-of-n / weighted-bon; N of dvts")
    add_prm_args(p, what="guides the search strategies")
    p.add_argument("--prm-select", default="vote", choices=["vote", "score"],
                   help="dvts / mcts with --prm: answer by the PRM-weighted vote or the best-scored solution")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="search strategy setting (fields of its config, see `treesearch search --help`)")
    p.add_argument("--oracle", action="store_true", help="mcts: reward terminals with the verifier (not a test score)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    add_backend_args(p)
    p.add_argument("--out", default=None, help="run directory for results.jsonl, summary.json, summary.md")
    p.set_defaults(func=run)


def load_problems(args):
    from tasks import get_task
    from tasks.base import check_seed

    check_seed(args.seed)
    if args.n_problems < 1:
        raise ValueError(f"--n-problems must be >= 1, got {args.n_problems}")
    task = get_task(args.task)
    kw = {"n_ops": args.n_ops} if args.n_ops is not None else {}
    return task, task.problems(args.split, args.n_problems, seed=args.seed, **kw)


def run(args) -> int:
    from treesearch.evaluate import EvalConfig, evaluate, evaluate_search, load_prm, markdown_table, write_run

    strategy, k = args.strategy, args.k
    if strategy.startswith("maj@"):
        strategy, k = "sample", _int(strategy[4:], "--strategy maj@K")
    cfg = EvalConfig(
        strategy=strategy, k=k, temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed,
        oracle=args.oracle, prm=args.prm, prm_aggregate=args.prm_aggregate, prm_sets=tuple(args.prm_sets), prm_device=args.prm_device, prm_select=args.prm_select,
    )
    task, problems = load_problems(args)
    search_config = _search_config(cfg, args.overrides)  # bad settings fail before an engine starts
    if cfg.prm and search_config is None:
        raise ValueError(f"--prm guides the search strategies, not {cfg.strategy!r}")
    prm = load_prm(cfg, task)  # a bad checkpoint fails before an engine starts too
    backend = backend_from_args(args)
    try:
        if search_config is not None:
            records, summary = evaluate_search(backend, task, problems, cfg, search_config=search_config, prm=prm)
        else:
            records, summary = evaluate(backend, task, problems, cfg)
    finally:
        backend.close()
    summary.update({"model": args.model, "task": args.task, "split": args.split, "backend": args.backend})
    if args.out:
        write_run(args.out, records, summary)
        print(f"wrote {args.out}/results.jsonl, summary.json, summary.md")
    print(markdown_table([summary]))
    return 0


def _search_config(cfg, overrides):
    """The search strategy's config with --set applied (None for plain decoding strategies)."""
    from treesearch.evaluate import SEARCHES, search_defaults
    from treesearch.config import apply_overrides

    if cfg.strategy not in SEARCHES:
        if overrides:
            raise ValueError(f"--set applies to search strategies ({', '.join(SEARCHES)}), not {cfg.strategy!r}")
        return None
    return apply_overrides(search_defaults(cfg)[cfg.strategy], overrides, where="--set")


def _int(text: str, what: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{what}: K must be a positive integer, got {text!r}")
    return int(text)
