"""Search values that tell unknown from bad (mcts.py, values.py) and pair selection on judged outcomes
(pairs.py), on the scripted bandit policy, whose right answers are known."""
import dataclasses

import numpy as np
import pytest

from treesearch.pairs import PairConfig, extract_pairs, judged_stats, terminal_stats
from treesearch.search import MCTSConfig, RolloutConfig, RolloutValue, mcts
from treesearch.search.mcts import _over_budget
from treesearch.search.testing import ScriptedBackend, bandit_policy, bandit_score
from treesearch.search.values import ValueConfig, build_value, unknown_value
from treesearch.tree import CORRECT, ROOT, WRONG, Tree, backup

ARMS = {"a": 0.5, "b": 0.3, "c": 0.2}


def _trees(backend, n=4):
    return [Tree(problem_id=f"p{i}", prompt=f"Q{i}", prompt_ids=backend.encode_prompt(f"Q{i}")) for i in range(n)]


NEW = MCTSConfig(simulations=10, width=2, max_depth=8, revisit_terminals=False, end_cut_steps=True, value_prior=2.0, seed=3)


def _search(cfg=NEW, value_fn=unknown_value, depth=3, n=4):
    backend = ScriptedBackend(bandit_policy(ARMS, depth=depth))
    return backend, mcts(backend, _trees(backend, n), cfg, score=bandit_score("c"), value_fn=value_fn)


def test_unjudged_children_stay_unvisited_and_q_holds_judged_outcomes_only():
    _, res = _search()
    for t in res.trees:
        t.check_values()
        correct, total = judged_stats(t)
        for n in range(t.num_nodes):
            # every visit is one judged sample below (a repeated answer once more), none a placeholder 0
            assert t.visits[n] == total[n], (n, t.visits[n], total[n])
            if total[n] and not t.terminal[n]:  # the mean return after n is the mean ±1 outcome below it
                assert t.value_sum[n] / t.visits[n] == pytest.approx((2 * correct[n] - total[n]) / total[n])
        # a node all of whose judged terminals are correct has V = +1 (0.63 on average under `zero`)
        good = [n for n in range(1, t.num_nodes) if total[n] and correct[n] == total[n] and not t.terminal[n]]
        assert all(t.value_sum[n] / t.visits[n] == 1.0 for n in good)


def test_zero_value_backs_up_placeholders_that_unknown_value_does_not():
    _, old = _search(dataclasses.replace(NEW, revisit_terminals=True, value_prior=0.0), value_fn=build_value(ValueConfig(), None, None))
    placeholders = sum(int(t.evals[n]) for t in old.trees for n in range(t.num_nodes) if not t.terminal[n])
    assert placeholders > 0  # the original behaviour is still there
    _, new = _search()
    assert sum(int(t.evals[n]) for t in new.trees for n in range(t.num_nodes) if not t.terminal[n]) == 0


def test_every_simulation_expands_when_terminals_are_not_revisited():
    backend, res = _search(dataclasses.replace(NEW, simulations=6), depth=2)
    for t in res.trees:
        repeats = {int(k): n for k, (_, n) in t.meta.get("rollouts", {}).items()}
        # no finished answer re-evaluated, except once per sample that repeated it
        assert all(t.evals[n] == (n in repeats or t.terminal[n]) + repeats.get(n, 0) for n in range(1, t.num_nodes))
        # each wave expanded one node of this tree, until nothing was left open
        assert int(t.expanded.sum()) == 6 or all(t.terminal[leaf] for leaf in t.leaves())
    # with revisiting (the original), simulations are spent re-evaluating finished answers
    _, old = _search(dataclasses.replace(NEW, simulations=6, revisit_terminals=True), depth=2)
    assert any(t.evals[n] > 1 for t in old.trees for n in range(t.num_nodes) if t.terminal[n])


