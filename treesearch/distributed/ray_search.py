"""Search many problems on many workers (Ray actors or this process), journaled per chunk.

    result = run_search_distributed("mcts", "arithmetic", problems, MCTSConfig(simulations=16),
                                    executor="ray", num_workers=4, model="embedded", seed=0,
                                    journal="runs/mcts/chunks.jsonl")
    write_run("runs/mcts", result, get_task("arithmetic"), problems, info)   # trees.jsonl, summary.json

The problems are cut into chunks of ``chunk_size`` in the order given (chunk k =
problems[k·chunk_size : (k+1)·chunk_size]). A worker (`SearchWorker`) owns a
backend and searches one chunk at a time with `run_search`, after clearing its
prefix cache. That makes a chunk's trees a function of the chunk alone, bit for
bit: the HF backend's samples (token ids) do not depend on the batch, but its
log-probabilities and priors do, in the last float bits, on what else is in the
batch and what the cache holds. So the local executor and the Ray executor, any
number of workers, any worker deaths and any resumption give identical trees for
the same chunk_size, seeds, model, device and dtype (tests/test_ray_search.py).

The journal (``journal=``) is problem-id keyed JSONL: one line per problem,
``{"problem_id", "chunk", "chunk_size", "index", "tree", "cost"?}``, the whole
chunk appended by the driver in one write and fsynced as its result arrives. A
chunk counts as recorded only when all its lines are there, and it is recorded
at most once; a run pointed at an existing journal skips the recorded chunks
(resume), drops a torn or partial chunk and redoes it. ``<journal>.meta.json``
holds the search spec; a journal of a different search is refused.

Costs: ``result.cost`` adds the chunks' costs (wall_s is summed worker time, not
elapsed time); journaled chunks keep their cost, so a resumed run reports the
whole search.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from treesearch.backends.config import VLLMConfig
from treesearch.distributed.executors import Executor, ExecutorStats, LocalExecutor, RayExecutor, make_executor
from treesearch.search.result import Cost, SearchResult
from treesearch.search.values import RolloutConfig, ValueConfig
from treesearch.tree import ROOT, Tree


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """Everything a worker needs to build its backend and search a chunk (picklable, JSON-able).

    config: the algorithm's frozen config (`treesearch.search.runner.CONFIGS[algo]`).
    backend: "hf" or "vllm"; vllm: the engine settings when it is vLLM (`VLLMConfig`).
    threads: torch CPU threads of the worker; 0 leaves the process's setting alone.
    """

    algo: str
    task: str
    config: Any
    value: str | ValueConfig | None = None
    rollout: RolloutConfig = RolloutConfig()
    batch_size: int = 32
    model: str = "embedded"
    backend: str = "hf"
    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0
    vllm: VLLMConfig = VLLMConfig()

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["config"] = {"type": type(self.config).__name__, **dataclasses.asdict(self.config)}
        d.pop("threads")  # does not change results
        d["vllm"].pop("verbose")
        if self.backend != "vllm":
            d.pop("vllm")
        return json.loads(json.dumps(d))


def build_backend(spec: SearchSpec):
    """The backend named by `spec` (imports torch / transformers / vLLM here, in the worker)."""
    from treesearch.backends.config import make_backend

    return make_backend(spec.backend, spec.model, device=spec.device, dtype=spec.dtype, vllm=spec.vllm,
                        seed=getattr(spec.config, "seed", 0))


class SearchWorker:
    """Owns one backend; `run(problems)` searches a chunk and returns JSON-able records.

    Returns ``{"trees": [Tree.to_json() per problem, in order], "cost": Cost fields}``; each
    tree's ``meta["search"]`` carries ``selected`` and ``correct`` like `write_run` writes them.
    """

    def __init__(self, spec: SearchSpec):
        from tasks import get_task

        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.task = get_task(spec.task)
        self.backend = build_backend(spec)

    def run(self, problems: Sequence[Any]) -> dict[str, Any]:
        from treesearch.search.runner import run_search

        spec = self.spec
        self.backend.reset_cache()  # a chunk's floats must not depend on the chunks before it
        result = run_search(spec.algo, self.backend, self.task, problems, spec.config, value=spec.value,
                            rollout=spec.rollout, batch_size=spec.batch_size)
        trees = []
        for p, t, s in zip(problems, result.trees, result.selected):
            t.meta.setdefault("search", {})
            ok = s != ROOT and float(self.task.score(p, t.text_of(s))) >= 0.5
            t.meta["search"].update(selected=int(s), correct=bool(ok))
            trees.append(t.to_json())
        return {"trees": trees, "cost": dataclasses.asdict(result.cost)}


def chunk_problems(problems: Sequence[Any], chunk_size: int) -> list[tuple[int, list[Any]]]:
    """[(chunk index, problems)] in order; ValueError on duplicate problem ids."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"problem id {dup!r} appears more than once")
    return [(k, list(problems[s : s + chunk_size])) for k, s in enumerate(range(0, len(problems), chunk_size))]


