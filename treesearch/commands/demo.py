"""`treesearch demo`: the main job on the embedded default, sized for a 2-core laptop (under 10 minutes).

Rounds of MCTS -> step-level pairs -> Step-DPO -> held-out evaluation on the
arithmetic family (configs/demo.yaml), then the accuracy before and after.
Rerunning resumes the run directory; ``--fresh`` starts over.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from treesearch.commands.backend_args import add_backend_args, loop_overrides

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def register(sub) -> None:
    p = sub.add_parser("demo", help="self-improvement on the embedded policy: MCTS + Step-DPO rounds, accuracy before/after")
    p.add_argument("--config", default=str(DEMO_CONFIG), help="loop config (default: configs/demo.yaml)")
    p.add_argument("--out", default="runs/demo", help="run directory (default: %(default)s)")
    p.add_argument("--fresh", action="store_true", help="delete the run directory first")
    add_backend_args(p, device=False, default=None)
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from treesearch.commands.iterate import print_table
    from treesearch.loop import Run, load_loop_config

    console = Console()
    cfg = load_loop_config(args.config, loop_overrides(args))
    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    console.print(
        f"[bold]treesearch demo[/]: {cfg.rounds} rounds of MCTS ({cfg.search.simulations} simulations, width "
        f"{cfg.search.width}) on {cfg.train_problems} training problems each -> step pairs -> Step-DPO, "
        f"evaluated on {cfg.eval.problems} held-out {cfg.eval.n_ops}-operation problems ({cfg.backend} backend)"
    )
    rows = Run(args.out, cfg, log=console.print).run()
    print_table(rows, cfg.eval.k)
    before, after = rows[0]["eval"]["accuracy"], rows[-1]["eval"]["accuracy"]
    console.print(
        f"[bold]held-out greedy accuracy: {before:.3f} before -> {after:.3f} after "
        f"({100 * (after - before):+.1f} points)[/]   run directory: {args.out}/ (metrics.jsonl, accuracy.png)"
    )
    return 0
