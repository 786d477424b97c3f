"""`treesearch bootstrap`: train the embedded default policy from scratch (tokenizer + tiny Qwen2)."""
from __future__ import annotations

import dataclasses


def register(sub) -> None:
    from treesearch.bootstrap import BootstrapConfig

    p = sub.add_parser("bootstrap", help="train the embedded tiny policy from a seed on the arithmetic family")
    d = BootstrapConfig()
    p.add_argument("--out", default=d.out, help="output checkpoint directory (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--steps", type=int, default=d.steps, help="length of the LR schedule (training may stop earlier)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")
    p.set_defaults(func=run)


def run(args) -> int:
    from tasks.base import check_seed
    from treesearch.bootstrap import BootstrapConfig, train

    check_seed(args.seed)
    cfg = dataclasses.replace(
        BootstrapConfig(), out=args.out, seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        threads=args.threads,
    )
    report = train(cfg)
    print(f"saved {cfg.out} (step {report['chosen_step']}, {report['train_seconds']} s, {report['parameters']} parameters)")
    return 0
