"""Evaluation metrics: the unbiased pass@k estimator and majority vote."""
import itertools
import math

import pytest

from treesearch.evaluate import majority, pass_at_k


@pytest.mark.parametrize("n, c", [(5, 0), (5, 1), (5, 3), (5, 5), (8, 2), (10, 7)])
def test_pass_at_k_equals_exhaustive_subsets(n, c):
    for k in range(1, n + 1):
        flags = [1] * c + [0] * (n - c)
        subsets = list(itertools.combinations(range(n), k))
        exact = sum(any(flags[i] for i in s) for s in subsets) / len(subsets)
        assert math.isclose(pass_at_k(n, c, k), exact, abs_tol=1e-12)


def test_pass_at_k_needs_enough_samples():
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_majority_vote():
    assert majority(["3", "4", "4", None, "3", "4"]) == "4"
    assert majority(["5", "6"]) == "5"  # tie -> earliest
    assert majority([None, None]) is None


def test_majority_groups_by_the_given_equivalence():
    same = lambda a, b: float(a) == float(b)
    assert majority(["0.5", "1", ".5", "1", "0.50"], same) == "0.5"
    assert majority(["0.5", "1", ".5", "1", "0.50"]) == "1"
