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
           the prompt is the MBPP paper's; the completion's code runs in the code
           sandbox as program, then test_setup_code, then the asserts (the
           functions the asserts call may be named like builtins).

Every line is loaded; a line with bad JSON or a missing or ill-typed field is a
ValueError ``FILE:LINE: ...`` naming the field, and nothing is skipped but
blank lines. Problem ids come from the record's ``id``, ``task_id`` or
``unique_id`` (duplicates are an error, within a file and across train and test
files), else ``FORMAT-LINENO`` (``FORMAT-SPLIT-LINENO`` for separate split files).

Splits never overlap. A task is built from
  * one file (``gsm8k:data.jsonl``): a seeded hash split of it, each record in
    train or test by a hash of (split seed, question text), ``TEST_FRACTION``
    of them in test; or
  * separate files (``gsm8k:train=train.jsonl,test=test.jsonl``, either may be
    left out; a task without a split refuses to serve it). Problems whose
    question appears in both files are an error naming both lines.
``problems(split, n, seed=0)`` is the first n of that split in file order, and
``seed=k > 0`` the first n of a shuffle seeded by k (`tasks.base.take`).
Asking for more than the split holds is an error.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Callable, Iterator

from tasks.base import SPLITS, Problem, check_split, take
from treesearch.io import read_jsonl_numbered, require
from verifiers.answers import last_boxed

FORMATS = ("gsm8k", "math", "mbpp")
# The first verifier of each format is its default.
FORMAT_VERIFIERS = {"gsm8k": ("math", "exact"), "math": ("math",), "mbpp": ("code",)}
ID_FIELDS = ("id", "task_id", "unique_id")
DEFAULT_TIMEOUT = 10.0
TEST_FRACTION = 0.2  # of a single file's records that the hash split puts in test

MBPP_PROMPT = (
    "You are an expert Python programmer, and here is your task: {text} Your code should pass these tests:\n\n{tests}"
)

_HASHES = re.compile(r"^[ \t]*####[ \t]*(.*?)[ \t]*$", re.M)
_CALC = re.compile(r"<<[^<>]*>>")
_ENTRY = re.compile(r"^\s*assert\s+(?:not\s+)?\(?\s*(?:set\(|math\.isclose\()?\s*([A-Za-z_]\w*)\s*\(")


