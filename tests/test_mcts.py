"""MCTS on a scripted bandit policy (pure search logic; the real model runs in test_search_e2e.py).

The golden tree tests/golden/mcts_bandit.json was generated once with

    .venv/bin/python tests/test_mcts.py --write-golden

and must only be regenerated on purpose (a change of search semantics).
"""
import dataclasses
import functools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from treesearch.search import MCTSConfig, OutcomeValue, RolloutConfig, RolloutValue, mcts, puct, step_prior
from treesearch.search.mcts import select_leaf
from treesearch.search.testing import ScriptedBackend, bandit_policy, bandit_score
from treesearch.tree import CORRECT, ROOT, Tree

GOLDEN = Path(__file__).parent / "golden" / "mcts_bandit.json"
ARMS = {"a": 0.5, "b": 0.3, "c": 0.2}  # the best arm "c" is the least likely one


def _trees(backend, n=3):
    return [Tree(problem_id=f"p{i}", prompt=f"Q{i}", prompt_ids=backend.encode_prompt(f"Q{i}")) for i in range(n)]


def _golden_search():
    """Two problems with the paper's fixed width, one with progressive widening (every field pinned)."""
    backend = ScriptedBackend(bandit_policy(ARMS, depth=2))
    base = MCTSConfig(simulations=12, width=3, max_depth=8, step_max_tokens=48, max_tokens=128, c_puct=1.0,
                      length_penalty=1.25, widen_c=1.0, widen_alpha=0.0, reroot=False, dedup=True, seed=7)
    fixed = mcts(backend, _trees(backend, 2), base, score=bandit_score("c"))
    widened = mcts(backend, _trees(backend, 1), dataclasses.replace(base, widen_alpha=0.5), score=bandit_score("c"))
    return fixed + widened


def _golden_view(result):
    return [
        {
            "parent": t.parent.tolist(),
            "children": t.children,
            "visits": t.visits.tolist(),
            "expanded": t.expanded.tolist(),
            "value_sum": t.value_sum.tolist(),
            "reward": t.reward.tolist(),
            "text": t.text,
            "selected": s,
        }
        for t, s in zip(result.trees, result.selected)
    ]


def test_seeded_search_reproduces_the_golden_tree():
    got = _golden_view(_golden_search())
    want = json.loads(GOLDEN.read_text())
    assert got == want


@pytest.mark.parametrize("reroot", [False, True])
def test_invariants_hold_after_search(reroot):
    backend = ScriptedBackend(bandit_policy(ARMS, depth=3))
    result = mcts(backend, _trees(backend, 4), MCTSConfig(simulations=20, width=3, reroot=reroot, root_factor=2), score=bandit_score("c"))
    for t, s in zip(result.trees, result.selected):
        t.check()
        t.check_values()
        assert t.visits[ROOT] == sum(t.visits[c] for c in t.children[ROOT])  # the root is never evaluated itself
        for n in range(1, t.num_nodes):
            assert t.evals[n] >= 1  # every node is evaluated when it is created
            if t.terminal[n]:
                assert t.verdict[n] in (0, 1) and t.reward[n] == (1.0 if t.verdict[n] == CORRECT else -1.0)
            else:
                assert t.reward[n] == 0.0 and t.depth[n] < 3
            if t.children[n]:
                assert not t.terminal[n]
                texts = [tuple(t.token_ids[c]) for c in t.children[n]]
                assert len(set(texts)) == len(texts)  # dedup: siblings are distinct steps
        assert t.terminal[s]


def test_visits_concentrate_on_the_best_arm():
    backend = ScriptedBackend(bandit_policy(ARMS, depth=1))
    (tree,) = _trees(backend, 1)
    result = mcts(backend, [tree], MCTSConfig(simulations=200, width=12), score=bandit_score("c"))
    arms = {tree.text[c]: c for c in tree.children[ROOT]}
    assert set(arms) == {"a", "b", "c"}  # the precondition: every arm was sampled
    visits = {a: int(tree.visits[c]) for a, c in arms.items()}
    assert visits["c"] > 0.9 * tree.visits[ROOT], visits
    assert result.selected == [arms["c"]] and tree.q(arms["c"]) == 1.0


def test_progressive_widening_samples_more_children_for_visited_nodes():
    backend = ScriptedBackend(bandit_policy(ARMS, depth=1))
    (fixed,) = mcts(backend, _trees(backend, 1), MCTSConfig(simulations=40, width=1), score=bandit_score("c")).trees
    assert len(fixed.children[ROOT]) == 1 and fixed.expanded[ROOT] == 1  # the paper's fixed width
    result = mcts(backend, _trees(backend, 1), MCTSConfig(simulations=40, width=1, widen_c=2.0, widen_alpha=0.5), score=bandit_score("c"))
    (tree,) = result.trees
    assert sorted(tree.text[c] for c in tree.children[ROOT]) == ["a", "b", "c"]
    assert 1 < tree.expanded[ROOT] <= 2.0 * tree.visits[ROOT] ** 0.5 + 1
    assert result.answers() == ["c"]
    tree.check_values()


def test_known_best_path_is_committed_with_and_without_reroot():
    for reroot in (False, True):
        backend = ScriptedBackend(bandit_policy({"a": 0.4, "b": 0.35, "c": 0.25}, depth=3))
        trees = [Tree(problem_id="p", prompt="Q", prompt_ids=backend.encode_prompt("Q"))]
        result = mcts(backend, trees, MCTSConfig(simulations=60, width=8, reroot=reroot, root_factor=2), score=bandit_score("c"))
        assert result.answers() == ["c\nc\nc"], reroot


