"""The search tree: ids, contexts, growth, backup invariants, exact JSON and networkx round trips."""
import json

import numpy as np
import pytest

from treesearch.tree import CORRECT, ROOT, Tree, backup


def _tree(capacity=64):
    return Tree(problem_id="p0", prompt="Q: 1+2*3=?", prompt_ids=[1, 2, 3], answer="7", meta={"n_ops": 2}, capacity=capacity)


def _step(tree, parent, ids, lps=None, text=None, reason="stop", terminal=False):
    lps = lps if lps is not None else [-0.5] * len(ids)
    return tree.add_child(parent, text=text if text is not None else "".join(chr(97 + i % 26) for i in ids), token_ids=ids,
                          logprobs=lps, finish_reason=reason, terminal=terminal)


def _random_tree(seed=0, n=60, capacity=2):
    """A random tree with random rewards and evaluations backed up (floats with full mantissas)."""
    rng = np.random.default_rng(seed)
    t = _tree(capacity=capacity)
    for _ in range(n):
        open_nodes = [k for k in range(t.num_nodes) if not t.terminal[k]]
        parent = int(rng.choice(open_nodes))
        k = int(rng.integers(1, 5))
        c = _step(t, parent, rng.integers(4, 300, size=k).tolist(), rng.normal(-1, 0.7, size=k).tolist(),
                  terminal=bool(rng.random() < 0.3))
        t.reward[c] = float(rng.normal())
        backup(t, c, float(rng.normal()))
        if t.terminal[c]:
            t.verdict[c] = CORRECT if rng.random() < 0.5 else 0
            backup(t, c, float(t.value[c]))  # a terminal re-evaluated, as MCTS does
    return t


def test_ids_follow_expansion_order_and_context_is_exact_concatenation():
    t = _tree()
    a = _step(t, ROOT, [10, 11], text="1+6\n")
    b = _step(t, ROOT, [12], text="2\n")
    c = _step(t, a, [13, 14, 15], text="7\n")
    assert (a, b, c) == (1, 2, 3) and t.num_nodes == 4
    assert t.path(c) == [0, 1, 3] and list(t.parent) == [-1, 0, 0, 1] and list(t.depth) == [0, 1, 1, 2]
    assert t.children == [[1, 2], [3], [], []]
    assert t.context_ids(c) == [1, 2, 3, 10, 11, 13, 14, 15]
    assert t.context_ids(ROOT) == [1, 2, 3]
    assert t.text_of(c) == "1+6\n7\n" and t.num_tokens(c) == 5
    assert t.prior[c] == pytest.approx(-1.5)


def test_growth_past_capacity_keeps_every_column():
    t = _random_tree(n=200, capacity=1)
    assert t.num_nodes == 201 and len(t.visits) == 201
    t.check()
    t.check_values()


def test_backup_invariants_and_q():
    t = _tree()
    a = _step(t, ROOT, [5])
    b = _step(t, a, [6], terminal=True)
    t.reward[b] = 1.0
    backup(t, a, 0.25)  # a evaluated by a value function
    backup(t, b, 0.0)  # terminal: its return after is 0, Q = reward
    backup(t, b, 0.0)
    assert list(t.visits) == [3, 3, 2] and list(t.evals) == [0, 1, 2]
    assert t.value_sum[a] == pytest.approx(0.25 + 2 * 1.0)
    assert t.q(b) == 1.0 and t.q(a) == pytest.approx((0.25 + 2.0) / 3)
    t.check_values()
    t.visits[a] += 1  # a broken count is caught
    with pytest.raises(AssertionError, match="visits"):
        t.check_values()


def test_best_path_follows_visits_then_q():
    t = _tree()
    a, b = _step(t, ROOT, [5]), _step(t, ROOT, [6])
    for _ in range(3):
        backup(t, a, -1.0)
    backup(t, b, 1.0)
    assert t.best_path() == [ROOT, a]
    s = t.summary()
    assert [c["visits"] for c in s["root_children"]] == [3, 1] and s["best_path"] == [0, 1]


def test_json_round_trip_is_exact():
    t = _random_tree(seed=3)
    line = json.dumps(t.to_json())
    u = Tree.from_json(json.loads(line))
    assert u.to_json() == t.to_json()
    for name in ("value_sum", "prior", "reward", "value"):
        assert np.array_equal(getattr(u, name), getattr(t, name))  # bit-exact floats
    assert u.logprobs == t.logprobs and u.context_ids(t.num_nodes - 1) == t.context_ids(t.num_nodes - 1)
    u.check_values()
    c = _step(u, ROOT, [7])  # a loaded tree keeps growing
    assert c == t.num_nodes


def test_save_and_load_a_file(tmp_path):
    t = _random_tree(seed=7, n=20)
    t.save(tmp_path / "t.json")
    assert Tree.load(tmp_path / "t.json").to_json() == t.to_json()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not JSON"):
        Tree.load(tmp_path / "bad.json")


def test_networkx_view_carries_every_attribute_and_round_trips():
    t = _random_tree(seed=5, n=30)
    g = t.to_networkx()
    assert g.number_of_nodes() == t.num_nodes and g.number_of_edges() == t.num_nodes - 1
    n = t.num_nodes - 1
    node = g.nodes[n]
    assert node["visits"] == int(t.visits[n]) and node["token_ids"] == t.token_ids[n] and node["q"] == t.q(n)
    assert set(g.successors(ROOT)) == set(t.children[ROOT])
    assert g.graph["prompt_ids"] == t.prompt_ids
    assert Tree.from_networkx(g).to_json() == t.to_json()


def test_malformed_json_names_the_field():
    d = _random_tree(n=5).to_json()
    bad = dict(d, visits=d["visits"][:-1])
    with pytest.raises(ValueError, match="trees.jsonl:3: field 'visits'"):
        Tree.from_json(bad, where="trees.jsonl:3")
    bad = {k: v for k, v in d.items() if k != "children"}
    with pytest.raises(ValueError, match="missing field.*children"):
        Tree.from_json(bad)
    bad = dict(d, parent=[-1] + [5] * (d["num_nodes"] - 1))
    with pytest.raises(ValueError, match="parents must precede"):
        Tree.from_json(bad)


def test_terminal_nodes_take_no_children_and_bad_parents_are_rejected():
    t = _tree()
    a = _step(t, ROOT, [5], reason="eos", terminal=True)
    with pytest.raises(ValueError, match="terminal"):
        _step(t, a, [6])
    with pytest.raises(IndexError):
        _step(t, 9, [6])
    with pytest.raises(ValueError, match="logprobs"):
        t.add_child(ROOT, text="x", token_ids=[1, 2], logprobs=[-1.0], finish_reason="stop")