def numbered_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; ValueError ``FILE:LINE: ...``."""
    return read_jsonl_numbered(path)


def _text(obj: dict, field: str, where: str) -> str:
    value = require(obj, field, str, where)
    if not value.strip():
        raise ValueError(f"{where}: field {field!r} is empty")
    return value


def _record_id(obj: dict, prefix: str, lineno: int, where: str) -> str:
    for field in ID_FIELDS:
        if field in obj:
            return str(require(obj, field, (str, int), where))
    return f"{prefix}-{lineno}"


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


def load(fmt: str, path: str | Path, *, id_prefix: str | None = None) -> list[Problem]:
    """Every record of `path` as a Problem; ValueError ``FILE:LINE: ...`` on the first bad one.

    A record without an id field gets ``{id_prefix}-{line}`` (default prefix: the format)."""
    if fmt not in LOADERS:
        raise ValueError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    out: list[Problem] = []
    seen: dict[str, int] = {}
    for lineno, obj in numbered_records(path):
        where = f"{path}:{lineno}"
        p = LOADERS[fmt](obj, where)
        pid = _record_id(obj, id_prefix or fmt, lineno, where)
        if pid in seen:
            raise ValueError(f"{where}: duplicate id {pid!r} (first on line {seen[pid]})")
        seen[pid] = lineno
        out.append(dataclasses.replace(p, id=pid, meta={**p.meta, "line": lineno}))
    if not out:
        raise ValueError(f"{path}: no problems (the file is empty)")
    return out


def parse_files(spec: str) -> dict[str, str | None]:
    """``PATH`` -> {"path": PATH}; ``train=A,test=B`` (either part optional) -> {"train": A, "test": B}."""
    if not spec.startswith(("train=", "test=")):
        return {"path": spec, "train": None, "test": None}
    out: dict[str, str | None] = {"path": None, "train": None, "test": None}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in SPLITS or not value:
            raise ValueError(f"bad file list {spec!r}: expected train=PATH,test=PATH (got part {part!r})")
        if out[key] is not None:
            raise ValueError(f"bad file list {spec!r}: {key} given twice")
        out[key] = value
    return out


def hash_split(problem: Problem, *, seed: int, test_fraction: float) -> str:
    """"train" or "test" for a record of a single file, from a hash of (seed, question): stable and disjoint."""
    digest = hashlib.sha256(f"{seed}\0{problem.prompt}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def _disjoint(train: list[Problem], test: list[Problem], train_path: str, test_path: str) -> None:
    seen = {p.prompt: p for p in train}
    ids = {p.id: p for p in train}
    for p in test:
        if p.id in ids:
            raise ValueError(f"{test_path}:{p.meta['line']}: id {p.id!r} is also in the train file "
                             f"({train_path}:{ids[p.id].meta['line']}); ids must be unique across splits")
        if p.prompt in seen:
            q = seen[p.prompt]
            raise ValueError(
                f"{test_path}:{p.meta['line']}: field 'question' is also in the train file "
                f"({train_path}:{q.meta['line']}); train and test must not overlap"
            )


class FormatTask:
    """A task over a user's file(s); `verifier` is one of `FORMAT_VERIFIERS[fmt]` (default: the first).

    path: one file, hash-split; or train / test: one file per split (see the module docstring).
    """

    step_delimiter = "\n"

    def __init__(self, fmt: str, path: str | Path | None = None, *, train: str | Path | None = None,
                 test: str | Path | None = None, name: str | None = None, verifier: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, split_seed: int = 0, test_fraction: float = TEST_FRACTION):
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
        allowed = FORMAT_VERIFIERS[fmt]
        if verifier is not None and verifier not in allowed:
            raise ValueError(f"format {fmt!r} is checked by {' or '.join(allowed)}, not {verifier!r}")
        if (path is None) == (train is None and test is None):
            raise ValueError(f"format {fmt!r} needs either one file or train=/test= files")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.format = fmt
        self.path = Path(path) if path is not None else None
        self.name = name or f"{fmt}:{path if path is not None else f'train={train},test={test}'}"
        self.verifier = verifier or allowed[0]
        self.timeout = timeout
        self.isolation = "auto"
        self._gold_ok: set[str] = set()
        self._split: dict[str, list[Problem]] = {}
        self._where: dict[str, str] = {}
        if path is not None:
            records = load(fmt, path)
            for split in SPLITS:
                self._split[split] = [p for p in records if hash_split(p, seed=split_seed, test_fraction=test_fraction) == split]
                self._where[split] = f"{path} ({split} part of a hash split, seed {split_seed})"
        else:
            for split, file in (("train", train), ("test", test)):
                if file is not None:  # line-numbered ids name the split: gsm8k-train-1 is not gsm8k-test-1
                    self._split[split] = load(fmt, file, id_prefix=f"{fmt}-{split}")
                    self._where[split] = str(file)
            if train is not None and test is not None:
                _disjoint(self._split["train"], self._split["test"], str(train), str(test))
        self.splits = tuple(s for s in SPLITS if s in self._split)

    def __len__(self) -> int:
        return sum(len(v) for v in self._split.values())

    def problems(self, split: str, n: int, *, seed: int = 0) -> list[Problem]:
        """The first `n` problems of `split` (seed 0: file order; else a seeded shuffle)."""
        check_split(split)
        if split not in self._split:
            raise ValueError(f"task {self.name!r} has no {split!r} split (give {split}=PATH)")
        drawn = take(self._split[split], n, seed=seed, what=self._where[split])
        if self.verifier == "math":
            self._check_golds(drawn, split)
        return drawn

    def _check_golds(self, problems: list[Problem], split: str) -> None:
        """ValueError ``FILE:LINE: field ...`` for a gold answer the math verifier cannot read (never a silent 0)."""
        from verifiers.math import gold_problem

        field = {"gsm8k": "answer", "math": "solution"}[self.format]
        file = str(self.path) if self.path is not None else self._where[split]
        for p in problems:
            if p.id in self._gold_ok:
                continue
            why = gold_problem(p.answer)
            if why is not None:
                raise ValueError(f"{file}:{p.meta['line']}: field {field!r}: gold answer {p.answer[:80]!r} {why}")
            self._gold_ok.add(p.id)

    def score(self, problem: Problem, completion: str) -> float:
        if self.verifier == "exact":
            from verifiers.exact import check_exact

            return 1.0 if check_exact(problem.answer, completion) else 0.0
        if self.verifier == "math":
            from verifiers.math import check

            return 1.0 if check(problem.answer, completion, timeout=self.timeout).correct else 0.0
        from tasks.codegen import extract_code
        from verifiers.code import check

        tests = list(problem.meta["tests"])
        program = extract_code(completion, problem.meta.get("entry_point"))
        # as published: program, then setup, then the asserts; the functions the asserts call may
        # carry a builtin's name (MBPP 126 defines `sum`)
        subjects = sorted({m.group(1) for m in map(_ENTRY.match, tests) if m})
        result = check(program, tests, setup=problem.meta.get("setup") or "", subjects=subjects, timeout=self.timeout,
                       isolation=self.isolation)
        return 1.0 if result.passed else 0.0
