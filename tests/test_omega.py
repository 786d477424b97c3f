"""OmegaPRM: bisection for the first wrong step, the pool-driven collection, TRL stepwise export.

Pure search logic runs on the scripted bandit (a solution is right when every line is "c",
so the first non-"c" line is exactly the first error); the real checks use the embedded
policy on arithmetic references corrupted by hand and confirmed by `check_step`.
"""
import json
import math

import pytest

from tasks.arithmetic import parse, render, solve
from tasks.base import Problem
from treesearch.backends.base import SamplingParams
from treesearch.rewards import (
    OmegaConfig,
    locate_errors,
    omega_prm,
    read_stepwise,
    selection_score,
    solution_tree,
    stepwise_record,
    write_stepwise,
)
from treesearch.search import make_trees, task_scorer
from treesearch.search.testing import ScriptedBackend, bandit_policy, bandit_score

GREEDY = OmegaConfig(k=1, temperature=0.0, max_tokens=64)


def _bandit_solution(backend, lines, pid="p"):
    return solution_tree(backend, Problem(id=pid, prompt=f"Q{pid}", answer=""), lines)


# -- pure logic -------------------------------------------------------------------------------
def test_selection_score_formula():
    got = selection_score(0.25, 100, 2, 9, alpha=0.5, beta=0.9, length_scale=500, c_puct=0.125)
    assert got == pytest.approx(0.5**0.75 * 0.9**0.2 + 0.125 * 3 / 3)
    # a mostly-right state beats a mostly-wrong one; a short rollout beats a long one
    kw = dict(visits=0, total_visits=0, alpha=0.5, beta=0.9, length_scale=500, c_puct=0.125)
    assert selection_score(0.9, 10, **kw) > selection_score(0.1, 10, **kw) and selection_score(0.5, 10, **kw) > selection_score(0.5, 900, **kw)


def test_bisection_finds_every_first_error_in_log_many_estimates():
    backend = ScriptedBackend(bandit_policy({"c": 0.6, "a": 0.3, "b": 0.1}, depth=16))  # greedy always writes "c"
    cases = [(n, j) for n in (1, 2, 3, 5, 8, 13) for j in range(n)] + [(6, None)]
    sols, want = [], []
    for i, (n, j) in enumerate(cases):
        lines = ["c"] * n
        if j is not None:
            lines[j] = "a"
            lines[j + 1 :] = ["b" if k % 2 else "c" for k in range(n - j - 1)]  # later lines may be anything
        sols.append(_bandit_solution(backend, lines, pid=str(i)))
        want.append(j)
    before = backend.stats.calls
    locs = locate_errors(backend, bandit_score("c"), sols, GREEDY)
    assert [loc.first_error for loc in locs] == want
    for (n, j), loc in zip(cases, locs):
        assert loc.estimates <= math.ceil(math.log2(n)) and loc.rollouts == loc.estimates
        assert all((v > 0) == (i < j) for i, v in loc.mc.items())  # estimated prefixes agree with the truth
    assert backend.stats.calls - before == max(loc.estimates for loc in locs)  # lockstep: one call per round


def test_locate_errors_needs_finished_solutions():
    backend = ScriptedBackend(bandit_policy({"c": 1.0}, depth=4))
    tree, leaf = solution_tree(backend, Problem(id="p", prompt="Q", answer=""), ["c", "c"], terminal=False)
    with pytest.raises(ValueError, match="not a finished solution"):
        locate_errors(backend, bandit_score("c"), [(tree, leaf)], GREEDY)


def _bandit_runs(config, arms, depth, n=6):
    backend = ScriptedBackend(bandit_policy(arms, depth=depth))
    trees = make_trees(backend, [Problem(id=f"q{i}", prompt=f"Q{i}", answer="") for i in range(n)])
    return omega_prm(backend, bandit_score("c"), trees, config)


