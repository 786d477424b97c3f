"""Step-level pair extraction on hand-built trees whose right answers are known."""
import json

import pytest

from treesearch.pairs import PairConfig, correct_solutions, extract_pairs, pair_stats, solution_audit, step_audit, terminal_stats
from treesearch.tree import CORRECT, ROOT, WRONG, Tree, backup


def _step(tree, parent, text, *, terminal=False, verdict=None, visits=1, value=0.0, reward=0.0, finish="stop"):
    ids = [ord(c) for c in text]
    n = tree.add_child(parent, text=text, token_ids=ids, logprobs=[-0.1] * len(ids), finish_reason=finish, terminal=terminal)
    if verdict is not None:
        tree.verdict[n] = verdict
        tree.reward[n] = 1.0 if verdict == CORRECT else -1.0
    for _ in range(visits):
        backup(tree, n, value)
    return n


def _tree():
    """Q: 1+2*3=?   root -> '1+6\\n' (right) -> 'Answer: 7' (correct) | 'Answer: 8' (wrong)
                     root -> '1+5\\n' (wrong) -> 'Answer: 6' (wrong)"""
    t = Tree(problem_id="p0", prompt="Q: 1+2*3=?", prompt_ids=[1, 2, 3], answer="7")
    a = _step(t, ROOT, "1+6\n", visits=0)
    b = _step(t, ROOT, "1+5\n", visits=0)
    _step(t, a, "Answer: 7", terminal=True, verdict=CORRECT, visits=2, finish="eos")
    _step(t, a, "Answer: 8", terminal=True, verdict=WRONG, visits=1, finish="eos")
    _step(t, b, "Answer: 6", terminal=True, verdict=WRONG, visits=2, finish="eos")
    return t


def decode(ids):
    return "<t>" + ",".join(map(str, ids)) + "</t>"


def test_terminal_stats():
    correct, total = terminal_stats(_tree())
    assert correct.tolist() == [1, 1, 0, 1, 0, 0]
    assert total.tolist() == [3, 2, 1, 1, 1, 1]


def test_sibling_pairs_prefer_the_higher_q_step_with_the_shared_prefix():
    t = _tree()
    pairs = extract_pairs([t], PairConfig(kinds=("sibling",), margin=0.1), decode=decode, round=2)
    by_depth = {p["depth"]: p for p in pairs}
    root = by_depth[0]
    assert (root["chosen"], root["rejected"]) == ("1+6\n", "1+5\n")
    assert root["prompt"] == decode([1, 2, 3]) and root["prompt_ids"] == [1, 2, 3]
    assert root["chosen_value"] > root["rejected_value"] + 0.1
    deep = by_depth[1]
    assert (deep["chosen"], deep["rejected"]) == ("Answer: 7", "Answer: 8")
    assert deep["prompt"] == decode([1, 2, 3]) + "1+6\n"
    assert deep["prompt_ids"] == [1, 2, 3] + [ord(c) for c in "1+6\n"]
    assert deep["chosen_eos"] and not root["chosen_eos"]
    assert all(p["round"] == 2 and p["problem_id"] == "p0" for p in pairs)
    json.dumps(pairs)  # JSONL-ready


def test_margin_and_depth_filters():
    t = _tree()
    assert extract_pairs([t], PairConfig(kinds=("sibling",), margin=5.0), decode=decode) == []
    only_root = extract_pairs([t], PairConfig(kinds=("sibling",), margin=0.1, max_depth=0), decode=decode)
    assert [p["depth"] for p in only_root] == [0]


def test_first_error_pairs_use_a_verified_sibling():
    pairs = extract_pairs([_tree()], PairConfig(kinds=("first_error",)), decode=decode)
    got = {(p["chosen"], p["rejected"], p["depth"]) for p in pairs}
    assert ("1+6\n", "1+5\n", 0) in got  # the first wrong step under the question
    assert ("Answer: 7", "Answer: 8", 1) in got


def test_trajectory_pairs_are_whole_solutions():
    pairs = extract_pairs([_tree()], PairConfig(kinds=("trajectory",)), decode=decode)
    assert pairs and all(p["depth"] == 0 for p in pairs)
    assert pairs[0]["chosen"] == "1+6\nAnswer: 7" and pairs[0]["rejected"].startswith("1+")