def test_one_generate_call_per_wave_over_all_trees():
    backend = ScriptedBackend(bandit_policy(ARMS, depth=2))
    calls = []
    orig = backend.generate
    backend.generate = lambda prompts, params: calls.append(len(prompts)) or orig(prompts, params)
    trees = _trees(backend, 5)
    result = mcts(backend, trees, MCTSConfig(simulations=6, width=2), score=bandit_score("c"))
    assert calls[0] == 5  # the first wave expands every root in one call
    assert len(calls) <= 6 and result.cost.calls == len(calls)
    assert result.cost.decode_tokens == backend.stats.decode_tokens > 0


def test_a_tree_does_not_depend_on_its_batch():
    backend = ScriptedBackend(bandit_policy(ARMS, depth=3))
    cfg = MCTSConfig(simulations=15, width=3, seed=3)
    together = mcts(backend, _trees(backend, 3), cfg, score=bandit_score("c"))
    alone = mcts(backend, _trees(backend, 3)[1:2], cfg, score=bandit_score("c"))
    assert alone.trees[0].to_json() == together.trees[1].to_json()


def test_value_fn_is_called_once_per_wave_on_new_internal_nodes():
    backend = ScriptedBackend(bandit_policy(ARMS, depth=3))
    seen = []

    def value_fn(trees, nodes):
        seen.append(len(nodes))
        assert all(not t.terminal[n] and t.evals[n] == 0 for t, n in zip(trees, nodes))
        return [0.5] * len(nodes)

    result = mcts(backend, _trees(backend, 3), MCTSConfig(simulations=5, width=2), score=bandit_score("c"), value_fn=value_fn)
    assert seen and seen[0] == sum(len(t.children[ROOT]) for t in result.trees)
    for t in result.trees:
        for n in range(1, t.num_nodes):
            assert t.value[n] == (0.0 if t.terminal[n] else 0.5)
        t.check_values()


def test_rollout_value_is_the_fraction_of_verified_completions():
    backend = ScriptedBackend(bandit_policy({"a": 0.5, "c": 0.5}, depth=2))
    score = bandit_score("c")
    tree = Tree(problem_id="p", prompt="Q", prompt_ids=backend.encode_prompt("Q"))
    a = tree.add_child(ROOT, text="a\n", token_ids=backend.tokenize("a\n"), logprobs=[-0.7, 0.0], finish_reason="stop")
    c = tree.add_child(ROOT, text="c\n", token_ids=backend.tokenize("c\n"), logprobs=[-0.7, 0.0], finish_reason="stop")
    value = RolloutValue(backend, score, RolloutConfig(k=64, seed=1))
    va, vc = value([tree, tree], [a, c])
    assert va == -1.0  # no completion of "a\n" can verify
    f = value.last_fractions[1]
    assert 0.3 < f < 0.7 and vc == pytest.approx(2 * f - 1)
    assert backend.stats.calls == 1  # one batched call for both nodes
    unsigned = RolloutValue(backend, score, RolloutConfig(k=64, seed=1, signed=False))
    assert unsigned([tree], [c]) == [f]


def test_outcome_value_judges_terminals_only():
    backend = ScriptedBackend(bandit_policy(ARMS, depth=1))
    tree = Tree(problem_id="p", prompt="Q", prompt_ids=backend.encode_prompt("Q"))
    good = tree.add_child(ROOT, text="c", token_ids=[100, 0], logprobs=[-1.6, 0.0], finish_reason="eos", terminal=True)
    bad = tree.add_child(ROOT, text="a", token_ids=[98, 0], logprobs=[-0.7, 0.0], finish_reason="eos", terminal=True)
    open_ = tree.add_child(ROOT, text="c", token_ids=[100], logprobs=[-1.6], finish_reason="length")
    assert OutcomeValue(bandit_score("c"))([tree] * 3, [good, bad, open_]) == [1.0, -1.0, 0.0]
    assert tree.verdict[good] == 1 and tree.verdict[bad] == 0 and tree.verdict[open_] == -1


def test_puct_is_the_paper_formula():
    tree = Tree(problem_id="p", prompt="Q", prompt_ids=[1])
    a = tree.add_child(ROOT, text="x", token_ids=[5, 6], logprobs=[-0.2, -0.4], finish_reason="stop")
    b = tree.add_child(ROOT, text="y", token_ids=[7], logprobs=[-0.3], finish_reason="stop")
    tree.visits[[ROOT, a, b]] = [4, 3, 1]
    tree.value_sum[[a, b]] = [1.5, -1.0]
    tree.reward[b] = 0.25
    lam = 1.25
    x = np.array([-0.6 / 2**lam, -0.3 / 1**lam])
    p = np.exp(x) / np.exp(x).sum()
    assert np.allclose(step_prior(tree, [a, b], length_penalty=lam), p)
    want = np.array([0.5, 0.25 - 1.0]) + 1.0 * p * np.sqrt(4) / (1 + np.array([3, 1]))
    assert np.allclose(puct(tree, ROOT, c_puct=1.0, length_penalty=lam), want)
    assert select_leaf(tree, ROOT, functools.partial(puct, c_puct=1.0)) == a
    assert select_leaf(tree, ROOT, functools.partial(puct, c_puct=100.0)) == b  # exploration favours the rarely visited


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="simulations"):
        MCTSConfig(simulations=0)
    with pytest.raises(ValueError, match="temperature"):
        MCTSConfig(temperature=-1)


if __name__ == "__main__" and "--write-golden" in sys.argv:
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(_golden_view(_golden_search()), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
