"""Executors: run many independent work items on workers, in process or on Ray actors.

One small interface, two implementations:

    executor.map(factory, items, on_result) -> ExecutorStats

* ``factory`` is a picklable zero-argument callable building a *worker* (an
  object with ``run(payload) -> result``); a worker is built once per process
  and may hold something expensive (a model, a vLLM engine).
* ``items`` is a sequence of ``(key, payload)``; every key is handed to
  ``on_result(key, result)`` exactly once, in the driver, as its item completes
  (completion order, not submission order). Recording results is the caller's
  business (see `ray_search.ChunkJournal`): the executor never writes files.

`LocalExecutor` builds one worker in this process and runs the items in order;
it is what laptops and tests use, and it imports nothing.

`RayExecutor` starts ``num_workers`` Ray actors (``num_cpus`` each; ``num_gpus``
each only when the cluster has GPUs, because a GPU request on a CPU-only cluster
stays pending forever), keeps one item in flight per actor, and survives lost
workers:

* an actor process that dies (crash, OOM kill, node loss, ``ray.kill``) fails
  its in-flight item with a `RayActorError`; the item goes back to the front of
  the queue and runs again, on whichever actor is free next (nothing is lost);
* the dead actor is restarted by Ray (``max_restarts``); once Ray gives up on
  it (restarts used up, or killed with ``no_restart=True``) the driver creates a
  fresh actor in its slot, at most ``max_restarts + 1`` times per slot;
* an item is tried at most ``max_attempts`` times, so a payload that kills
  every worker it touches (a poison pill) stops the run with an error naming
  it instead of looping;
* an ordinary exception raised by ``run`` (a bug or bad input, deterministic)
  is not retried: it propagates to the caller at once.

Ray calls are made with ``max_task_retries=0``: retries are the driver's, so the
driver always knows which items were re-run (`ExecutorStats.retried`), and a
result is delivered only from the attempt that returned. Ray is imported
lazily; the rest of treesearch never imports it (``pip install treesearch[ray]``).

``chaos_marker`` is a fault-injection switch for tests and drills: when that
file exists as an actor finishes an item, the actor claims it (atomic rename,
so exactly one actor does) and exits its process before returning the result,
i.e. the worker is lost mid-item and its work has to be redone.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import time
from typing import Any, Callable, Hashable, Protocol, Sequence

Item = tuple[Hashable, Any]
OnResult = Callable[[Hashable, Any], None]


class Worker(Protocol):
    def run(self, payload: Any) -> Any: ...


@dataclasses.dataclass
class ExecutorStats:
    """What a `map` call did.

    items: results delivered; attempts: item runs started (items + retried);
    retried: items re-queued after their worker died; worker_failures: worker
    deaths seen (crashed mid-item or found dead when pinged); recreated: actors
    the driver created anew after Ray gave up restarting them; workers: worker
    slots used; seconds: wall time of the call.
    """

    items: int = 0
    attempts: int = 0
    retried: int = 0
    worker_failures: int = 0
    recreated: int = 0
    workers: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


class Executor(Protocol):
    """Runs items on workers built by `factory`; see the module docstring."""

    num_workers: int

    def map(self, factory: Callable[[], Worker], items: Sequence[Item], on_result: OnResult) -> ExecutorStats: ...


def _check_items(items: Sequence[Item]) -> list[Item]:
    items = list(items)
    keys = [k for k, _ in items]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"executor items must have distinct keys; {dup!r} appears more than once")
    return items


class LocalExecutor:
    """One worker in this process, items in order. No retries: an exception propagates."""

    num_workers = 1

    def map(self, factory: Callable[[], Worker], items: Sequence[Item], on_result: OnResult) -> ExecutorStats:
        items = _check_items(items)
        stats = ExecutorStats(workers=1)
        t0 = time.perf_counter()
        if items:
            worker = factory()
            for key, payload in items:
                stats.attempts += 1
                on_result(key, worker.run(payload))
                stats.items += 1
        stats.seconds = time.perf_counter() - t0
        return stats


class _Host:
    """The Ray actor body: builds the worker once (again after each restart), runs payloads."""

    def __init__(self, factory: Callable[[], Worker], chaos_marker: str | None = None):
        self.worker = factory()
        self.chaos_marker = chaos_marker

    def ready(self) -> int:
        return os.getpid()

    def run(self, payload: Any) -> Any:
        result = self.worker.run(payload)
        if self.chaos_marker and _claim(self.chaos_marker):
            os._exit(1)  # lost mid-item: the result never reaches the driver
        return result


def _claim(marker: str) -> bool:
    """Atomically take the marker file; True for exactly one caller."""
    try:
        os.rename(marker, f"{marker}.claimed-{os.getpid()}")
        return True
    except OSError:
        return False


@dataclasses.dataclass
class _Slot:
    actor: Any
    generation: int = 0
    state: str = "starting"  # starting -> idle <-> busy; any -> starting after a failure


class RayExecutor:
    """``num_workers`` Ray actors, one item in flight each; see the module docstring.

    address: Ray cluster to join ("auto", "ray://host:10001", ...); None joins the cluster
        Ray is already connected to, or starts a local one (``ray.init()``).
    num_cpus / num_gpus: resources per actor; num_gpus None = 1 when the cluster has GPUs, else 0
        (a vLLM engine with tensor parallelism needs num_gpus = tensor_parallel_size).
    max_restarts: Ray restarts per actor; then the driver re-creates it, at most max_restarts + 1
        times per slot. max_attempts: runs per item before the whole map fails.
    name_prefix: name the actors ``{prefix}-{slot}-{generation}`` (findable with ray.get_actor).
    runtime_env, init_kwargs: passed to the actors / to ``ray.init`` when this executor starts Ray.
    """

    def __init__(
        self,
        num_workers: int = 1,
        *,
        address: str | None = None,
        num_cpus: float = 1.0,
        num_gpus: float | None = None,
        max_restarts: int = 2,
        max_attempts: int = 3,
        name_prefix: str | None = None,
        runtime_env: dict | None = None,
        init_kwargs: dict | None = None,
        chaos_marker: str | None = None,
    ):
        if num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        if max_restarts < 0 or max_attempts < 1:
            raise ValueError(f"max_restarts must be >= 0 and max_attempts >= 1, got {max_restarts}, {max_attempts}")
        self.num_workers = num_workers
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_restarts = max_restarts
        self.max_attempts = max_attempts
        self.name_prefix = name_prefix
        self.runtime_env = runtime_env
        self.init_kwargs = dict(init_kwargs or {})
        self.chaos_marker = chaos_marker

    # -- cluster ------------------------------------------------------------------------------
    def _ray(self):
        try:
            import ray
        except ImportError:
            raise ValueError("executor 'ray' needs Ray: pip install 'ray>=2.40' (the treesearch[ray] extra)") from None
        started = False
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
            started = True
        return ray, started

    def _gpus(self, ray) -> float:
        if self.num_gpus is not None:
            return float(self.num_gpus)
        # decide from the cluster, not the driver: a CPU head node may drive GPU workers
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    # -- map ----------------------------------------------------------------------------------
    def map(self, factory: Callable[[], Worker], items: Sequence[Item], on_result: OnResult) -> ExecutorStats:
        items = _check_items(items)
        stats = ExecutorStats()
        t0 = time.perf_counter()
        if not items:
            return stats
        ray, started = self._ray()
        from ray.exceptions import RayActorError, WorkerCrashedError

        lost = (RayActorError, WorkerCrashedError)
        fleet = _Fleet(self, ray, factory, items, stats)
        try:
            while fleet.queue or fleet.running():
                fleet.dispatch()
                if not fleet.inflight:  # every slot gave up and nothing is running
                    raise RuntimeError("no live Ray workers left")
                (ref,), _ = ray.wait(list(fleet.inflight), num_returns=1)
                kind, i, item = fleet.inflight.pop(ref)
                try:
                    value = ray.get(ref)
                except lost as e:
                    fleet.lost(kind, i, item, e)
                    continue
                fleet.slots[i].state = "idle"
                if kind == "run":
                    on_result(item[0], value)
                    stats.items += 1
        finally:
            fleet.close()
            if started:
                ray.shutdown()
        stats.seconds = time.perf_counter() - t0
        return stats


class _Fleet:
    """One `RayExecutor.map`'s actors (a slot each), the items still queued and the calls in flight."""

    def __init__(self, ex: RayExecutor, ray, factory: Callable[[], Worker], items: list[Item], stats: ExecutorStats):
        self.ex, self.ray, self.factory, self.stats = ex, ray, factory, stats
        self.remote = ray.remote(_Host)
        self.gpus = ex._gpus(ray)
        self.queue: collections.deque[Item] = collections.deque(items)
        self.attempts: collections.Counter = collections.Counter()
        self.inflight: dict[Any, tuple[str, int, Item | None]] = {}  # ref -> (kind, slot, item)
        n = min(ex.num_workers, len(items))
        stats.workers = n
        self.slots = [_Slot(self.spawn(i, 0)) for i in range(n)]
        for i in range(n):
            self.ping(i)

    def spawn(self, slot: int, generation: int):
        ex = self.ex
        opts: dict[str, Any] = dict(num_cpus=ex.num_cpus, num_gpus=self.gpus, max_restarts=ex.max_restarts,
                                    max_task_retries=0)
        if ex.name_prefix:
            opts["name"] = f"{ex.name_prefix}-{slot}-{generation}"
        if ex.runtime_env:
            opts["runtime_env"] = ex.runtime_env
        return self.remote.options(**opts).remote(self.factory, ex.chaos_marker)

    def ping(self, i: int) -> None:
        # retried by Ray through a restart, so it answers once the actor is back (its worker
        # rebuilt) and fails only when Ray has given up on the actor
        self.inflight[self.slots[i].actor.ready.options(max_task_retries=-1).remote()] = ("ready", i, None)
        self.slots[i].state = "starting"

    def running(self) -> bool:
        return any(kind == "run" for kind, _, _ in self.inflight.values())

    def dispatch(self) -> None:
        """The next queued items to the idle slots."""
        for i, s in enumerate(self.slots):
            if s.state != "idle" or not self.queue:
                continue
            key, payload = self.queue.popleft()
            if self.attempts[key] >= self.ex.max_attempts:
                raise RuntimeError(f"item {key!r} was lost with its worker {self.attempts[key]} times "
                                   f"(max_attempts={self.ex.max_attempts}); giving up")
            self.attempts[key] += 1
            self.stats.attempts += 1
            self.inflight[s.actor.run.remote(payload)] = ("run", i, (key, payload))
            s.state = "busy"

    def lost(self, kind: str, i: int, item: Item | None, e: Exception) -> None:
        """Slot i's actor died under a call: its item goes back first in the queue (so results arrive
        roughly in order); a failed ping means Ray gave the actor up, and the slot gets a new one."""
        self.stats.worker_failures += 1
        if getattr(e, "actor_init_failed", False):  # e.g. a bad model path: retrying cannot help
            cause = [ln for ln in str(e).splitlines() if ln.strip()][-1].strip()
            raise RuntimeError(f"Ray worker {i} failed to start: {cause}") from e
        s = self.slots[i]
        if kind == "run":
            self.queue.appendleft(item)
            self.stats.retried += 1
        else:
            if s.generation > self.ex.max_restarts:
                raise RuntimeError(f"Ray worker slot {i} was re-created {s.generation} times and died "
                                   "again; giving up") from e
            self.ray.kill(s.actor, no_restart=True)
            s.generation += 1
            s.actor = self.spawn(i, s.generation)
            self.stats.recreated += 1
        self.ping(i)  # reuse the actor once it answers (it may be restarting under max_restarts)

    def close(self) -> None:
        for s in self.slots:
            try:
                self.ray.kill(s.actor, no_restart=True)
            except Exception:  # already gone; nothing left to free
                pass


def make_executor(name: str, num_workers: int = 1, **ray_options: Any) -> Executor:
    """'local' -> `LocalExecutor` (num_workers must be 1); 'ray' -> `RayExecutor(num_workers, **ray_options)`."""
    if name == "local":
        if ray_options:
            raise ValueError(f"options {', '.join(sorted(ray_options))} apply only to executor 'ray'")
        if num_workers != 1:
            raise ValueError(f"executor 'local' runs one worker in this process; got num_workers={num_workers} "
                             "(use executor 'ray' for more)")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(num_workers, **ray_options)
    raise ValueError(f"unknown executor {name!r}; expected 'local' or 'ray'")
