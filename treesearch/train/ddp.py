"""Data-parallel Step-DPO under torchrun: the launcher and the contract with one process.

    torchrun --standalone --nnodes 1 --nproc_per_node 4 -m treesearch.train.ddp \\
        --policy embedded --pairs round_0/pairs.jsonl --config train.yaml --out round_0/train
    # or, from Python (one node): launch("embedded", "pairs.jsonl", StepDPOConfig(), "out", nproc=4)

`train_step_dpo` itself notices torchrun (``WORLD_SIZE`` > 1 in the environment),
joins the process group (NCCL on CUDA, gloo on CPU) and trains with
`DistributedDataParallel` (``sharding: ddp``) or FSDP2 (``sharding: fsdp``); the runtime
pieces are in `treesearch.train.dist` (re-exported here). The contract with a
single-process run, for either sharding:

* **Global batches.** ``batch_size`` and ``grad_accum`` mean the same as in one
  process: a micro-batch is ``batch_size`` pairs *in all*, and every rank takes a
  disjoint contiguous slice of it (`shard`; sizes differ by at most one), in the
  order of the single-process schedule. Each rank scales its loss so that the
  gradients DDP averages equal the single-process gradient of the whole
  optimizer step, including RPO's per-token NLL term (normalized by the chosen
  tokens of all the step's micro-batches, so ``grad_accum`` micro-batches of
  ``batch_size`` take the same step as one batch of both, up to its order). A rank whose slice is empty (a micro-batch
  smaller than the world) runs one pair with weight 0, because every DDP rank
  must take part in every backward. So the updated weights and the logged
  statistics (all-reduced over ranks) match a one-process run with the same
  config up to float summation order (~1e-7; tests/test_ddp.py). Under FSDP the
  ranks gather the full weights for every checkpoint (a collective) and rank 0
  writes them; the optimizer state is gathered the same way.
* **Reference log-probs.** The reference pass is split by batch: rank r runs
  batches r, r+W, r+2W, ... of the single-process pass (the same batches, so the
  same numbers) and the results are summed over ranks; every rank then holds all
  of them. All ranks agree whether ``ref_logps.pt`` is usable (all-reduce of a
  flag), so a cache one rank cannot see never leaves another waiting.
* **Files.** Rank 0 alone writes metrics, checkpoints, the reference cache and
  the final model; the others wait at a barrier before returning, so the model
  exists when any rank returns. Resuming reads the checkpoint on every rank:
  ``out_dir`` must be on a filesystem all ranks see (one node: any directory).
* Dropout (none in the embedded policy) draws the same masks on every rank, as
  all ranks share the seed.

Nothing here imports torch at module import.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from treesearch.train.dist import DistContext, setup, shard, teardown, wrap

__all__ = ["DistContext", "setup", "shard", "teardown", "wrap", "launch", "main"]


# ---------------------------------------------------------------- launching


def launch(policy: str, pairs: str | Path, config, out_dir: str | Path, *, nproc: int,
           env: dict[str, str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Train on this node with `nproc` processes (torchrun --standalone); returns ``train_result.json``.

    policy: checkpoint path or name; pairs: a pairs JSONL path; config: a `StepDPOConfig`. The
    config is written to ``out_dir/launch_config.yaml`` and the processes' output to
    ``out_dir/launch.log``; a failed launch raises RuntimeError with the log's tail.
    """
    from treesearch.train.trainer import DONE, FINAL

    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    from treesearch.policy import resolve
    from treesearch.train.data import load_pairs

    pairs = Path(pairs)
    load_pairs(pairs)  # bad input fails here with file:line, not as one of N ranks' tracebacks
    resolve(policy)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import yaml

    cfg_path = out / "launch_config.yaml"
    # YAML, not JSON: PyYAML reads JSON's 1e-05 as a string (YAML 1.1 floats need a dot)
    cfg_path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
           "--nproc_per_node", str(nproc), "-m", "treesearch.train.ddp",
           "--policy", str(policy), "--pairs", str(pairs), "--config", str(cfg_path), "--out", str(out)]
    log = out / "launch.log"
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                              timeout=timeout)
    if proc.returncode != 0:
        lines = log.read_text(errors="replace").splitlines()
        # the last exception line of a rank (torch prefixes "[rankN]: "; the last of a chained
        # traceback is the one raised), not torchrun's own ChildFailedError
        found = [m.group(1) for m in (re.match(r"(?:\[rank\d+\]:\s*)?([\w.]*(?:Error|Exception): .*)", ln)
                                      for ln in lines) if m and "ChildFailedError" not in m.group(1)]
        cause = found[-1] if found else ""
        tail = "\n".join(lines[-20:])
        raise RuntimeError(f"torchrun exited with {proc.returncode}: {cause or 'see the log'}; "
                           f"last lines of {log}:\n{tail}")
    return json.loads((out / FINAL / DONE).read_text())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of every torchrun process: ``python -m treesearch.train.ddp --policy ... --out ...``."""
    p = argparse.ArgumentParser(prog="python -m treesearch.train.ddp",
                                description="Step-DPO on this process's rank (start with torchrun).")
    p.add_argument("--policy", default="embedded", help="'embedded', a checkpoint directory or a HF name")
    p.add_argument("--pairs", required=True, help="pairs JSONL")
    p.add_argument("--config", default=None, help="StepDPOConfig YAML or JSON (strict)")
    p.add_argument("--out", required=True, help="output directory (shared by all ranks)")
    args = p.parse_args(argv)
    from treesearch.train.config import load_config
    from treesearch.train.trainer import train_step_dpo

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config = load_config(args.config)
    ctx = setup(config.device)
    try:
        result = train_step_dpo(args.policy, args.pairs, config, args.out)
        if ctx.is_main:
            print(json.dumps({"world_size": ctx.world_size, "steps": result.steps, "model_dir": str(result.model_dir),
                              "pairs_per_second": result.pairs_per_second, **result.metrics}))
    finally:
        teardown(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
