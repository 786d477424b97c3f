"""Scale-out: search on many workers (in process or Ray actors) and data-parallel training.

    from treesearch.distributed import run_search_distributed
    result = run_search_distributed("mcts", "arithmetic", problems, MCTSConfig(), executor="ray",
                                    num_workers=4, journal="runs/x/chunks.jsonl")

Ray is an optional extra (``pip install treesearch[ray]``), imported only when
the Ray executor runs; importing this package imports numpy and treesearch only.
Data-parallel Step-DPO lives in `treesearch.train.ddp` (torchrun). See docs/scaling.md.
"""
from treesearch.distributed.config import ScaleConfig, SearchScale, TrainScale, load_scale_config
from treesearch.distributed.executors import Executor, ExecutorStats, LocalExecutor, RayExecutor, make_executor
from treesearch.distributed.ray_search import (
    ChunkJournal,
    DistributedResult,
    DistributedRun,
    SearchSpec,
    SearchWorker,
    chunk_problems,
    run_search_distributed,
    search_options,
)

__all__ = [
    "ChunkJournal",
    "DistributedResult",
    "DistributedRun",
    "Executor",
    "ExecutorStats",
    "LocalExecutor",
    "RayExecutor",
    "ScaleConfig",
    "SearchScale",
    "SearchSpec",
    "SearchWorker",
    "TrainScale",
    "chunk_problems",
    "load_scale_config",
    "make_executor",
    "run_search_distributed",
    "search_options",
]