def test_a_step_cut_by_the_step_budget_ends_its_path():
    def policy(text):  # the first line never ends within 3 tokens
        return {"x": 1.0}

    backend = ScriptedBackend(policy)
    cfg = dataclasses.replace(NEW, step_max_tokens=3, simulations=2)
    res = mcts(backend, _trees(backend, 1), cfg, score=bandit_score("c"))
    t = res.trees[0]
    cut = [n for n in range(1, t.num_nodes) if t.finish_reason[n] == "length"]
    assert cut and all(t.terminal[n] and t.verdict[n] == WRONG for n in cut)
    old = mcts(backend, _trees(backend, 1), dataclasses.replace(cfg, end_cut_steps=False), score=bandit_score("c"))
    assert old.trees[0].num_nodes > 2 and not old.trees[0].terminal[1]  # originally continued mid-line


def test_attached_rollouts_judge_every_new_child_and_count_their_tokens():
    backend, res = _search(dataclasses.replace(NEW, rollouts=2, simulations=3), depth=3)
    for t in res.trees:
        t.check_values()
        _, total = terminal_stats(t)
        kids = [c for c in t.children[ROOT] if not t.terminal[c]]
        assert kids and all(total[c] >= 1 for c in kids)
    assert sum(t.meta["search"]["sampled_tokens"] for t in res.trees) == backend.stats.decode_tokens


def test_root_samples_seed_the_tree_with_a_trie_of_judged_solutions():
    k = 6
    cfg = dataclasses.replace(NEW, root_samples=k, simulations=2)
    backend, res = _search(cfg, depth=3, n=8)
    _, plain = _search(dataclasses.replace(NEW, simulations=2), depth=3, n=8)
    for t, p in zip(res.trees, plain.trees):
        t.check_values()
        correct, total = judged_stats(t)
        # all k samples are judged outcomes below the root (repeats counted), plus the simulations' answers
        assert total[ROOT] >= k
        assert total[ROOT] > judged_stats(p)[1][ROOT]
        # a trie: no two children of a node share their text
        for node in range(t.num_nodes):
            texts = [t.text[c] for c in t.children[node]]
            assert len(texts) == len(set(texts))
    # every sampled token counted, the samples' included
    assert sum(t.meta["search"]["sampled_tokens"] for t in res.trees) == backend.stats.decode_tokens
    # a budget the samples already spend stops the tree before any simulation
    _, spent = _search(dataclasses.replace(cfg, simulations=10, token_budget=1), depth=3, n=8)
    assert all(int(t.expanded.sum()) == 0 for t in spent.trees)
    # under a budget near the samples' cost the batch spends its total on average: trees whose samples
    # ran long take nothing more, the others share what the batch has left
    per_tree = [t.meta["search"]["sampled_tokens"] for t in spent.trees]
    budget = round(1.2 * np.mean(per_tree))
    backend, res = _search(dataclasses.replace(cfg, simulations=64, token_budget=budget), depth=3, n=40)
    got = [t.meta["search"]["sampled_tokens"] for t in res.trees]
    assert sum(got) == backend.stats.decode_tokens
    assert abs(np.mean(got) / budget - 1) < 0.10, (np.mean(got), budget)
    with pytest.raises(ValueError, match="root_samples"):
        MCTSConfig(root_samples=-1)


def test_root_samples_share_the_batch_budget_they_left(monkeypatch):
    import sys

    mcts_mod = sys.modules["treesearch.search.mcts"]  # the package re-exports the function under this name

    # three trees whose samples cost 150, 50 and 100 tokens under a budget of 102 each: a per-tree
    # stop would let the short one spend 52 more while the long one keeps its 48 overshoot
    monkeypatch.setattr(mcts_mod, "_rollout", lambda *a, **k: [(0, 150), (1, 50), (2, 100)])
    cfg = dataclasses.replace(NEW, root_samples=3, token_budget=102)
    trees = [Tree(problem_id=str(i), prompt="Q", prompt_ids=[1]) for i in range(3)]
    st = mcts_mod._Batch.start(trees, cfg)
    mcts_mod._sample_roots(None, trees, st, cfg, None, None)
    assert st.budget == [152, 52, 102]  # 6 tokens left, 2 each
    monkeypatch.setattr(mcts_mod, "_rollout", lambda *a, **k: [(0, 150), (1, 80), (2, 100)])
    st = mcts_mod._Batch.start(trees, cfg)
    mcts_mod._sample_roots(None, trees, st, cfg, None, None)
    assert all(st.done) and all(st.stopped)  # the samples spent the batch's budget


