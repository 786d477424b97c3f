"""Step-DPO on every rank of a torchrun job (a thin wrapper of `treesearch.train.ddp.main`).

    torchrun --standalone --nnodes 1 --nproc_per_node 8 scripts/ddp_train.py \
        --policy runs/r/round_0/policy --pairs runs/r/round_0/pairs.jsonl --config train.yaml \
        --out runs/r/round_0/train

Same as ``torchrun ... -m treesearch.train.ddp ...``; see docs/scaling.md.
"""
import sys

from treesearch.train.ddp import main

if __name__ == "__main__":
    sys.exit(main())
