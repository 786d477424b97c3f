"""Outcome verifiers: judge a completion's final answer or program, never trusting it.

- `verifiers.exact`: ``Answer: N`` lines compared as strings (the arithmetic task).
- `verifiers.answers`: where a completion states its final answer (``\\boxed{}``,
  ``#### n``, ``# Answer``, "Final Answer:", "The answer is:") as pure string work
  (`final_answer`, `last_boxed`).
- `verifiers.math`: math-verify extraction and equivalence in worker processes
  with hard timeouts (`check_math`, `check_math_batch`, `same_math_answer` for votes).
- `verifiers.code`: programs run against tests in a sandbox that fails closed
  without bubblewrap (`check_code`, `check_code_batch`, `SandboxUnavailable`);
  HumanEval data via `humaneval_problems`.

Every checker returns a small frozen result dataclass and does not raise on
model output. Importing this package loads only the standard library; sympy
and math-verify load inside the math workers.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> (submodule, attribute); resolved on first access so that
# `import verifiers.exact` stays cheap for the arithmetic task.
_EXPORTS = {
    "check_exact": ("exact", "check_exact"),
    "extract_final_answer": ("exact", "extract_final_answer"),
    "final_answer": ("answers", "final_answer"),
    "last_boxed": ("answers", "last_boxed"),
    "MathResult": ("math", "MathResult"),
    "extract_answer": ("math", "extract_answer"),
    "check_math": ("math", "check"),
    "check_math_batch": ("math", "check_batch"),
    "same_math_answer": ("math", "same_answer"),
    "MathRules": ("math", "Rules"),
    "CodeResult": ("code", "CodeResult"),
    "check_code": ("code", "check"),
    "check_code_batch": ("code", "check_batch"),
    "SandboxUnavailable": ("code", "SandboxUnavailable"),
    "allow_weak_sandbox": ("code", "allow_weak_sandbox"),
    "humaneval_problems": ("humaneval", "humaneval_problems"),
    "humaneval_job": ("humaneval", "humaneval_job"),
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'verifiers' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(f"verifiers.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from verifiers.answers import final_answer, last_boxed
    from verifiers.code import CodeResult, SandboxUnavailable, allow_weak_sandbox
    from verifiers.code import check as check_code
    from verifiers.code import check_batch as check_code_batch
    from verifiers.exact import check_exact, extract_final_answer
    from verifiers.humaneval import humaneval_job, humaneval_problems
    from verifiers.math import MathResult, extract_answer
    from verifiers.math import Rules as MathRules
    from verifiers.math import same_answer as same_math_answer
    from verifiers.math import check as check_math
    from verifiers.math import check_batch as check_math_batch
