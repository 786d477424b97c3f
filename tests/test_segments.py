"""Tree-segment rollouts (TreePO) on scripted policies: schedule, budgets, early stopping, sharing."""
import numpy as np
import pytest

from treesearch.backends.base import SamplingParams
from treesearch.search import BestOfNConfig, SegmentConfig, best_of_n, segment_advantages, segment_rollouts
from treesearch.search.matching import equal_tokens
from treesearch.search.segments import allocate, has_repetition, low_probability_weights, uncertainty_weights
from treesearch.search.testing import ScriptedBackend, bandit_policy
from treesearch.tree import ROOT, Tree

LETTERS = {ch: 1.0 for ch in "abcdefghijklmnopqrstuvwxyz"}


def _trees(backend, n):
    return [Tree(problem_id=f"p{i}", prompt=f"Q{i}", prompt_ids=backend.encode_prompt(f"Q{i}")) for i in range(n)]


def _recording(backend):
    calls = []
    orig = backend.generate

    def generate(prompts, params):
        calls.append((len(prompts), params.n, [tuple(p) for p in prompts]))
        return orig(prompts, params)

    backend.generate = generate
    return calls


def test_width_budget_segment_lengths_and_trajectory_counts():
    for refill in (False, True):
        backend = ScriptedBackend(bandit_policy({"a": 0.5, "b": 0.3, "c": 0.2}, depth=5))
        cfg = SegmentConfig(segment_len=3, step_delimiter="", max_width=8, init_copies=2, branch=2, refill=refill)
        result = segment_rollouts(backend, _trees(backend, 4), cfg)
        for t, s in zip(result.trees, result.selected):
            traj = t.meta["trajectories"]
            assert len(traj) == 8 if refill else 1 <= len(traj) <= 8
            assert t.visits[ROOT] == len(traj)  # each trajectory backed up once
            t.check()
            t.check_values()
            for n in range(1, t.num_nodes):
                if t.children[n]:
                    assert len(t.token_ids[n]) == 3 and not t.terminal[n]
                else:
                    assert t.terminal[n] and 1 <= len(t.token_ids[n]) <= 3
            assert all(t.terminal[leaf] and t.finish_reason[leaf] == "eos" for leaf in traj)
            assert s in traj


def test_schedule_doubles_paths_until_the_width_budget():
    backend = ScriptedBackend(bandit_policy(LETTERS, depth=6))  # 26 arms: identical samples are rare
    calls = _recording(backend)
    cfg = SegmentConfig(segment_len=2, max_width=8, init_copies=2, branch=2, refill=False)
    (tree,) = segment_rollouts(backend, _trees(backend, 1), cfg).trees
    samples = [n_prompts * n for n_prompts, n, _ in calls]
    assert samples == [2, 4, 8, 8, 8, 8]  # 2 copies, then x2 per round, capped at max_width
    assert len(tree.meta["trajectories"]) == 8


def test_paths_share_prefixes_and_each_context_is_decoded_once():
    backend = ScriptedBackend(bandit_policy(LETTERS, depth=6))
    calls = _recording(backend)
    cfg = SegmentConfig(segment_len=2, max_width=16, init_copies=2, branch=2, refill=False)
    result = segment_rollouts(backend, _trees(backend, 3), cfg)
    contexts = [ctx for _, _, ctxs in calls for ctx in ctxs]
    assert len(contexts) == len(set(contexts))  # no prefix is decoded twice
    for t in result.trees:  # every context continued is an existing node's exact context ids
        known = {tuple(t.context_ids(n)) for n in range(t.num_nodes)}
        assert sum(ctx in known for ctx in contexts) == sum(1 for n in range(t.num_nodes) if t.children[n])
    seg_decode = result.cost.decode_tokens
    indep = ScriptedBackend(bandit_policy(LETTERS, depth=6))
    best_of_n(indep, _trees(indep, 3), BestOfNConfig(n=16, max_tokens=64))
    # 2-token segments, 6 rounds: 2 + 4 + 8 + 16 + 16 + 16 samples per root, vs 16 solutions of 12 tokens
    assert indep.stats.decode_tokens == 3 * 16 * 12
    assert seg_decode == 3 * 2 * (2 + 4 + 8 + 16 + 16 + 16)  # 65% of it
    # continuing a path prefills one token: the rest of its context is in the prefix cache
    roots = ScriptedBackend(bandit_policy(LETTERS, depth=6))
    roots.generate([t.prompt_ids for t in result.trees], SamplingParams(max_tokens=1))  # what the root contexts cost
    assert result.cost.prefill_tokens == roots.stats.prefill_tokens + (len(contexts) - 3)