class ChunkJournal:
    """Problem-id keyed JSONL of finished chunks (see the module docstring), driver side only.

    `load(chunks)` reads what is recorded (complete chunks whose problem ids match `chunks`),
    rewriting the file without torn or partial chunks; `record(k, problems, result)` appends a
    chunk once (a second result for the same chunk is ignored and returns False).
    """

    def __init__(self, path: str | Path, spec: dict[str, Any]):
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".meta.json")
        self.spec = spec
        self.done: dict[int, dict[str, Any]] = {}  # chunk -> {"trees": [...], "cost": {...}}

    def load(self, chunks: Sequence[tuple[int, list[Any]]]) -> None:
        from treesearch.io import atomic_write_text

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.meta_path.is_file():
            old = json.loads(self.meta_path.read_text())
            if old != self.spec:
                changed = sorted(k for k in set(old) | set(self.spec) if old.get(k) != self.spec.get(k))
                raise ValueError(f"{self.meta_path}: journal of a different search (differs in "
                                 f"{', '.join(changed)}); use a fresh journal")
        else:
            if self.path.is_file():
                raise ValueError(f"{self.path}: journal without {self.meta_path.name}; use a fresh journal")
            atomic_write_text(self.meta_path, json.dumps(self.spec, indent=1) + "\n")
        if not self.path.is_file():
            return
        want = {k: [p.id for p in ps] for k, ps in chunks}
        lines: dict[int, dict[int, dict]] = {}
        raw = self.path.read_text(encoding="utf-8").split("\n")
        for lineno, line in enumerate(raw, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if lineno == len(raw):  # a torn last line: its chunk was never recorded
                    break
                raise ValueError(f"{self.path}:{lineno}: bad JSON") from None
            where = f"{self.path}:{lineno}"
            for field, kind in (("problem_id", str), ("chunk", int), ("chunk_size", int), ("index", int),
                                ("tree", dict)):
                if not isinstance(rec.get(field), kind):
                    raise ValueError(f"{where}: field {field!r} missing or not {kind.__name__}")
            k = rec["chunk"]
            if k in want and rec["chunk_size"] == len(want[k]) and 0 <= rec["index"] < len(want[k]) \
                    and want[k][rec["index"]] == rec["problem_id"]:
                lines.setdefault(k, {}).setdefault(rec["index"], rec)
            elif k in want:
                raise ValueError(f"{where}: problem {rec['problem_id']!r} is not problem {rec['index']} of chunk "
                                 f"{k}; the journal was written for other problems or another chunk_size")
        for k, got in lines.items():
            if len(got) == len(want[k]):
                recs = [got[i] for i in range(len(want[k]))]
                self.done[k] = {"trees": [r["tree"] for r in recs], "cost": recs[0].get("cost", {})}
        # keep exactly the complete chunks, so later appends follow whole lines
        text = "".join(_chunk_lines(k, want_ids, self.done[k]) for k, want_ids in want.items() if k in self.done)
        atomic_write_text(self.path, text)

    def record(self, k: int, problems: Sequence[Any], result: dict[str, Any]) -> bool:
        if k in self.done:
            return False
        text = _chunk_lines(k, [p.id for p in problems], result)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)  # one write per chunk; a crash leaves at most a partial chunk, dropped on load
            f.flush()
            os.fsync(f.fileno())
        self.done[k] = result
        return True