def test_omega_pool_drains_and_terminates_without_re_adding_popped_items():
    cfg = OmegaConfig(k=8, temperature=1.0, max_tokens=32, search_limit=10_000, max_rollouts=10**9, seed=3)
    runs = _bandit_runs(cfg, {"c": 0.85, "a": 0.1, "b": 0.05}, depth=5)
    assert sum(r.searches for r in runs) > 20  # the pool really refilled from new states
    for run in runs:
        tree = run.tree
        assert run.remaining == 0 and run.pooled == run.searches  # every item popped exactly once
        ends = [n for n in range(tree.num_nodes) if tree.terminal[n]]
        assert run.pooled <= len(ends)  # an end node enters the pool at most once
        mc = {int(k): v for k, v in tree.meta["omega"]["mc"].items()}
        for loc in run.labels:
            lines = [tree.text[n].strip() for n in loc.nodes]
            assert lines[-1] != "c" and all(x == "c" for x in lines[:-1])  # the first non-"c" line, exactly
            assert mc[loc.nodes[-1]] == 0.0
            assert stepwise_record(tree, loc)["labels"] == [True] * (len(lines) - 1) + [False]
        tree.check()


@pytest.mark.parametrize("limit,budget", [(2, 10**9), (10_000, 40)])
def test_omega_stops_at_its_limits(limit, budget):
    cfg = OmegaConfig(k=8, temperature=1.0, max_tokens=32, search_limit=limit, max_rollouts=budget, seed=3)
    runs = _bandit_runs(cfg, {"c": 0.85, "a": 0.1, "b": 0.05}, depth=5)
    for run in runs:
        assert run.searches <= limit
        # no search starts once the budget is spent; a running one finishes (<= log2(depth) estimates)
        assert run.rollouts < budget + cfg.k * (1 + math.ceil(math.log2(5)))
    assert any(run.remaining > 0 for run in runs)


# -- the embedded policy on corrupted references ------------------------------------------------
def _corrupt(arithmetic, problem, j):
    """The reference with step j (0-based) off by one and the rest reduced consistently from it."""
    ref = problem.solution.split("\n")
    prev = problem.prompt if j == 0 else ref[j - 1]
    if ref[j].startswith("Answer:"):
        steps = ref[:j] + [f"Answer: {int(problem.answer) + 1}"]
    else:
        nums, ops = parse(ref[j])
        nums = [nums[0] + 1] + nums[1:]
        steps = ref[:j] + [render(nums, ops)] + solve(nums, ops)
    assert all(arithmetic.check_step(a, b) for a, b in zip([problem.prompt] + ref[: j - 1], ref[:j]))
    assert not arithmetic.check_step(prev, steps[j])
    assert all(arithmetic.check_step(a, b) for a, b in zip(steps[j:-1], steps[j + 1 :]))  # consistent after it
    assert arithmetic.score(problem, "\n".join(steps)) == 0.0
    return steps


@pytest.fixture(scope="module")
def corrupted(policy, arithmetic):
    """(problem, steps, j) whose greedy continuation verifies from every prefix before step j and from none after."""
    from treesearch.backends.hf import HFBackend

    backend = HFBackend.from_model(*policy)
    # enough candidates that a weak policy still yields several (its greedy continuation must verify
    # from every prefix before the corrupted step)
    problems = arithmetic.problems("test", 160, seed=3, n_ops=3)
    cands = [(p, _corrupt(arithmetic, p, i % 4), i % 4) for i, p in enumerate(problems)]
    sols = [solution_tree(backend, p, steps) for p, steps, _ in cands]
    prefixes, owner = [], []  # every unfinished prefix (question .. last step but one) of every solution
    for ci, (t, leaf) in enumerate(sols):
        for n in t.path(leaf)[:-1]:
            prefixes.append((t, n))
            owner.append(ci)
    outs = backend.generate([t.context_ids(n) for t, n in prefixes], SamplingParams(n=1, temperature=0.0, max_tokens=64))
    verifies = [[] for _ in cands]
    for (t, n), o, ci in zip(prefixes, outs, owner):
        verifies[ci].append(arithmetic.score(cands[ci][0], t.text_of(n) + o[0].text))
    chosen = [
        (p, steps, j)
        for (p, steps, j), v in zip(cands, verifies)
        if all(x == 1.0 for x in v[: j + 1]) and all(x == 0.0 for x in v[j + 1 :])
    ]
    assert len(chosen) >= 4 and len({j for _, _, j in chosen}) >= 2, chosen
    return chosen


