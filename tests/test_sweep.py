"""The accuracy-vs-tokens frontier: seeds, subsampling from one sampling run, bands, resume, the CLI."""
import dataclasses
import json

import numpy as np
import pytest

from treesearch.sweep import SampleTable, SweepConfig, curve, frontier, run_sweep


@pytest.fixture(scope="module")
def problems():
    from tasks import get_task

    return get_task("arithmetic").problems("test", 6, seed=0, n_ops=2)


def _table(**kw):
    base = dict(id="p", key=["7", "5", "7", None, "5"], correct=[False, True, False, False, True],
                logprob=[-0.1, -0.9, -0.5, -0.05, -0.7], tokens=[10, 20, 30, 40, 50], prefill=8.0,
                prm=[0.2, 0.9, 0.3, 0.99, 0.6])
    return SampleTable(**{**base, **kw})


def test_each_selector_picks_what_its_rule_says():
    t = _table()
    everyone = list(range(5))
    assert t.pick("maj", everyone) == 0  # "7" and "5" tie on 2 votes: the group seen first
    assert t.pick("best-of-n", everyone) == 3  # highest log-prob, though it gave no answer
    assert t.pick("best-of-n-prm", everyone) == 3
    assert t.pick("weighted-bon", everyone) == 1  # "5" carries 1.5 PRM mass against "7"'s 0.5; cut sample 3 has no vote
    assert t.pick("maj", [3]) is None and t.pick("weighted-bon", [3]) is None
    acc, cov, tok = t.at("weighted-bon", 5, draws=3, rng=np.random.default_rng(0))
    assert (acc, cov, tok) == (1.0, 1.0, 8.0 + 150)  # the full budget is one subset: all samples
    acc, cov, tok = t.at("maj", 1, draws=200, rng=np.random.default_rng(0))
    assert abs(acc - 0.4) < 0.1 and abs(cov - 0.4) < 0.1  # one random sample: right 2 times in 5
    assert abs(tok - (8.0 + 30)) < 4  # prefill plus the mean sample length
    with pytest.raises(ValueError, match="exceeds the 5 samples"):
        t.at("maj", 6, draws=1, rng=np.random.default_rng(0))


def test_frontier_pools_seeds_with_a_band_over_problems():
    rows = [{"strategy": "maj", "budget": 4, "temperature": 1.0, "accuracy": a, "coverage": 0.5,
             "tokens_per_problem": x, "correct": c}
            for a, x, c in [(0.5, 100.0, [1, 0, 1, 0]), (0.25, 110.0, [1, 0, 0, 0])]]
    (p,) = frontier(rows)
    assert p["seeds"] == 2 and p["problems"] == 4
    assert p["accuracy"] == pytest.approx(0.375) and p["tokens_per_problem"] == pytest.approx(105.0)
    per = np.array([1.0, 0.0, 0.5, 0.0])  # each problem's mean over the two seeds
    assert p["ci95"] == pytest.approx(1.96 * per.std(ddof=1) / 2)
    assert p["seed_sd"] == pytest.approx(np.std([0.5, 0.25], ddof=1))


def test_subsampling_at_the_full_budget_is_the_direct_run(policy, problems):
    """maj@N read off the sample table equals a maj@N evaluation with the same seed, problem by problem."""
    from tasks import get_task
    from treesearch.backends.hf import HFBackend
    from treesearch.sweep import _run_one, sample_tables

    task = get_task("arithmetic")
    backend = HFBackend.from_model(*policy)
    cfg = SweepConfig(strategies=("maj",), budgets=(4,), subsample=False)
    direct = _run_one(backend, task, problems, cfg, "maj", 4, 3)
    backend.reset_cache()
    tables = sample_tables(backend, task, problems, 4, 1.0, 3, max_tokens=cfg.max_tokens)
    read = curve(tables, "maj", 4)
    assert read["correct"] == direct["correct"] and read["coverage"] == direct["coverage"]
    assert read["tokens_per_problem"] == pytest.approx(direct["tokens_per_problem"])  # prefill + decode, measured
    assert curve(tables, "maj", 2)["tokens_per_problem"] < read["tokens_per_problem"]