def test_a_round_issues_one_call_per_distinct_child_count():
    backend = ScriptedBackend(bandit_policy({"a": 0.5, "b": 0.5}, depth=4))
    calls = _recording(backend)
    segment_rollouts(backend, _trees(backend, 5), SegmentConfig(segment_len=2, max_width=8))
    assert calls[0][:2] == (5, 2)  # round 0: every root in one call
    assert all(n_prompts >= 1 for n_prompts, _, _ in calls)


def test_final_answer_stops_a_path():
    backend = ScriptedBackend(bandit_policy({"a": 0.6, "c": 0.4}, depth=1000))  # lines forever, no EOS
    cfg = SegmentConfig(segment_len=4, max_width=4, max_tokens=400, refill=False)
    result = segment_rollouts(backend, _trees(backend, 2), cfg, is_final=lambda text: "c\n" in text)
    for t in result.trees:
        for leaf in t.meta["trajectories"]:
            assert "c\n" in t.text_of(leaf) and "c\n" not in t.text_of(int(t.parent[leaf]))


def test_hopeless_repetition_stops_a_path():
    backend = ScriptedBackend(lambda text: {"b": 1.0} if text.endswith("a") else {"a": 1.0})  # "abab..." forever
    cfg = SegmentConfig(segment_len=3, max_width=2, init_copies=2, repeat_chars=4, repeat_count=3, max_tokens=1000)
    (tree,) = segment_rollouts(backend, _trees(backend, 1), cfg).trees
    leaves = tree.meta["trajectories"]
    assert leaves and all(tree.finish_reason[leaf] == "repetition" for leaf in leaves)
    assert all(len(tree.text_of(leaf)) <= 8 + 3 for leaf in leaves)
    assert has_repetition("xabababab", 4, 3) and not has_repetition("abcdabcdxyz", 4, 3)


def test_token_and_depth_limits():
    backend = ScriptedBackend(bandit_policy(LETTERS, depth=1000))
    cfg = SegmentConfig(segment_len=4, step_delimiter="", max_width=8, init_copies=2, token_budget=40, refill=False)
    (tree,) = segment_rollouts(backend, _trees(backend, 1), cfg).trees
    # 2 + 4 children fit 40 tokens; the 8 a third round wants do not (16 tokens left: 4 funded)
    assert backend.stats.decode_tokens == tree.meta["search"]["decoded_tokens"] == 2 * 4 + 4 * 4 + 4 * 4
    assert all(tree.terminal[leaf] and tree.finish_reason[leaf] == "budget" for leaf in tree.meta["trajectories"])
    backend = ScriptedBackend(bandit_policy(LETTERS, depth=1000))
    (tree,) = segment_rollouts(backend, _trees(backend, 1), SegmentConfig(segment_len=4, max_width=4, max_depth=3)).trees
    assert max(tree.depth) == 3
    backend = ScriptedBackend(bandit_policy(LETTERS, depth=1000))
    (tree,) = segment_rollouts(backend, _trees(backend, 1), SegmentConfig(segment_len=4, step_delimiter="", max_width=4, max_tokens=10)).trees
    assert all(tree.num_tokens(leaf) == 12 for leaf in tree.meta["trajectories"])  # checked at segment boundaries