def test_bisection_locates_hand_corrupted_steps_with_greedy_rollouts(hf_backend, arithmetic, corrupted, tmp_path):
    problems = [p for p, _, _ in corrupted]
    sols = [solution_tree(hf_backend, p, steps) for p, steps, _ in corrupted]
    before = hf_backend.stats.calls
    locs = locate_errors(hf_backend, task_scorer(arithmetic, problems), sols, GREEDY)
    assert [loc.first_error for loc in locs] == [j for _, _, j in corrupted]
    for (p, steps, _), loc in zip(corrupted, locs):
        assert loc.estimates <= math.ceil(math.log2(len(steps))) and loc.rollouts == loc.estimates
    assert hf_backend.stats.calls - before == max(loc.estimates for loc in locs)

    rows = [stepwise_record(tree, loc) for (tree, _), loc in zip(sols, locs)]
    out = tmp_path / "prm.jsonl"
    write_stepwise(out, rows)
    assert list(read_stepwise(out)) == rows
    import datasets

    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds.num_rows == len(corrupted) and set(ds.column_names) == {"prompt", "completions", "labels"}
    for row, (p, steps, j) in zip(ds, corrupted):
        assert row["prompt"] == p.prompt
        assert row["completions"] == steps[: j + 1]
        assert row["labels"] == [True] * j + [False]


def test_omega_collection_on_the_embedded_policy(hf_backend, arithmetic, tmp_path):
    problems = arithmetic.problems("test", 8, seed=1, n_ops=3)
    cfg = OmegaConfig(k=4, temperature=1.0, max_tokens=48, search_limit=3, seed=2)
    runs = omega_prm(hf_backend, task_scorer(arithmetic, problems), make_trees(hf_backend, problems), cfg)
    rows = []
    for run in runs:
        run.tree.check()
        mc = {int(k): v for k, v in run.tree.meta["omega"]["mc"].items()}
        assert run.searches <= 3 and run.pooled == run.searches + run.remaining
        for loc in run.labels:
            assert mc[loc.nodes[-1]] == 0.0  # the located step's prefix can no longer reach the answer
            # bisection keeps its lower end's MC positive, so the step before the error is known and > 0;
            # earlier prefixes can read 0 when another rollout through the same node estimated it
            # (k samples of noise), so only the parent is an invariant
            if len(loc.nodes) > 1:
                assert loc.mc[len(loc.nodes) - 2] > 0, (loc, run.tree.meta["omega"]["mc"])
            else:
                assert mc[0] > 0
            rows.append(stepwise_record(run.tree, loc))
    assert rows, "no question had 0 < MC < 1 at the root"
    write_stepwise(tmp_path / "omega.jsonl", rows)
    assert [json.loads(x)["labels"][-1] for x in (tmp_path / "omega.jsonl").read_text().splitlines()] == [False] * len(rows)


def test_stepwise_files_are_checked(tmp_path):
    with pytest.raises(ValueError, match="record 0: 2 labels for 1 completions"):
        write_stepwise(tmp_path / "x.jsonl", [{"prompt": "q", "completions": ["a"], "labels": [True, False]}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "completions": ["a"], "labels": [true]}\n{"prompt": "q", "completions": "a", "labels": []}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: field 'completions'"):
        list(read_stepwise(bad))