def test_token_budget_is_met_on_average_and_rollout_tokens_count():
    budget = 30
    backend = ScriptedBackend(bandit_policy(ARMS, depth=3))
    rv = RolloutValue(backend, bandit_score("c"), RolloutConfig(k=2, record=True))
    cfg = dataclasses.replace(NEW, simulations=64, token_budget=budget)
    res = mcts(backend, _trees(backend, 40), cfg, score=bandit_score("c"), value_fn=rv)
    spent = [t.meta["search"]["sampled_tokens"] for t in res.trees]
    assert sum(spent) == backend.stats.decode_tokens  # expansions + rollouts, nothing missed
    assert abs(np.mean(spent) / budget - 1) < 0.10
    # recorded rollouts are judged outcomes for the pairs
    assert any(t.meta.get("rollouts") for t in res.trees)
    t = next(t for t in res.trees if t.meta.get("rollouts"))
    c_all, n_all = judged_stats(t)
    _, n_term = terminal_stats(t)
    assert n_all[ROOT] == n_term[ROOT] + sum(n for _, n in t.meta["rollouts"].values())


def test_over_budget_rounds_the_last_wave_without_bias():
    assert _over_budget(30, 5, 30, "k") and not _over_budget(10, 5, 30, "k")
    stops = [_over_budget(20, 20, 30, f"k{i}") for i in range(4000)]
    assert abs(np.mean(stops) - 0.5) < 0.05  # continue with probability (30 - 20) / 20


# -- pairs --------------------------------------------------------------------------------------
def _step(tree, parent, text, *, terminal=False, verdict=None, finish="stop"):
    ids = [ord(c) for c in text]
    n = tree.add_child(parent, text=text, token_ids=ids, logprobs=[-0.1] * len(ids), finish_reason=finish, terminal=terminal)
    if verdict is not None:
        tree.verdict[n] = verdict
        tree.reward[n] = 1.0 if verdict == CORRECT else -1.0
        backup(tree, n, 0.0)
    return n


def _tree():
    """root -> A (2 correct of 2 below) | B (0 of 2 below) | C (nothing judged)."""
    t = Tree(problem_id="p", prompt="Q", prompt_ids=[1])
    a, b, c = (_step(t, ROOT, s) for s in ("A\n", "B\n", "C\n"))
    for parent, v in ((a, CORRECT), (a, CORRECT), (b, WRONG), (b, WRONG)):
        _step(t, parent, f"x{t.num_nodes}", terminal=True, verdict=v, finish="eos")
    backup(t, c, 0.0)  # the `zero` placeholder: C looks as good as a 50/50 step under Q
    return t, a, b, c


def test_beta_pairs_never_reject_an_unjudged_step():
    t, a, b, c = _tree()
    q_pairs = extract_pairs([t], PairConfig(kinds=("sibling",), margin=0.1), decode=str)
    assert q_pairs[0]["node_ids"][1:] == [a, b]
    beta = PairConfig(kinds=("sibling",), value="beta", margin=0.3, min_judged=1)
    pairs = extract_pairs([t], beta, decode=str)
    assert [p["node_ids"][1:] for p in pairs] == [[a, b]]
    assert pairs[0]["chosen_value"] == pytest.approx(3 / 4) and pairs[0]["rejected_value"] == pytest.approx(1 / 4)
    # 2 judged outcomes each are not enough for min_judged 3
    assert extract_pairs([t], dataclasses.replace(beta, min_judged=3), decode=str) == []


