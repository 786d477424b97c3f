"""`treesearch train-verifier`: train the policy into a verifier of its own solutions.

    treesearch search --algo best-of-n --split train --n-ops 3 --n-problems 4096 \\
        --set n=16 --set temperature=0.7 --out runs/bon_train
    treesearch train-verifier --trees runs/bon_train/trees.jsonl --task arithmetic --out runs/verifier
    treesearch eval --n-ops 3 --strategy best-of-n --k 16 --prm runs/verifier/model
    treesearch train-verifier --trees ... --references 32000 --sft-steps 500 --out runs/verifier_sft

Every finished leaf of the trees is a solution, graded by the task's verifier against the tree's
gold answer; the policy (``--base``) is trained to rank a problem's right solutions above its
wrong ones by mean token log-probability (`treesearch.rewards.verifier_train`). Writes
``OUT/model`` (a causal LM with ``prm_config.json`` for the PRM scorer's likelihood head) and
``OUT/verifier.json`` (config and metrics); an existing finished output is reported, not retrained.
With ``--references N --sft-steps S`` the verifier's backbone is first fine-tuned for S steps on the
reference solutions of N training problems of the task (drawn with seed ``--seed`` + 1).
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from treesearch.config import add_flags
    from treesearch.rewards.verifier_train import VerifierTrainConfig

    p = subparsers.add_parser("train-verifier", help="train the policy to rank its own solutions (a verifier for best-of-N)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--trees", action="append", required=True, metavar="FILE", help="trees JSONL of training problems (repeatable)")
    p.add_argument("--task", default="arithmetic", help="the task whose verifier grades the solutions (tasks.get_task)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory: model/, verifier.json")
    p.add_argument("--references", type=int, default=0, metavar="N",
                   help="training problems whose reference solutions the backbone is fine-tuned on first (with --sft-steps)")
    group = p.add_argument_group("training options (VerifierTrainConfig fields)")
    add_flags(group, VerifierTrainConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tasks import get_task
    from treesearch.config import from_flags
    from treesearch.rewards.verifier_train import VerifierTrainConfig, graded_samples, references, train_verifier
    from treesearch.search.runner import read_trees

    task = get_task(args.task)
    cfg = from_flags(VerifierTrainConfig, args, step_delimiter=getattr(task, "step_delimiter", "\n"))
    if (args.references > 0) != (cfg.sft_steps > 0):
        raise ValueError("train-verifier: --references N and --sft-steps S go together (both > 0, or neither)")
    samples = graded_samples([t for path in args.trees for t in read_trees(path)], task)
    refs = references(task.problems("train", args.references, seed=cfg.seed + 1)) if args.references else []
    info = train_verifier(samples, cfg, args.out, references=refs, log=print)
    print(f"verifier on {info['problems']} problems ({info['solutions']} solutions, {info['pairs']} pairs) -> "
          f"{args.out}/model; within-problem AUC {info.get('val_auc_base', float('nan')):.3f} -> {info.get('val_auc', float('nan')):.3f}")
    return 0
