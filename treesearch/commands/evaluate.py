"""`treesearch eval`: evaluate a policy on a task with a decoding strategy; JSONL + summary + table."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a policy on a task suite (greedy, sampling with maj@k and pass@k)")
    p.add_argument("--model", default="embedded", help="'embedded', a checkpoint directory or a Hugging Face name")
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--split", default="test")
    p.add_argument("--n-problems", type=int, default=200)
    p.add_argument("--n-ops", type=int, default=None, help="arithmetic only: fix the number of operations")
    p.add_argument("--strategy", default="greedy",
                   help="greedy | sample | maj@K | best-of-n | beam | mcts | segments (search settings: --set KEY=VALUE)")
    p.add_argument("--k", type=int, default=16, help="samples per problem for sample / best-of-n")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="search strategy setting (fields of its config, see `treesearch search --help`)")
    p.add_argument("--oracle", action="store_true", help="mcts: reward terminals with the verifier (not a test score)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--backend", default="hf", choices=["hf", "vllm"], help="hf (transformers, CPU/GPU) or vllm (GPU, optional extra)")
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
    from treesearch.evaluate import SEARCHES, EvalConfig, evaluate, evaluate_search, markdown_table, write_run

    strategy, k = args.strategy, args.k
    if strategy.startswith("maj@"):
        strategy, k = "sample", _int(strategy[4:], "--strategy maj@K")
    cfg = EvalConfig(
        strategy=strategy, k=k, temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed,
        oracle=args.oracle,
    )
    task, problems = load_problems(args)
    backend = make_backend(args)
    if cfg.strategy in SEARCHES:
        from treesearch.search.runner import apply_overrides

        _, defaults = _search_defaults(cfg)
        records, summary = evaluate_search(
            backend, task, problems, cfg, search_config=apply_overrides(defaults, args.overrides, where="--set")
        )
    else:
        if args.overrides:
            raise ValueError(f"--set applies to search strategies ({', '.join(SEARCHES)}), not {cfg.strategy!r}")
        records, summary = evaluate(backend, task, problems, cfg)
    summary.update({"model": args.model, "task": args.task, "split": args.split})
    if args.out:
        write_run(args.out, records, summary)
        print(f"wrote {args.out}/results.jsonl, summary.json, summary.md")
    print(markdown_table([summary]))
    return 0


def _int(text: str, what: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{what}: K must be a positive integer, got {text!r}")
    return int(text)


def _search_defaults(cfg):
    from treesearch.evaluate import search_defaults

    return cfg.strategy, search_defaults(cfg)[cfg.strategy]


def make_backend(args):
    """The backend named by --backend for --model (vLLM is imported only when asked for)."""
    if getattr(args, "backend", "hf") == "vllm":
        try:
            from treesearch.backends.vllm import VLLMBackend

            return VLLMBackend.from_pretrained(args.model, seed=args.seed)
        except ImportError as e:
            raise ValueError(f"--backend vllm needs the vllm extra (pip install 'treesearch[vllm]', GPU only): {e}") from None
    from treesearch.backends.hf import HFBackend

    return HFBackend.from_pretrained(args.model, device=args.device)
