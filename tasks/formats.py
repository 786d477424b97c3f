"""Problems from the user's own JSONL files in the published GSM8K, MATH and MBPP formats.

A file is named ``FORMAT:PATH`` (``get_task("gsm8k:data/test.jsonl")``), so a
researcher with those files on disk runs them unchanged. One record per line
(``.gz`` is read transparently):

    gsm8k  {"question": "Natalia sold clips to 48 ...", "answer": "... <<48/2=24>> ...\\n#### 72"}
           gold = the text after the last ``####`` (thousands commas dropped); the
           reference solution is the reasoning lines, calculator annotations
           ``<<...>>`` removed, then ``Answer: 72``.
    math   {"problem": "...", "solution": "... $\\boxed{\\frac{1}{2}}$.", "level": ..., "type": ...}
           gold = the content of the last ``\\boxed{}`` (or ``\\fbox{}``) in the
           solution, nested braces included.
    mbpp   {"task_id": 11, "text": "Write a python function ...", "code": "def ...",
            "test_list": ["assert ...", ...], "test_setup_code": ""}
           the prompt is the MBPP paper's; tests run in the code sandbox.

Every line is loaded; a line with bad JSON or a missing or ill-typed field is a
ValueError ``FILE:LINE: ...`` naming the field, and nothing is skipped but
blank lines. Problem ids come from the record's ``id``, ``task_id`` or
``unique_id`` (duplicates are an error), else ``FORMAT-LINENO``.

The split is the whole file, whichever split is asked for: ``problems(split, n,
seed=0)`` is the first n records in file order, and ``seed=k > 0`` the first n
of a shuffle seeded by k (`tasks.base.take`). Asking for more than the file
holds is an error.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable, Iterator

from tasks.base import Problem, check_split, take
from treesearch.io import read_jsonl_numbered, require

FORMATS = ("gsm8k", "math", "mbpp")
# The first verifier of each format is its default.
FORMAT_VERIFIERS = {"gsm8k": ("math", "exact"), "math": ("math",), "mbpp": ("code",)}
ID_FIELDS = ("id", "task_id", "unique_id")
DEFAULT_TIMEOUT = 10.0

MBPP_PROMPT = (
    "You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n{tests}"
)

_HASHES = re.compile(r"^[ \t]*####[ \t]*(.*?)[ \t]*$", re.M)
_CALC = re.compile(r"<<[^<>]*>>")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ENTRY = re.compile(r"^\s*assert\s+(?:not\s+)?\(?\s*(?:set\(|math\.isclose\()?\s*([A-Za-z_]\w*)\s*\(")


def numbered_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; ValueError ``FILE:LINE: ...``."""
    return read_jsonl_numbered(path)