def test_first_errors_need_enough_judged_outcomes_and_the_margin():
    t, a, b, _ = _tree()
    fe = PairConfig(kinds=("first_error",), value="beta", margin=0.3, min_judged=2)
    assert [p["node_ids"][1:] for p in extract_pairs([t], fe, decode=str)] == [[a, b]]
    assert extract_pairs([t], dataclasses.replace(fe, min_judged=3), decode=str) == []
    assert extract_pairs([t], dataclasses.replace(fe, margin=0.6), decode=str) == []
    # the original rule (one judged terminal) is still the default
    assert extract_pairs([t], PairConfig(kinds=("first_error",)), decode=str)


def test_trajectory_pairs_mark_eos_only_when_the_solution_ended_with_eos():
    t = Tree(problem_id="p", prompt="Q", prompt_ids=[1])
    _step(t, ROOT, "right", terminal=True, verdict=CORRECT, finish="eos")
    _step(t, ROOT, "cut at the limit", terminal=True, verdict=WRONG, finish="length")
    [p] = extract_pairs([t], PairConfig(kinds=("trajectory",)), decode=str)
    assert p["chosen_eos"] is True and p["rejected_eos"] is False


def test_value_config_rejects_unknown_methods_and_prm_without_checkpoint():
    with pytest.raises(ValueError, match="ValueConfig.method"):
        ValueConfig(method="nope")
    with pytest.raises(ValueError, match="checkpoint"):
        build_value(ValueConfig(method="prm"), None, None)
    with pytest.raises(ValueError, match="min_judged"):
        PairConfig(min_judged=-1)


def test_repeated_samples_of_a_finished_answer_count_as_outcomes():
    """The bandit policy draws the same arm often: each repeat of a judged answer is one more outcome
    (backed up, recorded), so visits and the pairs' judged counts are over samples."""
    _, res = _search(dataclasses.replace(NEW, simulations=12), depth=1, n=6)
    repeats = 0
    for t in res.trees:
        correct, total = judged_stats(t)
        _, distinct = terminal_stats(t)
        assert total[ROOT] == t.visits[ROOT]
        repeats += int(total[ROOT] - distinct[ROOT])
        for key, (c, n) in t.meta.get("rollouts", {}).items():
            node = int(key)
            assert t.terminal[node] and c == n * int(t.verdict[node] == CORRECT)
    assert repeats > 0


def _focus_score(tree, text):
    """Odd problems can never be solved: where the focused budget should not go."""
    return bandit_score("c")(tree, text) if int(tree.problem_id[1:]) % 2 == 0 else 0.0


def test_focus_spends_the_batch_budget_where_a_verified_answer_was_found():
    budget, n = 40, 40
    backend = ScriptedBackend(bandit_policy(ARMS, depth=2))
    cfg = dataclasses.replace(NEW, simulations=64, token_budget=budget, focus=0.5)
    res = mcts(backend, _trees(backend, n), cfg, score=_focus_score, value_fn=unknown_value)
    spent = np.array([t.meta["search"]["sampled_tokens"] for t in res.trees])
    hit = np.array([bool((t.verdict == CORRECT).any()) for t in res.trees])
    assert spent.sum() == backend.stats.decode_tokens
    assert abs(spent.sum() / (budget * n) - 1) < 0.10  # the batch spends its whole budget
    assert 0 < hit.sum() < n // 2  # some even problems solved, no odd one
    assert abs(spent[~hit].mean() / (budget * cfg.focus) - 1) < 0.25  # the rest stopped at their first share
    assert spent[hit].mean() > 2 * budget
    # without focus every tree spends about the same
    plain = mcts(backend, _trees(backend, n), dataclasses.replace(cfg, focus=0.0), score=_focus_score,
                 value_fn=unknown_value)
    assert abs(np.mean([t.meta["search"]["sampled_tokens"] for t in plain.trees]) / budget - 1) < 0.10


