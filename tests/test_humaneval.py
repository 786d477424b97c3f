"""HumanEval through the sandbox: every canonical solution passes, broken ones fail."""
from __future__ import annotations

import gzip
import json
import re

import pytest

from verifiers import code as vc
from verifiers.humaneval import humaneval_job, humaneval_problems


@pytest.fixture(scope="module")
def problems():
    return humaneval_problems()


def test_loader_reads_all_164_problems(problems):
    assert len(problems) == 164
    assert [p["task_id"] for p in problems] == [f"HumanEval/{i}" for i in range(164)]
    for p in problems:
        assert p["entry_point"].isidentifier() and f"def {p['entry_point']}" in p["prompt"]
        assert "def check(candidate)" in p["test"]


def test_loader_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"task_id": "x", "prompt": "", "canonical_solution": "", "test": "", "entry_point": "f"}) + "\n")
        f.write("{not json\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl\.gz:2: bad JSON"):
        humaneval_problems(str(path))
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"task_id": "x", "prompt": ""}) + "\n")
    with pytest.raises(ValueError, match=r":1: missing or non-string field 'canonical_solution'"):
        humaneval_problems(str(path))


def test_all_canonical_solutions_pass(problems):
    results = vc.check_batch([humaneval_job(p, p["canonical_solution"]) for p in problems], workers=2, timeout=10.0)
    failed = [(p["task_id"], r.status, r.detail) for p, r in zip(problems, results) if not r.passed]
    assert failed == []
    assert {r.isolation for r in results} == {vc.isolation_available()}


def _off_by_one(solution: str) -> str:
    """Break a solution without making it crash: nudge every `return <expr>`."""
    return re.sub(r"return (.+)", r"return _nudge(\1)", solution)


NUDGE = '''
def _nudge(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 1
    if isinstance(v, str):
        return v + "x"
    if isinstance(v, (list, tuple)):
        return type(v)(list(v) + [0])
    return None
'''


def test_broken_solutions_fail(problems):
    sample = problems[::8]  # 21 problems across the set
    jobs = []
    for p in sample:
        jobs.append(humaneval_job(p, "    return None\n"))
        jobs.append(humaneval_job(p, re.sub(r"\breturn\b", "return None and", p["canonical_solution"])))
        jobs.append({**humaneval_job(p, _off_by_one(p["canonical_solution"])), "program": NUDGE + p["prompt"] + _off_by_one(p["canonical_solution"])})
        jobs.append(humaneval_job(p, "    raise NotImplementedError\n"))
        jobs.append(humaneval_job(p, "    import sys\n    sys.exit(0)\n"))
    results = vc.check_batch(jobs, workers=2, timeout=10.0)
    passed = [(jobs[i]["entry_point"], i % 5) for i, r in enumerate(results) if r.passed]
    assert passed == []
    assert {r.status for r in results} <= {"failed", "crashed"}


def test_wrong_but_plausible_completion_names_the_assert(problems):
    p = problems[0]  # has_close_elements: compare with <= instead of <
    broken = p["canonical_solution"].replace("distance < threshold", "distance <= threshold + 1")
    r = vc.check(**humaneval_job(p, broken))
    assert r.status == "failed" and r.failing_assertion and r.failing_assertion.startswith("assert candidate(")