def test_seeded_rollouts_are_reproducible_and_batch_independent():
    cfg = SegmentConfig(segment_len=3, max_width=8, seed=4)
    mk = lambda: ScriptedBackend(bandit_policy({"a": 0.5, "b": 0.3, "c": 0.2}, depth=4))
    b1, b2 = mk(), mk()
    together = segment_rollouts(b1, _trees(b1, 3), cfg).trees
    alone = segment_rollouts(b2, _trees(b2, 3)[2:], cfg).trees
    assert alone[0].to_json() == together[2].to_json()


def test_allocate_shares_the_total():
    assert allocate(16, np.ones(8)).tolist() == [2] * 8
    assert allocate(5, np.ones(3)).tolist() == [2, 2, 1]
    assert allocate(7, np.array([0.1, 0.1, 0.8])).tolist() == [2, 1, 4]
    assert allocate(6, np.ones(2), base=np.array([2, 1])).tolist() == [4, 2]
    assert allocate(2, np.array([0.2, 0.5, 0.3])).tolist() == [0, 1, 1]
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(1, 9))
        base = rng.integers(1, 4, size=k)
        total = int(base.sum() + rng.integers(0, 20))
        out = allocate(total, rng.random(k), base=base)
        assert out.sum() == total and (out >= base).all()


def test_uncertain_and_unlikely_paths_get_more_branches():
    tree = Tree(problem_id="p", prompt="Q", prompt_ids=[1])
    sure = tree.add_child(ROOT, text="x", token_ids=[5, 6], logprobs=[-0.05, -0.05], finish_reason="length")
    unsure = tree.add_child(ROOT, text="y", token_ids=[7, 8], logprobs=[-2.0, -2.5], finish_reason="length")
    for weights in (uncertainty_weights, low_probability_weights):
        w = weights(tree, [sure, unsure])
        assert w[1] > w[0] and w.sum() == pytest.approx(1.0)
        assert allocate(6, w).tolist()[1] > 3
    # end to end: after an uncertain first segment the path gets more children than a certain one
    policy = lambda text: {"a": 0.5, "b": 0.5} if not text else ({ch: 1.0 for ch in "cdefghijkl"} if text[0] == "a" else {"b": 1.0})
    backend = ScriptedBackend(policy)
    calls = _recording(backend)
    trees = _trees(backend, 1)
    segment_rollouts(backend, trees, SegmentConfig(segment_len=2, max_width=8, init_copies=2, max_tokens=4, refill=False), weights=uncertainty_weights)
    t = trees[0]
    a, b = sorted(t.children[ROOT], key=lambda c: t.text[c])
    assert (t.text[a][0], t.text[b][0]) == ("a", "b")  # precondition of this seed: one copy each
    children_asked = {ctx: n for _, n, ctxs in calls[1:] for ctx in ctxs}
    # total = 2 x 2 paths = 4: one each, and both extra children go to the uncertain path
    assert children_asked[tuple(t.context_ids(a))] == 3 and children_asked[tuple(t.context_ids(b))] == 1


def test_segment_advantage_matches_hand_computation():
    tree = Tree(problem_id="p", prompt="Q", prompt_ids=[1])
    a = tree.add_child(ROOT, text="A", token_ids=[2], logprobs=[-1.0], finish_reason="length")
    b = tree.add_child(ROOT, text="B", token_ids=[3], logprobs=[-1.0], finish_reason="eos", terminal=True)
    a1 = tree.add_child(a, text="1", token_ids=[4], logprobs=[-1.0], finish_reason="eos", terminal=True)
    a2 = tree.add_child(a, text="2", token_ids=[5], logprobs=[-1.0], finish_reason="eos", terminal=True)
    raw = segment_advantages(tree, [a1, a2, b], [1.0, 0.0, 0.0], whiten=False)
    # a1: mean(1 - 1/3, 1 - 1/2); a2: mean(0 - 1/3, 0 - 1/2); b: its only group is the root's
    assert raw == pytest.approx([7 / 12, -5 / 12, -1 / 3])
    white = segment_advantages(tree, [a1, a2, b], [1.0, 0.0, 0.0])
    assert white.mean() == pytest.approx(0.0, abs=1e-9) and white.std() == pytest.approx(1.0, abs=1e-4)
    assert segment_advantages(tree, [a1, a1], [1.0, 1.0], whiten=False).tolist() == [0.0, 0.0]


