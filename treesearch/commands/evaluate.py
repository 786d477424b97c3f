"""`treesearch eval`: evaluate a policy on a task with a decoding strategy; JSONL + summary + table."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a policy on a task suite (greedy, sampling with maj@k and pass@k)")
    p.add_argument("--model", default="embedded", help="'embedded', a checkpoint directory or a Hugging Face name")
    p.add_argument("--task", default="arithmetic")
    p.add_argument("--split", default="test")
    p.add_argument("--n-problems", type=int, default=200)
    p.add_argument("--n-ops", type=int, default=None, help="arithmetic only: fix the number of operations")
    p.add_argument("--strategy", default="greedy", help="greedy | sample")
    p.add_argument("--k", type=int, default=16, help="samples per problem for 'sample'")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
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
    from treesearch.backends.hf import HFBackend
    from treesearch.evaluate import EvalConfig, evaluate, markdown_table, write_run

    cfg = EvalConfig(
        strategy=args.strategy, k=args.k, temperature=args.temperature, max_tokens=args.max_tokens, seed=args.seed
    )
    task, problems = load_problems(args)
    backend = HFBackend.from_pretrained(args.model, device=args.device)
    records, summary = evaluate(backend, task, problems, cfg)
    summary.update({"model": args.model, "task": args.task, "split": args.split})
    if args.out:
        write_run(args.out, records, summary)
        print(f"wrote {args.out}/results.jsonl, summary.json, summary.md")
    print(markdown_table([summary]))
    return 0