@pytest.mark.parametrize("bad", [dict(focus=1.0), dict(focus=-0.1), dict(focus=0.5, token_budget=0),
                                 dict(focus=0.5, token_budget=10, reroot=True)])
def test_focus_needs_a_token_budget(bad):
    with pytest.raises(ValueError, match="focus"):
        dataclasses.replace(NEW, **bad)


def test_min_correct_asks_for_verified_samples_below_the_chosen_step():
    t, a, b, _ = _tree()  # A has 2 correct outcomes below it
    for kind in ("sibling", "first_error"):
        cfg = PairConfig(kinds=(kind,), value="beta", margin=0.3, min_judged=1, min_correct=2)
        assert [p["node_ids"][1:] for p in extract_pairs([t], cfg, decode=str)] == [[a, b]]
        assert extract_pairs([t], dataclasses.replace(cfg, min_correct=3), decode=str) == []
    with pytest.raises(ValueError, match="min_correct"):
        PairConfig(min_correct=-1)


def test_min_logprob_holds_the_prefix_and_the_chosen_step_to_the_policys_confidence():
    t, a, b, _ = _tree()
    cfg = PairConfig(kinds=("sibling", "first_error"), value="beta", margin=0.3, min_judged=1, min_logprob=-1.0)
    assert {tuple(p["node_ids"][1:]) for p in extract_pairs([t], cfg, decode=str)} == {(a, b)}
    t.logprobs[b][0] = -5.0  # a slip in the rejected step: still a pair (only what is kept must be confident)
    assert {tuple(p["node_ids"][1:]) for p in extract_pairs([t], cfg, decode=str)} == {(a, b)}
    t.logprobs[a][1] = -1.5  # a slip in the chosen step: no pair of either kind
    assert extract_pairs([t], cfg, decode=str) == []
    for kind in ("sibling", "first_error"):
        assert extract_pairs([t], dataclasses.replace(cfg, kinds=(kind,)), decode=str) == []
        assert len(extract_pairs([t], dataclasses.replace(cfg, kinds=(kind,), min_logprob=-2.0), decode=str)) == 1
    # under a prefix: a pair below A is held to A's tokens too
    u = Tree(problem_id="q", prompt="Q", prompt_ids=[1])
    pre = _step(u, ROOT, "P\n")
    good, bad = _step(u, pre, "G\n"), _step(u, pre, "B\n")
    for parent, v in ((good, CORRECT), (good, CORRECT), (bad, WRONG), (bad, WRONG)):
        _step(u, parent, f"x{u.num_nodes}", terminal=True, verdict=v, finish="eos")
    sib = dataclasses.replace(cfg, kinds=("sibling",))
    assert [p["node_ids"] for p in extract_pairs([u], sib, decode=str)] == [[pre, good, bad]]
    u.logprobs[pre][0] = -3.0
    assert extract_pairs([u], sib, decode=str) == []


def test_focus_lets_a_lone_solved_tree_spend_the_batch_pool():
    """One solvable problem among 20: its share is many budgets large, and the simulation cap grows
    with it, so the batch still spends about its budget."""
    budget, n = 20, 20
    backend = ScriptedBackend(bandit_policy(ARMS, depth=2))
    score = lambda tree, text: float(tree.problem_id == "p0" and text.startswith("a"))  # noqa: E731
    cfg = dataclasses.replace(NEW, simulations=8, token_budget=budget, focus=0.5)
    res = mcts(backend, _trees(backend, n), cfg, score=score, value_fn=unknown_value)
    spent = [t.meta["search"]["sampled_tokens"] for t in res.trees]
    assert [bool((t.verdict == CORRECT).any()) for t in res.trees] == [True] + [False] * (n - 1)
    assert spent[0] > 5 * budget  # far past what its 8 simulations alone could sample
    assert abs(sum(spent) / (budget * n) - 1) < 0.10