def test_sweep_writes_rows_bands_plot_and_resumes(policy, problems, tmp_path):
    from tasks import get_task
    from treesearch.backends.hf import HFBackend

    backend = HFBackend.from_model(*policy)
    task = get_task("arithmetic")
    cfg = SweepConfig(strategies=("greedy", "maj", "best-of-n", "mcts"), budgets=(2, 4), seeds=(0, 1),
                      temperatures=(("maj", 0.7),))
    rows = run_sweep(backend, task, problems, cfg, tmp_path, log=lambda *_: None)
    keys = [(r["strategy"], r["budget"], r["seed"]) for r in rows]
    assert len(keys) == 2 * 7 and len(set(keys)) == len(keys)
    assert {r["temperature"] for r in rows if r["strategy"] == "maj"} == {0.7}
    assert {r["temperature"] for r in rows if r["strategy"] == "greedy"} == {0.0}
    # maj and best-of-n read one sampling run per (temperature, seed) at the largest budget
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "T0.7_seed0_n4.jsonl", "T0.7_seed1_n4.jsonl", "T1_seed0_n4.jsonl", "T1_seed1_n4.jsonl"]
    assert all(len(r["correct"]) == len(problems) for r in rows)
    md = (tmp_path / "sweep.md").read_text()
    assert md.count("\n") == 2 + 7 and "| maj | 4 | 0.7 | 2 |" in md
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    calls = backend.stats.calls
    again = run_sweep(backend, task, problems, cfg, tmp_path, log=lambda *_: None)
    assert backend.stats.calls == calls and again == rows  # resumed: nothing recomputed
    # maj tuned to another temperature: its old rows stay in the file but are not this sweep's
    moved = dataclasses.replace(cfg, strategies=("greedy", "maj"), budgets=(2,), temperatures=(("maj", 0.5),))
    got = run_sweep(backend, task, problems, moved, tmp_path, log=lambda *_: None)
    assert sorted((r["strategy"], r["temperature"]) for r in got) == [("greedy", 0.0)] * 2 + [("maj", 0.5)] * 2
    assert len(list((tmp_path / "sweep.jsonl").read_text().splitlines())) == len(rows) + 2
    with pytest.raises(ValueError, match="unknown strategy"):
        SweepConfig(strategies=("telepathy",))
    with pytest.raises(ValueError, match="needs a PRM"):
        SweepConfig(strategies=("weighted-bon",))


@pytest.mark.parametrize("flag, message", [
    (["--temperatures", "maj:0.7"], "--temperatures: expected STRATEGY=FLOAT, got 'maj:0.7'"),
    (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
    (["--strategies", "weighted-bon"], "strategy 'weighted-bon' needs a PRM (--prm PATH)"),
])
def test_sweep_cli_refuses_bad_flags_in_one_line(tmp_path, capsys, flag, message):
    from treesearch.cli import main

    assert main(["sweep", "--n-problems", "2", "--out", str(tmp_path / "s"), *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_prm_strategies_read_off_the_table_match_the_library(policy, trained_prm, tmp_path):
    """weighted-bon at the full budget from the sample table is the library's weighted best-of-N, problem by
    problem; the PRM's own tokens are counted apart from the policy's."""
    from tasks import get_task
    from treesearch.backends.hf import HFBackend
    from treesearch.evaluate import EvalConfig, evaluate_search

    task = get_task("arithmetic")
    problems = task.problems("test", 6, seed=1, n_ops=2)
    backend = HFBackend.from_model(*policy)
    cfg = SweepConfig(strategies=("weighted-bon", "best-of-n-prm", "dvts"), budgets=(2, 4), prm=str(trained_prm))
    rows = run_sweep(backend, task, problems, cfg, tmp_path, log=lambda *_: None)
    by = {(r["strategy"], r["budget"]): r for r in rows}
    assert set(by) == {(s, b) for s in cfg.strategies for b in (2, 4)}
    assert all(r["prm_tokens_per_problem"] > 0 for r in rows)
    assert by["weighted-bon", 2]["prm_tokens_per_problem"] < by["weighted-bon", 4]["prm_tokens_per_problem"]
    records, lib = evaluate_search(backend, task, problems, EvalConfig(strategy="weighted-bon", k=4, prm=str(trained_prm)),
                                 progress=False)
    assert by["weighted-bon", 4]["correct"] == [float(r["correct"][0]) for r in records]
    assert by["weighted-bon", 4]["accuracy"] == lib["accuracy"]
    from treesearch.sweep import _load_prm, _run_one

    direct = dataclasses.replace(cfg, strategies=("best-of-n", "best-of-n-prm", "weighted-bon"), subsample=False)
    prm = _load_prm(direct, task)
    table = run_sweep(backend, task, problems, dataclasses.replace(direct, subsample=True), tmp_path / "t", log=lambda *_: None)
    for strategy in direct.strategies:  # without subsampling: the eval strategy run anew, the same choices
        read = next(r for r in table if r["strategy"] == strategy and r["budget"] == 4)
        assert _run_one(backend, task, problems, direct, strategy, 4, 0, prm)["correct"] == read["correct"], strategy