def test_no_sibling_pairs_without_a_correct_prefix():
    t = Tree(problem_id="p1", prompt="Q", prompt_ids=[1], answer="0")
    a = _step(t, ROOT, "x\n", visits=0)
    _step(t, a, "Answer: 1", terminal=True, verdict=WRONG, visits=1)
    _step(t, a, "Answer: 2", terminal=True, verdict=WRONG, visits=3, value=0.5)
    assert extract_pairs([t], PairConfig(kinds=("sibling",), margin=0.0), decode=decode) == []
    loose = PairConfig(kinds=("sibling",), margin=0.0, require_correct_prefix=False)
    assert len(extract_pairs([t], loose, decode=decode)) == 1


def test_dedup_balance_and_stats():
    trees = [_tree(), _tree()]  # identical trees: identical pairs are kept once
    pairs = extract_pairs(trees, PairConfig(margin=0.1), decode=decode)
    keys = [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs]
    assert len(keys) == len(set(keys))
    capped = extract_pairs([_tree()], PairConfig(margin=0.1, max_per_problem=1), decode=decode)
    assert len(capped) == 1
    s = pair_stats(pairs)
    assert s["pairs"] == len(pairs) and sum(s["by_kind"].values()) == len(pairs)


def test_correct_solutions_for_rft():
    sols = correct_solutions([_tree()])
    assert [s["completion"] for s in sols] == ["1+6\nAnswer: 7"]
    assert sols[0]["completion_ids"] == [ord(c) for c in "1+6\nAnswer: 7"]


def test_bad_config():
    with pytest.raises(ValueError, match="unknown pair kind"):
        PairConfig(kinds=("nope",))


def test_step_audit_counts_agreement_with_the_task_step_checker():
    from tasks.arithmetic import ArithmeticTask
    from treesearch.pairs import step_audit

    check = ArithmeticTask().check_step
    base = {"question": "Q: 1+2*3=?", "kind": "sibling"}
    pairs = [
        {**base, "prefix": "", "chosen": "1+6\n", "rejected": "1+5\n"},                  # clean
        {**base, "prefix": "", "chosen": "1+5\n", "rejected": "1+6\n"},                  # inverted
        {**base, "prefix": "1+6\n", "chosen": "8\n", "rejected": "9\n"},                 # both wrong
        {**base, "prefix": "1+6\n7\n", "chosen": "Answer: 7", "rejected": "Answer: 8"},  # clean, last line
        {**base, "kind": "trajectory", "prefix": "", "chosen": "x", "rejected": "y"},    # skipped
        {**base, "prefix": "1+5\n", "chosen": "7\n", "rejected": "6\n"},                 # inverted, wrong prefix
    ]
    got = step_audit(pairs, check)
    assert got == {"audited": 5, "clean": 0.4, "inverted": 0.4, "both_wrong": 0.2, "both_right": 0.0,
                   "right_prefix": 0.8, "clean_right_prefix": 0.5, "inverted_right_prefix": 0.25}


def test_solution_audit_finds_right_answers_reached_through_wrong_lines():
    from tasks.arithmetic import ArithmeticTask

    t = Tree(problem_id="p", prompt="Q: 1+2*3=?", prompt_ids=[1])
    right = _chain(t, ["1+6\n", "7\n", "Answer: 7"])
    lucky = _chain(t, ["1+5\n", "7\n", "Answer: 7"])  # a wrong line, then the right answer anyway
    _chain(t, ["1+6\n", "8\n", "Answer: 8"], verdict=0)  # wrong answers are not counted
    for n in (right, lucky):
        t.verdict[n] = 1
    assert solution_audit([t], ArithmeticTask().check_step) == {"correct_solutions": 2, "correct_with_wrong_line": 0.5}


def _chain(tree, steps, verdict=None):
    node = 0
    for i, text in enumerate(steps):
        same = [c for c in tree.children[node] if tree.text[c] == text]
        last = i == len(steps) - 1
        node = same[0] if same else tree.add_child(node, text=text, token_ids=[ord(c) for c in text], logprobs=[0.0] * len(text),
                                                   finish_reason="eos" if last else "stop", terminal=last)
    if verdict is not None:
        tree.verdict[node] = verdict
    return node
