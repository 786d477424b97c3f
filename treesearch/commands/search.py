"""`treesearch search`: search a task's problems with MCTS, tree-segment rollouts or a baseline.

    treesearch search --task arithmetic --algo mcts --n-problems 30 --n-ops 3 \\
        --set simulations=16 --set width=2 --out runs/mcts

writes ``runs/mcts/trees.jsonl`` (one tree per line) and ``summary.json``
(accuracy of the selected answers, coverage, cost). Algorithm settings are the
fields of its config dataclass, set with ``--set KEY=VALUE`` (listed below).
"""
from __future__ import annotations

import dataclasses
import json
import sys


def _config_help() -> str:
    from treesearch.search.runner import CONFIGS
    from treesearch.search.values import RolloutConfig

    lines = ["algorithm settings (--set KEY=VALUE):"]
    seen = set()
    for algo, cls in [*CONFIGS.items(), ("--value rollout (--set rollout.KEY=VALUE)", RolloutConfig)]:
        if cls in seen:
            continue
        seen.add(cls)
        names = [a for a, c in CONFIGS.items() if c is cls] or [algo]
        lines.append(f"  {' / '.join(names)} ({cls.__name__}):")
        for f in dataclasses.fields(cls):
            lines.append(f"    {f.name}={f.default!r}: {f.metadata.get('help', '')}")
    return "\n".join(lines)


def register(sub) -> None:
    import argparse

    from treesearch.commands.backend_args import add_backend_args
    from treesearch.commands.prm_args import add_prm_args

    from treesearch.search.runner import CONFIGS, VALUES

    p = sub.add_parser(
        "search",
        help="search problems with MCTS, tree-segment rollouts, best-of-N, weighted best-of-N, beam search, DVTS or majority vote",
        description="Search a task's problems and write trees.jsonl and summary.json.",
        epilog=_config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="arithmetic", help="task name (tasks.get_task)")
    p.add_argument("--algo", default="mcts", choices=list(CONFIGS), help="search algorithm")
    p.add_argument("--n-problems", type=int, default=30, help="problems to search")
    p.add_argument("--split", default="test", help="train | test")
    p.add_argument("--n-ops", type=int, default=None, help="arithmetic only: fix the number of operations")
    p.add_argument("--model", default="embedded", help="'embedded', a checkpoint directory or a Hugging Face name")
    add_backend_args(p)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch; 0 keeps torch's default (several threads on a busy or small machine can be many times slower for a tiny model)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the problem draw and of sampling")
    p.add_argument("--value", default=None, choices=VALUES, help="MCTS: value at internal nodes (default zero); others: the scorer that selects (default logprob)")
    add_prm_args(p, what="ranks for best-of-n, weighted-bon, beam, dvts and segments, MCTS's value; weighted-bon and dvts need it")
    p.add_argument("--batch-size", type=int, default=32, help="problems searched together (one wave = one backend call)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="algorithm setting, repeatable")
    p.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="search on workers: local (this process, chunked) or ray (one actor per worker); "
                        "default: plain in-process search")
    p.add_argument("--num-workers", type=int, default=1, help="--executor ray: actors (one per GPU)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="problems per work item (default --batch-size); results depend on it, not on the executor")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join ('auto'); default: RAY_ADDRESS or a new local cluster")
    p.add_argument("--out", required=True, help="run directory for trees.jsonl and summary.json")
    p.set_defaults(func=run)


def run(args) -> int:
    from tasks import get_task
    from tasks.base import check_seed
    from treesearch.search.runner import write_run

    check_seed(args.seed)
    if args.n_problems < 1:
        raise ValueError(f"--n-problems must be >= 1, got {args.n_problems}")
    config, rollout = _configs(args)
    task = get_task(args.task)
    kw = {"n_ops": args.n_ops} if args.n_ops is not None else {}
    problems = task.problems(args.split, args.n_problems, seed=args.seed, **kw)
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    prm = _prm(args, task)
    result = _search(args, task, problems, config, rollout, prm)
    info = {
        "algo": args.algo,
        "task": args.task,
        "split": args.split,
        "n_ops": args.n_ops,
        "model": args.model,
        "backend": args.backend,
        "seed": args.seed,
        "value": args.value,
        "config": dataclasses.asdict(config),
    }
    if args.value == "rollout":
        info["rollout"] = dataclasses.asdict(rollout)
    summary = write_run(args.out, result, task, problems, info)
    print(json.dumps({k: summary[k] for k in ("algo", "n_problems", "accuracy", "coverage", "tokens_per_problem")}))
    print(f"wrote {args.out}/trees.jsonl and {args.out}/summary.json", file=sys.stderr)
    return 0


def _configs(args):
    """The algorithm's config and the rollout value's, from their defaults and ``--set`` (``rollout.``
    fields go to the rollout's); the algorithm's seed is ``--seed`` unless a ``--set seed=`` gives one."""
    from treesearch.config import apply_overrides
    from treesearch.search.runner import CONFIGS
    from treesearch.search.values import RolloutConfig

    algo_sets = [s for s in args.overrides if not s.startswith("rollout.")]
    rollout_sets = [s.removeprefix("rollout.") for s in args.overrides if s.startswith("rollout.")]
    cls = CONFIGS[args.algo]
    config = apply_overrides(cls(), algo_sets, where="--set")
    if "seed" in {f.name for f in dataclasses.fields(cls)} and not any(s.startswith("seed=") for s in algo_sets):
        config = dataclasses.replace(config, seed=args.seed)
    return config, apply_overrides(RolloutConfig(), rollout_sets, where="--set rollout.")


def _prm(args, task):
    """The ``--prm`` checkpoint as the search's value and ranking (None without one)."""
    from treesearch.search.runner import NEEDS_PRM

    if not args.prm:
        if args.algo in NEEDS_PRM:
            raise ValueError(f"--algo {args.algo} needs --prm DIR (a process reward model checkpoint)")
        return None
    if args.executor or args.value:
        raise ValueError("--prm: the PRM is the value and the ranking itself; it takes no --value and runs in-process (no --executor)")
    from treesearch.rewards.prm_train import load_value_prm

    return load_value_prm(args.prm, device=args.prm_device, aggregate=args.prm_aggregate, signed=False,
                          step_delimiter=getattr(task, "step_delimiter", None), sets=args.prm_sets)


def _search(args, task, problems, config, rollout, prm):
    """The search on ``--executor``'s workers (journaled in the output folder), or in this process."""
    from treesearch.commands.backend_args import backend_from_args, vllm_config

    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.executor:
        from pathlib import Path

        from treesearch.distributed import run_search_distributed

        return run_search_distributed(
            args.algo, args.task, problems, config, executor=args.executor, num_workers=args.num_workers,
            model=args.model, device=args.device, backend=args.backend, vllm=vllm_config(args.vllm_sets, verbose=args.verbose),
            value=args.value, rollout=rollout, batch_size=args.batch_size,
            chunk_size=args.chunk_size, journal=Path(args.out) / "chunks.jsonl", progress=progress,
            **({"address": args.ray_address} if args.executor == "ray" and args.ray_address else {}),
        )
    from treesearch.search.runner import run_search

    backend = backend_from_args(args)
    try:
        return run_search(args.algo, backend, task, problems, config, value=args.value, rollout=rollout, prm=prm,
                          batch_size=args.batch_size, progress=progress)
    finally:
        backend.close()
