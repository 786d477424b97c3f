"""`treesearch train-prm`: train a process reward model on search trees' own labels.

    treesearch train-prm --trees runs/x/round_0/trees.jsonl [--trees more.jsonl] --out runs/x/prm \\
        [--base embedded] [--label soft|beta|hard] [--min-judged 1] [--epochs 4] [--pairwise 0.5] ...
    # a real base: bf16 with fp32 masters, recomputed layers, micro-batches, a causal length cut
    treesearch train-prm --trees T --out DIR --base Qwen/Qwen2.5-Math-1.5B --dtype bfloat16 \\
        --gradient-checkpointing true --batch-tokens 16384 --max-length 4096

Every `PRMTrainConfig` field is an option. Writes ``OUT/model`` (a Hugging Face
token-classification checkpoint that `PRMScorer.from_pretrained` and the search's
``value.method: prm`` load) and ``OUT/prm.json`` (config and metrics); an
existing finished output is reported, not retrained.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from treesearch.config import add_flags
    from treesearch.rewards.prm_train import PRMTrainConfig

    p = subparsers.add_parser("train-prm", help="train a process reward model on search trees (MC / first-error labels)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--trees", action="append", required=True, metavar="FILE", help="trees JSONL (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory: model/, prm.json")
    group = p.add_argument_group("training options (PRMTrainConfig fields)")
    add_flags(group, PRMTrainConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from treesearch.config import from_flags
    from treesearch.rewards.prm_train import PRMTrainConfig, train_prm
    from treesearch.search.runner import read_trees

    cfg = from_flags(PRMTrainConfig, args)
    trees = [t for path in args.trees for t in read_trees(path)]
    info = train_prm(trees, cfg, args.out, log=print)
    print(f"PRM on {info['trees']} trees ({info['train_rows']} rows, {info['steps']} steps) -> {args.out}/model; "
          f"train loss {info['train_loss']:.4f}, validation AUC {info.get('val_auc', float('nan'))}")
    return 0