def _chunk_lines(k: int, ids: Sequence[str], result: dict[str, Any]) -> str:
    trees = result["trees"]
    assert len(trees) == len(ids), f"chunk {k}: {len(trees)} trees for {len(ids)} problems"
    out = []
    for i, (pid, tree) in enumerate(zip(ids, trees)):
        assert tree["problem_id"] == pid, f"chunk {k}: tree {i} is for {tree['problem_id']!r}, expected {pid!r}"
        rec: dict[str, Any] = {"problem_id": pid, "chunk": k, "chunk_size": len(ids), "index": i}
        if i == 0:
            rec["cost"] = result["cost"]
        rec["tree"] = tree
        out.append(json.dumps(rec, separators=(",", ":")) + "\n")
    return "".join(out)


@dataclasses.dataclass
class DistributedRun:
    """How a `run_search_distributed` call went: chunks in all, chunks taken from the journal,
    and the executor's counts (items run, retries after lost workers, re-created actors)."""

    chunks: int
    resumed_chunks: int
    executor: ExecutorStats


@dataclasses.dataclass
class DistributedResult(SearchResult):
    """A `SearchResult` (trees in problem order, selected nodes, summed cost) plus `run`."""

    run: DistributedRun | None = None


def run_search_distributed(
    algo: str,
    task_name: str,
    problems: Sequence[Any],
    config=None,
    *,
    executor: str | Executor = "local",
    num_workers: int = 1,
    model: str = "embedded",
    seed: int | None = None,
    value: str | ValueConfig | None = None,
    rollout: RolloutConfig = RolloutConfig(),
    batch_size: int = 32,
    chunk_size: int | None = None,
    journal: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    backend: str = "hf",
    vllm: VLLMConfig = VLLMConfig(),
    threads: int = 0,
    progress: Callable[[str], None] | None = None,
    **ray_options: Any,
) -> DistributedResult:
    """Search `problems` of task `task_name` with `algo`, chunk by chunk on an executor.

    executor: "local" (this process), "ray" (``num_workers`` actors; `ray_options` go to
        `RayExecutor`: address, num_cpus, num_gpus, max_restarts, max_attempts, ...) or an
        `Executor` instance. seed: replaces ``config.seed`` when given.
    chunk_size: problems per work item (default `batch_size`); results depend on it, not on the
        executor. journal: JSONL path for per-chunk results and resume (None: keep in memory).
    threads: torch threads per worker (0: Ray workers get their num_cpus, local leaves it).
    Returns a `DistributedResult`: trees in problem order, and ``run`` (a `DistributedRun`).
    """
    config = _algo_config(algo, config, seed)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunk_size = chunk_size or batch_size
    chunks = chunk_problems(list(problems), chunk_size)
    executor, threads = _executor(executor, num_workers, threads, ray_options)
    spec = SearchSpec(algo=algo, task=task_name, config=config, value=value, rollout=rollout,
                      batch_size=batch_size, model=model, backend=backend, device=device, dtype=dtype,
                      threads=threads, vllm=vllm)
    book = ChunkJournal(journal, {**spec.to_json(), "chunk_size": chunk_size}) if journal else None
    results = _Results(chunks, book, algo, progress)
    resumed = len(results.done)
    todo = [(k, ps) for k, ps in chunks if k not in results.done]
    stats = executor.map(functools.partial(SearchWorker, spec), todo, results.add)
    trees, selected, cost = _gather(chunks, results.done)
    return DistributedResult(trees, selected, cost, DistributedRun(len(chunks), resumed, stats))


class _Results:
    """The driver's chunk results: those the journal already holds (`book`, when given), then each
    delivered one recorded once, whatever the executor delivers, journaled and reported to `progress`."""

    def __init__(self, chunks: Sequence[tuple[int, list[Any]]], book: ChunkJournal | None, algo: str,
                 progress: Callable[[str], None] | None):
        self.by_key, self.book, self.algo, self.progress = dict(chunks), book, algo, progress
        self.done: dict[int, dict[str, Any]] = {}
        self.finished = self.solved = 0  # running totals over `done`, for the progress line
        if book is not None:
            book.load(chunks)
            for k, result in book.done.items():
                self._count(k, result)
        self.n_problems = sum(len(ps) for _, ps in chunks)
        self.t0 = time.perf_counter()

    def _count(self, k: int, result: dict[str, Any]) -> None:
        self.done[k] = result
        self.finished += len(self.by_key[k])
        self.solved += sum(t["meta"]["search"]["correct"] for t in result["trees"])

    def add(self, k: int, result: dict[str, Any]) -> None:
        if k in self.done:
            return
        if self.book is not None:
            self.book.record(k, self.by_key[k], result)
        self._count(k, result)
        if self.progress:
            self.progress(f"{self.algo}: {self.finished}/{self.n_problems} problems, {self.solved} solved, "
                          f"{time.perf_counter() - self.t0:.1f}s")


