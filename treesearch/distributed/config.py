"""`ScaleConfig`: how a round is spread over machines: search workers and training processes.

Loaded strictly from YAML (unknown keys and ill-typed values are errors naming
the file and the dotted key), like every treesearch config:

    cfg = load_scale_config("configs/multigpu_node.yaml")
    cfg.search.executor, cfg.search.num_workers, cfg.train.nproc_per_node

The example files are ``configs/multigpu_node.yaml`` (one node, several GPUs)
and ``configs/ray_multinode.yaml`` (a Ray cluster of GPU nodes with vLLM); see
``docs/scaling.md``. Nothing here imports Ray or torch.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

EXECUTORS = ("local", "ray")


from treesearch.config import field

_f = field  # a dataclass field with help text (treesearch.config.field)


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r}: {why}")


@dataclasses.dataclass(frozen=True)
class SearchScale:
    """Where the search runs. Results do not depend on executor, num_workers or restarts."""

    executor: str = _f("local", "local (one backend in this process) | ray (one Ray actor per worker)")
    num_workers: int = _f(1, "Ray actors, each owning a backend (one per GPU, or one per vLLM engine)")
    chunk_size: int = _f(32, "problems per work item; a chunk is searched as one batch on a fresh prefix cache "
                             "and journaled atomically, so it is also the unit of retry and resume")
    cpus_per_worker: float = _f(1.0, "Ray num_cpus per actor (also its torch thread count)")
    gpus_per_worker: float | None = _f(None, "Ray num_gpus per actor; null = 1 when the cluster has GPUs, else 0 "
                                             "(a vLLM engine with tensor parallelism: vllm.tensor_parallel_size)")
    ray_address: str = _f("", "Ray cluster to join ('auto' = the one `ray start` made on this node, "
                              "'ray://HOST:10001' = a remote client); '' = RAY_ADDRESS or a new local cluster")
    max_restarts: int = _f(2, "Ray restarts of a dead actor, then the driver re-creates it (as often again)")
    max_attempts: int = _f(3, "runs of one chunk whose worker keeps dying before the search fails")

    def __post_init__(self) -> None:
        _check(self.executor in EXECUTORS, "search.executor", self.executor, f"must be one of {', '.join(EXECUTORS)}")
        for name in ("num_workers", "chunk_size", "max_attempts"):
            _check(getattr(self, name) >= 1, f"search.{name}", getattr(self, name), "must be >= 1")
        _check(self.max_restarts >= 0, "search.max_restarts", self.max_restarts, "must be >= 0")
        _check(self.cpus_per_worker > 0, "search.cpus_per_worker", self.cpus_per_worker, "must be > 0")
        _check(self.gpus_per_worker is None or self.gpus_per_worker >= 0, "search.gpus_per_worker",
               self.gpus_per_worker, "must be >= 0 or null")
        _check(self.executor == "ray" or self.num_workers == 1, "search.num_workers", self.num_workers,
               "must be 1 with executor local (use executor ray for more)")


@dataclasses.dataclass(frozen=True)
class TrainScale:
    """Data-parallel Step-DPO under torchrun: batch_size/grad_accum stay global, each rank takes a slice."""

    nproc_per_node: int = _f(1, "training processes on this node (one per GPU); 1 = train in this process")
    nnodes: int = _f(1, "nodes taking part; > 1 is started by hand with torchrun on every node (docs/scaling.md)")
    rdzv_endpoint: str = _f("", "HOST:PORT of the rendezvous when nnodes > 1")

    def __post_init__(self) -> None:
        _check(self.nproc_per_node >= 1, "train.nproc_per_node", self.nproc_per_node, "must be >= 1")
        _check(self.nnodes >= 1, "train.nnodes", self.nnodes, "must be >= 1")
        _check(self.nnodes == 1 or bool(self.rdzv_endpoint), "train.rdzv_endpoint", self.rdzv_endpoint,
               "is required when nnodes > 1")


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    search: SearchScale = _f(SearchScale(), "search workers")
    train: TrainScale = _f(TrainScale(), "training processes")


def load_scale_config(path: str | Path | None = None, overrides: dict | None = None) -> ScaleConfig:
    """Defaults, then the YAML at `path`, then `overrides` (nested dict); strict, errors name file and key."""
    from treesearch.config import load_config

    return load_config(ScaleConfig, path, overrides)
