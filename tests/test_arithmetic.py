"""The built-in arithmetic family: determinism, disjoint splits, exact verification, step checks."""
import random

import pytest

from tasks import get_task
from tasks.arithmetic import ArithmeticTask, parse, reduce_once, render
from verifiers.exact import check_exact, extract_final_answer


def test_generation_is_deterministic(arithmetic):
    a = arithmetic.problems("train", 50, seed=3)
    b = arithmetic.problems("train", 50, seed=3)
    c = arithmetic.problems("train", 50, seed=4)
    assert a == b
    assert [p.prompt for p in a] != [p.prompt for p in c]


def test_asking_for_more_extends_the_same_stream(arithmetic):
    assert arithmetic.problems("test", 20, seed=1)[:10] == arithmetic.problems("test", 10, seed=1)


def test_splits_are_disjoint(arithmetic):
    train = {p.meta["expr"] for p in arithmetic.problems("train", 3000, seed=0)}
    test = {p.meta["expr"] for seed in range(3) for p in arithmetic.problems("test", 500, seed=seed)}
    assert len(test) > 1000
    assert not train & test


@pytest.mark.parametrize("n_ops", [2, 3, 4, 5])
def test_operation_count_and_step_count(arithmetic, n_ops):
    for p in arithmetic.problems("test", 30, seed=0, n_ops=n_ops):
        assert p.meta["n_ops"] == n_ops
        lines = p.solution.split("\n")
        assert len(lines) == n_ops + 1 and lines[-1].startswith("Answer: ")


def test_verifier_accepts_the_generators_own_solutions(arithmetic):
    for p in arithmetic.problems("test", 300, seed=2):
        assert arithmetic.score(p, p.solution) == 1.0
        assert check_exact(p.answer, p.solution)


def test_verifier_rejects_corrupted_solutions(arithmetic):
    rng = random.Random(0)
    for p in arithmetic.problems("test", 200, seed=5):
        wrong = str(int(p.answer) + rng.choice([-10, -1, 1, 7]))
        corrupted = p.solution.rsplit("Answer: ", 1)[0] + f"Answer: {wrong}"
        assert arithmetic.score(p, corrupted) == 0.0
        assert arithmetic.score(p, p.solution.rsplit("\n", 1)[0]) == 0.0  # no answer line


def test_answers_match_the_expression_value(arithmetic):
    for p in arithmetic.problems("test", 200, seed=7):
        nums, ops = parse(p.meta["expr"])
        while ops:  # independent evaluation with precedence, via reduce_once
            nums, ops = reduce_once(nums, ops)
        assert str(nums[0]) == p.answer


def test_every_step_checks_and_corruptions_do_not(arithmetic):
    for p in arithmetic.problems("test", 100, seed=9):
        prev = p.prompt
        for line in p.solution.split("\n"):
            assert arithmetic.check_step(prev, line), (prev, line)
            bad = line[:-1] + str((int(line[-1]) + 1) % 10)
            assert not arithmetic.check_step(prev, bad), (prev, bad)
            prev = line if not line.startswith("Answer") else prev


@pytest.mark.parametrize(
    "text, expected",
    [("1+2\nAnswer: 3", "3"), ("Answer: -14", "-14"), ("Answer: +007", "7"), ("no answer", None),
     ("Answer: 1\nAnswer: 2", "2"), ("Answer:   5  ", "5")],
)
def test_extract_final_answer(text, expected):
    assert extract_final_answer(text) == expected


def test_parse_rejects_garbage():
    assert parse("1+*2") is None and parse("abc") is None and parse("") is None and parse("1+2+") is None
    assert parse("-3+4*5") == ([-3, 4, 5], ["+", "*"])
    assert render([-3, 4, 5], ["+", "*"]) == "-3+4*5"


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed"):
        ArithmeticTask().problems("test", 3, seed=seed)


def test_bad_split_and_unknown_task():
    with pytest.raises(ValueError, match="split"):
        ArithmeticTask().problems("validation", 3)
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        get_task("nope")