def _algo_config(algo: str, config, seed: int | None):
    """`config` (default: `algo`'s defaults) checked against `algo`, with `seed` put in when given."""
    from treesearch.search.runner import CONFIGS

    if algo not in CONFIGS:
        raise ValueError(f"unknown algorithm {algo!r}; expected one of {', '.join(CONFIGS)}")
    config = config if config is not None else CONFIGS[algo]()
    if not isinstance(config, CONFIGS[algo]):
        raise ValueError(f"algorithm {algo!r} takes a {CONFIGS[algo].__name__}, got {type(config).__name__}")
    if seed is not None and "seed" in {f.name for f in dataclasses.fields(config)}:
        config = dataclasses.replace(config, seed=seed)
    return config


def _executor(executor: str | Executor, num_workers: int, threads: int, ray_options: dict) -> tuple[Executor, int]:
    """The executor a name asks for (Ray workers' torch threads default to their num_cpus), or the
    instance given, which takes no Ray options."""
    if isinstance(executor, str):
        if executor == "ray" and not threads:
            threads = max(1, int(ray_options.get("num_cpus", 1)))
        return make_executor(executor, num_workers, **ray_options), threads
    if ray_options:
        raise ValueError(f"ray options {sorted(ray_options)} apply only when executor is a name")
    return executor, threads


def _gather(chunks: list, done: dict[int, dict[str, Any]]) -> tuple[list[Tree], list[int], Cost]:
    """The chunks' trees in problem order, their selected nodes and the summed cost."""
    missing = [k for k, _ in chunks if k not in done]
    assert not missing, f"executor finished without results for chunks {missing}"
    trees: list[Tree] = []
    selected: list[int] = []
    cost = Cost()
    for k, ps in chunks:
        r = done[k]
        for p, d in zip(ps, r["trees"]):
            tree = Tree.from_json(d, where=f"chunk {k} problem {p.id}")
            trees.append(tree)
            selected.append(int(tree.meta["search"]["selected"]))
        cost = cost + Cost.from_dict(r["cost"])
    return trees, selected, cost


def search_options(scale, backend: str = "hf", vllm: VLLMConfig = VLLMConfig()) -> dict[str, Any]:
    """`run_search_distributed` keyword arguments from a `config.SearchScale` (a ScaleConfig's ``search``)
    and the run's backend (a loop config's top-level ``backend`` and ``vllm``).

        result = run_search_distributed(algo, task, problems, cfg, model=..., seed=...,
                                        **search_options(load_scale_config(path).search))
    """
    opts: dict[str, Any] = {"executor": scale.executor, "num_workers": scale.num_workers,
                            "chunk_size": scale.chunk_size, "backend": backend}
    if backend == "vllm":
        if vllm.tensor_parallel_size > 1 and scale.executor == "ray":
            # the engine's workers are processes inside the actor, on the GPUs Ray gave the actor
            vllm = dataclasses.replace(vllm, distributed_executor_backend="mp")
        opts["vllm"] = vllm
    if scale.executor == "ray":
        opts.update(num_cpus=scale.cpus_per_worker, num_gpus=scale.gpus_per_worker, max_restarts=scale.max_restarts,
                    max_attempts=scale.max_attempts, address=scale.ray_address or None)
        opts["threads"] = max(1, int(scale.cpus_per_worker))
    return opts


__all__ = [
    "ChunkJournal",
    "DistributedResult",
    "DistributedRun",
    "LocalExecutor",
    "RayExecutor",
    "SearchSpec",
    "SearchWorker",
    "build_backend",
    "chunk_problems",
    "run_search_distributed",
    "search_options",
]