def _text(obj: dict, field: str, where: str) -> str:
    value = require(obj, field, str, where)
    if not value.strip():
        raise ValueError(f"{where}: field {field!r} is empty")
    return value


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}`` with balanced (nested) braces; None if none."""
    for m in reversed(list(_BOXED.finditer(text))):
        depth, start = 0, m.end() - 1
        for i in range(start, len(text)):
            c = text[i]
            if c in "{}" and text[i - 1] == "\\":
                continue  # \{ and \} are literal braces
            depth += 1 if c == "{" else -1 if c == "}" else 0
            if depth == 0:
                return text[start + 1 : i].strip()
    return None


def _record_id(obj: dict, fmt: str, lineno: int, where: str) -> str:
    for field in ID_FIELDS:
        if field in obj:
            return str(require(obj, field, (str, int), where))
    return f"{fmt}-{lineno}"


def gsm8k_problem(obj: dict, where: str) -> Problem:
    question, answer = _text(obj, "question", where), _text(obj, "answer", where)
    finals = _HASHES.findall(answer)
    if not finals or not finals[-1]:
        raise ValueError(f"{where}: field 'answer' has no final '#### ANSWER' line")
    gold = re.sub(r"(?<=\d),(?=\d{3})", "", finals[-1])
    reasoning = answer[: list(_HASHES.finditer(answer))[-1].start()]
    steps = [_CALC.sub("", line).strip() for line in reasoning.splitlines()]
    return Problem(
        id="",
        prompt=question.strip(),
        answer=gold,
        solution="\n".join([s for s in steps if s] + [f"Answer: {gold}"]),
    )


def math_problem(obj: dict, where: str) -> Problem:
    problem, solution = _text(obj, "problem", where), _text(obj, "solution", where)
    gold = last_boxed(solution)
    if not gold:
        raise ValueError(f"{where}: field 'solution' has no \\boxed{{...}} answer")
    meta = {k: obj[k] for k in ("level", "type", "subject") if isinstance(obj.get(k), (str, int))}
    return Problem(id="", prompt=problem.strip(), answer=gold, solution=solution.strip(), meta=meta)


def mbpp_problem(obj: dict, where: str) -> Problem:
    # MBPP's code uses \r\n line ends; normalise so solutions split into steps on "\n".
    text, code = _text(obj, "text", where), _text(obj, "code", where).replace("\r\n", "\n")
    tests = require(obj, "test_list", list, where)
    if not tests or not all(isinstance(t, str) and t.strip() for t in tests):
        raise ValueError(f"{where}: field 'test_list' must be a non-empty list of non-empty strings")
    setup = require(obj, "test_setup_code", str, where) if "test_setup_code" in obj else ""
    m = _ENTRY.match(tests[0])
    return Problem(
        id="",
        prompt=MBPP_PROMPT.format(text=text.strip(), tests="\n".join(tests)),
        answer=code,
        solution=code.strip("\n"),
        meta={"tests": list(tests), "setup": setup, "entry_point": m.group(1) if m else None},
    )


LOADERS: dict[str, Callable[[dict, str], Problem]] = {
    "gsm8k": gsm8k_problem,
    "math": math_problem,
    "mbpp": mbpp_problem,
}


def load(fmt: str, path: str | Path) -> list[Problem]:
    """Every record of `path` as a Problem; ValueError ``FILE:LINE: ...`` on the first bad one."""
    if fmt not in LOADERS:
        raise ValueError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    out: list[Problem] = []
    seen: dict[str, int] = {}
    for lineno, obj in numbered_records(path):
        where = f"{path}:{lineno}"
        p = LOADERS[fmt](obj, where)
        pid = _record_id(obj, fmt, lineno, where)
        if pid in seen:
            raise ValueError(f"{where}: duplicate id {pid!r} (first on line {seen[pid]})")
        seen[pid] = lineno
        out.append(dataclasses.replace(p, id=pid, meta={**p.meta, "line": lineno}))
    if not out:
        raise ValueError(f"{path}: no problems (the file is empty)")
    return out


class FormatTask:
    """A task over one user file; `verifier` is one of `FORMAT_VERIFIERS[fmt]` (default: the first)."""

    step_delimiter = "\n"

    def __init__(self, fmt: str, path: str | Path, *, name: str | None = None, verifier: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
        allowed = FORMAT_VERIFIERS[fmt]
        if verifier is not None and verifier not in allowed:
            raise ValueError(f"format {fmt!r} is checked by {' or '.join(allowed)}, not {verifier!r}")
        self.format, self.path = fmt, Path(path)
        self.name = name or f"{fmt}:{path}"
        self.verifier = verifier or allowed[0]
        self.timeout = timeout
        self._problems = load(fmt, path)

    def __len__(self) -> int:
        return len(self._problems)

    def problems(self, split: str, n: int, *, seed: int = 0) -> list[Problem]:
        """The first `n` records (seed 0: file order; else a seeded shuffle); the split is the whole file."""
        check_split(split)
        return take(self._problems, n, seed=seed, what=str(self.path))

    def score(self, problem: Problem, completion: str) -> float:
        if self.verifier == "exact":
            from verifiers.exact import check_exact

            return 1.0 if check_exact(problem.answer, completion) else 0.0
        if self.verifier == "math":
            from verifiers.math import check

            return 1.0 if check(problem.answer, completion, timeout=self.timeout).correct else 0.0
        from tasks.codegen import extract_code, run_tests

        entry = problem.meta.get("entry_point")
        program = extract_code(completion, entry)
        if problem.meta.get("setup"):
            program = problem.meta["setup"] + "\n" + program
        ok = run_tests(program, list(problem.meta["tests"]), timeout=self.timeout)
        return 1.0 if ok else 0.0