def test_default_schedule_branches_early_at_step_boundaries():
    assert SegmentConfig(max_width=16).copies == 4 and SegmentConfig(max_width=3).copies == 1
    assert SegmentConfig(max_width=16, init_copies=2).copies == 2
    backend = ScriptedBackend(bandit_policy(LETTERS, depth=4))  # lines "x\n" of 2 tokens
    calls = _recording(backend)
    (tree,) = segment_rollouts(backend, _trees(backend, 1), SegmentConfig(segment_len=5, max_width=16, refill=False)).trees
    assert calls[0][:2] == (1, 4)  # a quarter of the width in round 0
    for n in range(1, tree.num_nodes):  # a segment is one line: it ends at the step delimiter, not at 5 tokens
        assert tree.text[n] in LETTERS or (tree.text[n][0] in LETTERS and tree.text[n][1:] == "\n")


def test_per_root_token_budget_is_never_exceeded():
    rng = np.random.default_rng(1)
    for _ in range(5):
        budgets = rng.integers(3, 90, size=3)
        for b in budgets:
            backend = ScriptedBackend(bandit_policy({"a": 0.4, "b": 0.3, "c": 0.3}, depth=4))
            cfg = SegmentConfig(segment_len=3, step_delimiter="", max_width=12, init_copies=3, token_budget=int(b))
            (tree,) = segment_rollouts(backend, _trees(backend, 1), cfg).trees
            assert tree.meta["search"]["decoded_tokens"] == backend.stats.decode_tokens <= b
            assert b < 9 or tree.meta["trajectories"]  # a budget of three segments funds round 0
            tree.check()


def test_refill_never_continues_an_existing_child_nor_counts_a_replay():
    backend = ScriptedBackend(bandit_policy({"a": 1.0}, depth=3))  # one solution only: "a\na\na"
    calls = _recording(backend)
    cfg = SegmentConfig(segment_len=2, max_width=8, init_copies=2, branch=1, refill=True)
    (tree,) = segment_rollouts(backend, _trees(backend, 1), cfg).trees
    # the two identical samples are one node all the way down: a chain, two trajectories
    assert tree.num_nodes == 4 and tree.meta["trajectories"] == [3, 3] and tree.visits[0] == 2
    # 3 rounds grow the chain; the one refill round draws only existing children: none is added
    assert len(calls) == 4
    refill_contexts = calls[3][2]
    known = {tuple(tree.context_ids(n)): n for n in range(tree.num_nodes)}
    assert all(known[ctx] in (1, 2) for ctx in refill_contexts)  # re-branched at segment boundaries
    assert all(len(tree.children[n]) <= 1 for n in range(tree.num_nodes))  # nothing was added twice


def test_equal_tokens_finds_the_knob_closest_to_the_target():
    runs = []

    def run(k):
        runs.append(k)
        return 37.0 * k + (5 if k % 2 else -5)  # cost grows with the knob, with noise

    m = equal_tokens(run, 1000.0, lo=1, hi=200, start=10, cost=lambda r: r)
    assert m.knob == 27 and m.tokens == 37 * 27 + 5 and m.ok and abs(m.ratio - 1) < 0.01
    assert len(runs) == len(set(runs)) <= 4 and runs[0] == 10
    far = equal_tokens(lambda k: 10.0 * k, 1000.0, lo=1, hi=20, cost=lambda r: r)
    assert far.knob == 20 and not far.ok and [k for k, _ in far.tried][-1] == 20
    with pytest.raises(ValueError, match="lo"):
        equal_tokens(run, 10.0, lo=5, hi=4)


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="init_copies"):
        SegmentConfig(init_copies=20, max_width=16)
    backend = ScriptedBackend(bandit_policy({"a": 1.0}))
    trees = _trees(backend, 1)
    trees[0].add_child(ROOT, text="a", token_ids=[98], logprobs=[0.0], finish_reason="length")
    with pytest.raises(ValueError, match="bare root"):
        segment_rollouts(backend, trees)
