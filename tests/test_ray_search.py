"""Distributed search: the local executor and a real local Ray cluster give identical trees, even when
workers die mid-run; the journal records every chunk exactly once and resumes after a crash.

Ray runs as a real 2-CPU local cluster (Ray >= 2.54 has no local_mode), started once for the module
and shut down in the fixture's finalizer; actors run the real embedded policy on the CPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from treesearch.distributed import (
    RayExecutor,
    chunk_problems,
    load_scale_config,
    make_executor,
    run_search_distributed,
    search_options,
)
from treesearch.search.mcts import MCTSConfig

ROOT = Path(__file__).resolve().parents[1]
CFG = MCTSConfig(simulations=6, width=2)


def problems(n: int):
    from tasks import get_task

    return get_task("arithmetic").problems("test", n, seed=0, n_ops=3)


def by_id(result) -> list[str]:
    """Trees as JSON text, ordered by problem id: what 'identical results' means here."""
    return [json.dumps(t.to_json(), sort_keys=True) for t in sorted(result.trees, key=lambda t: t.problem_id)]


def assert_same_trees(a, b, atol: float = 1e-5) -> None:
    """Trees equal in everything searched (ids, text, shape, visits, verdicts, selections) and in their
    floats within `atol`. Another process's logits agree only to the last bits when its torch state
    differs from this one's, which a whole test session can change (1 against 2 intra-op threads moves
    a log-prob by 2e-6 here); no sampled token moves."""
    import numpy as np

    ta = [t.to_json() for t in sorted(a.trees, key=lambda t: t.problem_id)]
    tb = [t.to_json() for t in sorted(b.trees, key=lambda t: t.problem_id)]
    assert len(ta) == len(tb)
    floats = ("logprobs", "prior", "value", "value_sum", "reward")

    def flat(v) -> np.ndarray:  # logprobs is one list per node
        return np.asarray([x for row in v for x in row] if v and isinstance(v[0], list) else v, dtype=float)

    for x, y in zip(ta, tb):
        assert {k: v for k, v in x.items() if k not in floats} == {k: v for k, v in y.items() if k not in floats}
        for k in floats:
            fx, fy = flat(x[k]), flat(y[k])
            assert fx.shape == fy.shape and np.allclose(fx, fy, atol=atol, rtol=0), (x["problem_id"], k)


def journal_ids(path: Path) -> list[str]:
    return [json.loads(line)["problem_id"] for line in path.read_text().splitlines()]


# ----------------------------------------------------------------- without Ray


def test_core_does_not_import_ray_or_torch():
    code = ("import sys, treesearch.distributed, treesearch.search, treesearch.train.ddp, treesearch.loop; "
            "bad = [m for m in ('ray', 'torch', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_chunking_and_executor_choice_are_checked():
    ps = problems(5)
    chunks = chunk_problems(ps, 2)
    assert [(k, [p.id for p in c]) for k, c in chunks] == [
        (0, [ps[0].id, ps[1].id]), (1, [ps[2].id, ps[3].id]), (2, [ps[4].id])]
    with pytest.raises(ValueError, match="appears more than once"):
        chunk_problems([ps[0], ps[1], ps[0]], 2)
    with pytest.raises(ValueError, match="executor 'local' runs one worker"):
        make_executor("local", 2)
    with pytest.raises(ValueError, match="options max_restarts apply only to executor 'ray'"):
        make_executor("local", 1, max_restarts=2)
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        make_executor("dask")


def test_scale_configs_load_strictly(tmp_path):
    from treesearch.loop import load_loop_config

    node = load_loop_config(ROOT / "configs" / "multigpu_node.yaml").scale  # loop configs with a `scale:` section
    run = load_loop_config(ROOT / "configs" / "ray_multinode.yaml")
    multi = run.scale
    assert node.search.executor == "ray" and node.train.nproc_per_node > 1
    assert run.backend == "vllm" and multi.search.ray_address == "auto"
    opts = search_options(multi.search, run.backend, run.vllm)
    assert opts["executor"] == "ray" and opts["address"] == "auto" and opts["num_gpus"] == 2
    assert opts["backend"] == "vllm" and opts["vllm"].tensor_parallel_size == 2
    assert opts["vllm"].distributed_executor_backend == "mp"  # the engine's workers live inside the actor
    assert search_options(load_scale_config(None).search) == {
        "executor": "local", "num_workers": 1, "chunk_size": 32, "backend": "hf"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  executer: ray\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown config key 'search.executer'"):
        load_scale_config(bad)
    bad.write_text("search:\n  executor: local\n  num_workers: 4\n")
    with pytest.raises(ValueError, match="num_workers=4: must be 1 with executor local"):
        load_scale_config(bad)


def test_local_journal_resumes_after_a_torn_partial_chunk(tmp_path):
    ps = problems(5)
    full = run_search_distributed("mcts", "arithmetic", ps, CFG, seed=1, chunk_size=2, journal=tmp_path / "a.jsonl")
    assert [t.problem_id for t in full.trees] == [p.id for p in ps]
    assert full.run.chunks == 3 and full.run.executor.items == 3
    lines = (tmp_path / "a.jsonl").read_text().splitlines(keepends=True)
    assert journal_ids(tmp_path / "a.jsonl") == [p.id for p in ps]

    # what a crash leaves: chunk 0 whole, chunk 1 half written, a torn line
    b = tmp_path / "b.jsonl"
    (tmp_path / "b.jsonl.meta.json").write_text((tmp_path / "a.jsonl.meta.json").read_text())
    b.write_text("".join(lines[:3]) + lines[3][:40])
    resumed = run_search_distributed("mcts", "arithmetic", ps, CFG, seed=1, chunk_size=2, journal=b)
    assert resumed.run.resumed_chunks == 1 and resumed.run.executor.items == 2  # chunks 1 and 2 redone
    assert by_id(resumed) == by_id(full)
    assert sorted(journal_ids(b)) == sorted(p.id for p in ps)  # each problem once
    assert resumed.cost.calls == full.cost.calls  # the journaled chunk kept its cost

    again = run_search_distributed("mcts", "arithmetic", ps, CFG, seed=1, chunk_size=2, journal=b)
    assert again.run.executor.items == 0 and by_id(again) == by_id(full)
    with pytest.raises(ValueError, match="journal of a different search .*config"):
        run_search_distributed("mcts", "arithmetic", ps, CFG, seed=2, chunk_size=2, journal=b)
    with pytest.raises(ValueError, match="written for other problems or another chunk_size"):
        run_search_distributed("mcts", "arithmetic", ps[1:], CFG, seed=1, chunk_size=2, journal=b)


# ----------------------------------------------------------------- on a local Ray cluster


@pytest.fixture(scope="module")
def ray_cluster():
    import ray  # the treesearch[ray] extra; these tests need it installed

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2)
    yield ray
    ray.shutdown()


def test_ray_matches_local_when_workers_die_mid_run(ray_cluster, tmp_path):
    ray = ray_cluster
    ps = problems(8)
    local = run_search_distributed("mcts", "arithmetic", ps, CFG, seed=1, chunk_size=1,
                                   journal=tmp_path / "local.jsonl")

    # one worker exits its process after searching a chunk, before returning it (Ray restarts it) ...
    marker = tmp_path / "crash-once"
    marker.touch()
    journal = tmp_path / "ray.jsonl"
    killed: list[str] = []

    def kill_when_running() -> None:
        # ... and once the first chunk is recorded, the test kills worker 1 for good (the driver re-creates it)
        deadline = time.time() + 120
        while time.time() < deadline and not (journal.is_file() and journal.stat().st_size):
            time.sleep(0.02)
        ray.kill(ray.get_actor("ts-test-1-0"), no_restart=True)
        killed.append("ts-test-1-0")

    killer = threading.Thread(target=kill_when_running, daemon=True)
    killer.start()
    executor = RayExecutor(2, num_cpus=1, max_restarts=1, name_prefix="ts-test", chaos_marker=str(marker))
    distributed = run_search_distributed("mcts", "arithmetic", ps, CFG, seed=1, chunk_size=1, executor=executor,
                                         journal=journal)
    killer.join(timeout=5)

    assert killed and not marker.exists() and len(list(tmp_path.glob("crash-once.claimed-*"))) == 1
    stats = distributed.run.executor
    assert stats.retried >= 1 and stats.worker_failures >= 2 and stats.recreated >= 1, stats
    assert stats.items == 8 and stats.attempts == 8 + stats.retried
    # identical results, nothing lost or duplicated
    assert [t.problem_id for t in distributed.trees] == [p.id for p in ps]
    assert_same_trees(distributed, local)
    assert sorted(journal_ids(journal)) == sorted(p.id for p in ps)
    assert distributed.selected == local.selected
    # the chunk lost with its worker was searched twice, but recorded and costed once
    assert distributed.cost.decode_tokens == local.cost.decode_tokens


class Toy:
    """A model-free worker for executor logic: doubles payloads, or dies / raises on request."""

    def run(self, payload):
        if payload == "die":
            os._exit(1)
        if payload == "bad":
            raise ValueError("bad payload")
        return payload * 2


class Broken:
    def __init__(self):
        raise FileNotFoundError("no model here")


def test_ray_executor_restarts_gives_up_on_poison_items_and_propagates_errors(ray_cluster, tmp_path):
    ray = ray_cluster
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors cannot import this test module
    ex = RayExecutor(2, max_restarts=1, max_attempts=2)
    assert ex._gpus(ray) == 0.0  # a CPU-only cluster: no GPU request, or the actors would never start
    got: dict = {}
    stats = ex.map(Toy, [(0, 1), (1, "a"), (2, 3)], got.__setitem__)
    assert got == {0: 2, 1: "aa", 2: 6} and stats.items == 3 and stats.retried == 0
    # a worker lost mid-item is restarted by Ray and reused: the item is redone, nothing re-created
    marker = tmp_path / "crash"
    marker.touch()
    got = {}
    stats = RayExecutor(1, max_restarts=1, chaos_marker=str(marker)).map(Toy, [(k, k) for k in range(4)],
                                                                          got.__setitem__)
    assert got == {k: 2 * k for k in range(4)}
    assert (stats.items, stats.attempts, stats.retried, stats.worker_failures, stats.recreated) == (4, 5, 1, 1, 0)
    with pytest.raises(RuntimeError, match=r"item 'p' was lost with its worker 2 times \(max_attempts=2\)"):
        ex.map(Toy, [("p", "die")], got.__setitem__)
    with pytest.raises(ValueError, match="bad payload"):  # a bug is not retried
        ex.map(Toy, [("b", "bad")], got.__setitem__)
    with pytest.raises(RuntimeError, match="failed to start: FileNotFoundError: no model here"):
        ex.map(Broken, [(0, 1)], got.__setitem__)


def test_the_value_function_reaches_the_workers(tmp_path):
    """A `ValueConfig` travels in the work spec (the loop's `value:` under the Ray executor) and gives the
    trees run_search gives with it in-process; it is part of the journal's identity."""
    from treesearch.backends.hf import HFBackend
    from tasks import get_task
    from treesearch.search.runner import run_search
    from treesearch.search.values import ValueConfig

    ps = problems(3)
    cfg = MCTSConfig(simulations=6, width=2, seed=4, value_prior=2.0)
    counts = ValueConfig(method="counts")
    far = run_search_distributed("mcts", "arithmetic", ps, cfg, value=counts, chunk_size=3, journal=tmp_path / "j.jsonl")
    near = run_search("mcts", HFBackend.from_pretrained("embedded", device="cpu"), get_task("arithmetic"), ps, cfg,
                      value=counts, batch_size=3)
    def grown(result):  # the trees as searched (meta also holds the worker's bookkeeping)
        return [({k: v for k, v in t.to_json().items() if k != "meta"}, t.meta["search"]["selected"]) for t in result.trees]

    assert grown(far) == grown(near)
    zero = run_search_distributed("mcts", "arithmetic", ps, cfg, chunk_size=3)
    assert grown(zero) != grown(far)  # the value changed the search
    with pytest.raises(ValueError, match="journal of a different search"):
        run_search_distributed("mcts", "arithmetic", ps, cfg, value=ValueConfig(method="zero"), chunk_size=3,
                               journal=tmp_path / "j.jsonl")
