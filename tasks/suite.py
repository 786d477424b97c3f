"""Task suites: a small declarative YAML spec per suite, loaded strictly, built into a task.

A suite file (``tasks/suites/NAME.yaml`` for the built-in ones, in the spirit of
lm-evaluation-harness task configs)::

    name: linear
    description: Linear equations in x with integer solutions, one rewrite per line.
    source:
      generator: tasks.linear:LinearTask     # or  format: gsm8k + path: test.jsonl
    prompt_template: chat                    #     or  dataset: humaneval
    step_delimiter: "\\n"
    verifier: exact                          # exact | math | code | expression
    splits: [train, test]
    few_shot:                                # optional
      - prompt: "Q: Solve for x: 2x+1=7"
        solution: "2x=6\\nx=3\\nAnswer: 3"

Keys:
  name, description: how the suite is listed (``treesearch tasks``).
  source: where problems come from, exactly one of
      ``generator: MODULE:CLASS`` (a task adapter built with no arguments),
      ``format: gsm8k|math|mbpp`` with ``path:`` (a JSONL file in that published
      format, relative to the YAML file's folder, hash-split into train and
      test) or ``train:`` / ``test:`` (one file per split), ``dataset: humaneval``.
  prompt_template: ``chat`` (the tokenizer's chat template) or a format string
      with a ``{prompt}`` field, for base models (see `treesearch.prompting`).
  step_delimiter: what separates reasoning steps in a solution.
  verifier: how a completion is judged; for a generator it must be the
      adapter's own (its ``verifier`` attribute, when it has one).
  splits: the splits the suite offers (a subset of train, test).
  few_shot: worked examples prepended to every problem's user turn as
      ``PROMPT\\nSOLUTION`` blocks separated by blank lines.

Loading is strict: an unknown or missing key, or a value of the wrong kind, is
a ValueError naming the YAML file and the key (``source.path`` for nested ones).
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any

from tasks.base import SPLITS, Problem, check_split
from treesearch.prompting import CHAT

SUITES_DIR = Path(__file__).resolve().parent / "suites"
VERIFIERS = ("exact", "math", "code", "expression")
DATASETS = {"humaneval": "tasks.humaneval:HumanEvalTask"}

REQUIRED = ("name", "description", "source", "prompt_template", "step_delimiter", "verifier", "splits")
OPTIONAL = ("few_shot",)
SOURCE_KEYS = ("generator", "format", "path", "train", "test", "dataset")
_GENERATOR = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_NAME = re.compile(r"[A-Za-z0-9][\w.+-]*")


@dataclasses.dataclass(frozen=True)
class Source:
    """Exactly one of: generator (``MODULE:CLASS``), format (with path, or train / test), dataset."""

    generator: str | None = None
    format: str | None = None
    path: str | None = None
    dataset: str | None = None
    train: str | None = None
    test: str | None = None

    def describe(self) -> str:
        if self.generator:
            return f"generator {self.generator}"
        if self.format:
            files = self.path or ",".join(f"{k}={v}" for k, v in (("train", self.train), ("test", self.test)) if v)
            return f"format {self.format}:{files}"
        return f"dataset {self.dataset}"

    def file_splits(self) -> tuple[str, ...]:
        """The splits a format source's files give (both for one hash-split file)."""
        if self.path:
            return SPLITS
        return tuple(s for s in SPLITS if getattr(self, s))


@dataclasses.dataclass(frozen=True)
class FewShot:
    prompt: str
    solution: str


@dataclasses.dataclass(frozen=True)
class SuiteSpec:
    """One suite, as loaded from `file` ("" when built in code, e.g. for ``FORMAT:PATH``)."""

    name: str
    description: str
    source: Source
    prompt_template: str
    step_delimiter: str
    verifier: str
    splits: tuple[str, ...]
    few_shot: tuple[FewShot, ...] = ()
    file: str = ""

    def few_shot_prefix(self) -> str:
        """The text put before each problem's prompt ("" without examples)."""
        return "".join(f"{ex.prompt}\n{ex.solution}\n\n" for ex in self.few_shot)


# ---------------------------------------------------------------- loading


def _str(data: dict, key: str, where: str, prefix: str = "") -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: key {prefix + key!r} must be a non-empty string, got {value!r}")
    return value


def _keys(data: Any, required: tuple[str, ...], optional: tuple[str, ...], where: str, prefix: str = "") -> dict:
    if not isinstance(data, dict):
        what = f"key {prefix.rstrip('.')!r}" if prefix else "the top level"
        raise ValueError(f"{where}: {what} must be a mapping, got {type(data).__name__}")
    known = required + optional
    for key in data:
        if key not in known:
            raise ValueError(f"{where}: unknown key {prefix + str(key)!r} (known: {', '.join(known)})")
    for key in required:
        if key not in data:
            raise ValueError(f"{where}: missing key {prefix + key!r}")
    return data


def _source(data: Any, where: str, base: Path | None) -> Source:
    data = _keys(data, (), SOURCE_KEYS, where, "source.")
    kinds = [k for k in ("generator", "format", "dataset") if k in data]
    if len(kinds) != 1:
        got = ", ".join(kinds) or "none"
        raise ValueError(f"{where}: key 'source' needs exactly one of generator, format, dataset; got {got}")
    for key in data:
        _str(data, key, where, "source.")
    for key in ("path", "train", "test"):
        if key in data and "format" not in data:
            raise ValueError(f"{where}: key 'source.{key}' goes only with 'source.format'")
    if "generator" in data:
        if not _GENERATOR.fullmatch(data["generator"]):
            raise ValueError(f"{where}: key 'source.generator' must be MODULE:CLASS, got {data['generator']!r}")
        return Source(generator=data["generator"])
    if "dataset" in data:
        if data["dataset"] not in DATASETS:
            known = ", ".join(DATASETS)
            raise ValueError(f"{where}: key 'source.dataset' must be one of {known}, got {data['dataset']!r}")
        return Source(dataset=data["dataset"])
    from tasks.formats import FORMATS

    if data["format"] not in FORMATS:
        raise ValueError(f"{where}: key 'source.format' must be one of {', '.join(FORMATS)}, got {data['format']!r}")
    files = [k for k in ("path", "train", "test") if k in data]
    if not files:
        raise ValueError(f"{where}: missing key 'source.path' (or 'source.train' / 'source.test')")
    if "path" in data and len(files) > 1:
        raise ValueError(f"{where}: key 'source.path' (one hash-split file) excludes 'source.train' / 'source.test'")

    def resolve(p: str) -> str:
        path = Path(p)
        if base is not None and not path.is_absolute():
            path = base / path  # relative to the suite file, so a suite works from any directory
        return str(path)

    return Source(format=data["format"], **{k: resolve(data[k]) for k in files})


def spec_from_dict(data: Any, where: str, *, base: Path | None = None) -> SuiteSpec:
    """A checked `SuiteSpec`; ValueError ``WHERE: ...`` naming the offending key."""
    data = _keys(data, REQUIRED, OPTIONAL, where)
    name, description = _str(data, "name", where), _str(data, "description", where)
    if not _NAME.fullmatch(name):
        raise ValueError(f"{where}: key 'name' must be letters, digits and _ . + -, got {name!r}")
    if "\n" in description.strip():
        raise ValueError(f"{where}: key 'description' must be one line")
    source = _source(data["source"], where, base)
    template = _str(data, "prompt_template", where)
    if template != CHAT:
        try:
            ok = "{prompt}" in template and template.format(prompt="") is not None
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f"{where}: key 'prompt_template' must be 'chat' or a format string whose only field is {{prompt}}"
            )
    delimiter = _str(data, "step_delimiter", where)
    verifier = _str(data, "verifier", where)
    if verifier not in VERIFIERS:
        raise ValueError(f"{where}: key 'verifier' must be one of {', '.join(VERIFIERS)}, got {verifier!r}")
    if source.format:
        from tasks.formats import FORMAT_VERIFIERS

        if verifier not in FORMAT_VERIFIERS[source.format]:
            allowed = " or ".join(FORMAT_VERIFIERS[source.format])
            raise ValueError(
                f"{where}: key 'verifier' must be {allowed} for format {source.format!r}, got {verifier!r}"
            )
    if source.dataset and verifier != "code":
        raise ValueError(f"{where}: key 'verifier' must be code for dataset {source.dataset!r}, got {verifier!r}")
    splits = data["splits"]
    ok = isinstance(splits, list) and bool(splits) and all(isinstance(s, str) and s in SPLITS for s in splits)
    if not ok or len(set(splits)) < len(splits):
        known = " / ".join(SPLITS)
        raise ValueError(f"{where}: key 'splits' must be a non-empty list of distinct {known}, got {splits!r}")
    if source.format:
        missing = [s for s in splits if s not in source.file_splits()]
        if missing:
            raise ValueError(f"{where}: key 'splits' names {', '.join(missing)}, but source has no file for it")
    few = data.get("few_shot") or []
    if not isinstance(few, list):
        raise ValueError(f"{where}: key 'few_shot' must be a list, got {type(few).__name__}")
    examples = []
    for i, ex in enumerate(few):
        ex = _keys(ex, ("prompt", "solution"), (), where, f"few_shot[{i}].")
        prefix = f"few_shot[{i}]."
        examples.append(FewShot(_str(ex, "prompt", where, prefix), _str(ex, "solution", where, prefix)))
    return SuiteSpec(name, description.strip(), source, template, delimiter, verifier, tuple(splits), tuple(examples))


def load_suite(path: str | Path) -> SuiteSpec:
    """Read and check one suite YAML file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: suite file not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{p}{line}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    spec = spec_from_dict(data, str(p), base=p.parent)
    return dataclasses.replace(spec, file=str(p))


def builtin_names() -> list[str]:
    """Names of the built-in suites (the YAML files in `SUITES_DIR`); reads no file."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def builtin_spec(name: str) -> SuiteSpec:
    spec = load_suite(SUITES_DIR / f"{name}.yaml")
    if spec.name != name:
        raise ValueError(f"{spec.file}: key 'name' is {spec.name!r}, but the file is named {name}.yaml")
    return spec


def format_spec(fmt: str, path: str) -> SuiteSpec:
    """The suite for a user file named ``FORMAT:PATH`` (path relative to the working directory)."""
    from tasks.formats import FORMAT_VERIFIERS, FORMATS

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    if not path:
        raise ValueError(f"format {fmt!r} needs a file: {fmt}:PATH or {fmt}:train=PATH,test=PATH")
    from tasks.formats import parse_files

    source = Source(format=fmt, **{k: v for k, v in parse_files(path).items() if v is not None})
    return SuiteSpec(
        name=f"{fmt}:{path}",
        description=f"{fmt} problems from {path}",
        source=source,
        prompt_template=CHAT,
        step_delimiter="\n",
        verifier=FORMAT_VERIFIERS[fmt][0],
        splits=source.file_splits(),
    )


# ---------------------------------------------------------------- building


class SuiteTask:
    """A task adapter together with its suite spec; the object `tasks.get_task` returns.

    `problems` and `score` go to the adapter (after checking the split and adding
    any few-shot prefix); other attributes the adapter has (``check_step``,
    ``check_operation``, ...) are reachable on this object too.
    """

    def __init__(self, spec: SuiteSpec, adapter: Any):
        self.spec, self.adapter = spec, adapter
        self.name = spec.name
        self.description = spec.description
        self.step_delimiter = spec.step_delimiter
        self.prompt_template = spec.prompt_template
        self.verifier = spec.verifier
        self.splits = spec.splits

    def problems(self, split: str, n: int, *, seed: int = 0, **kwargs: Any) -> list[Problem]:
        """`n` problems of `split` from the adapter; extra keywords (``n_ops=3``) go to it unchanged."""
        check_split(split)
        if split not in self.spec.splits:
            raise ValueError(f"suite {self.name!r} has no {split!r} split (splits: {', '.join(self.spec.splits)})")
        out = self.adapter.problems(split, n, seed=seed, **kwargs)
        prefix = self.spec.few_shot_prefix()
        if prefix:
            out = [dataclasses.replace(p, prompt=prefix + p.prompt) for p in out]
        return out

    def score(self, problem: Problem, completion: str) -> float:
        return self.adapter.score(problem, completion)

    def extract_answer(self, completion: str) -> str | None:
        """The final answer a completion states, for majority voting (None for code, or if absent).

        exact / expression: the last ``Answer:`` line; math: `verifiers.math.extract_answer`.
        """
        if self.verifier == "math":
            from verifiers.math import extract_answer

            return extract_answer(completion)
        if self.verifier == "code":
            return None
        from verifiers.exact import extract_final_answer

        return extract_final_answer(completion)

    def same_answer(self, a: str, b: str) -> bool:
        """Are two extracted answers one answer for votes? math: math-verify equivalence; else string equality."""
        if self.verifier == "math":
            from verifiers.math import same_answer

            return same_answer(a, b)
        return a == b

    def is_final(self, text: str) -> bool:
        """Does a path text hold a complete final answer (the search stops it there)?

        math: a marked answer (`verifiers.answers.final_answer`) whose line is complete;
        others: the adapter's own ``is_final``, else a finished ``Answer:`` line.
        """
        own = getattr(self.adapter, "is_final", None)
        if own is not None:
            return own(text)
        from treesearch.search.expand import answer_line_done

        if self.verifier == "math":
            from verifiers.answers import final_answer

            return text.endswith("\n") and final_answer(text) is not None
        return answer_line_done(text)

    def __getattr__(self, attr: str) -> Any:
        adapter = self.__dict__.get("adapter")
        if adapter is None or attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(adapter, attr)

    def __repr__(self) -> str:
        return f"SuiteTask({self.name!r}, {self.spec.source.describe()})"


def _import(target: str, where: str) -> Any:
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{where}: cannot import {target!r} ({e})") from None


def build(spec: SuiteSpec) -> SuiteTask:
    """The task for `spec`; a generator adapter must agree with the spec's delimiter and verifier."""
    where = spec.file or spec.name
    if spec.source.format:
        from tasks.formats import FormatTask

        src = spec.source
        adapter = FormatTask(src.format, src.path, train=src.train, test=src.test, name=spec.name, verifier=spec.verifier)
        adapter.step_delimiter = spec.step_delimiter
        return SuiteTask(spec, adapter)
    target = spec.source.generator or DATASETS[spec.source.dataset]
    adapter = _import(target, where)()
    if adapter.step_delimiter != spec.step_delimiter:
        raise ValueError(
            f"{where}: key 'step_delimiter' is {spec.step_delimiter!r} but {target} uses {adapter.step_delimiter!r}"
        )
    own = getattr(adapter, "verifier", None)
    if own is not None and own != spec.verifier:
        raise ValueError(f"{where}: key 'verifier' is {spec.verifier!r} but {target} is checked by {own!r}")
    return SuiteTask(spec, adapter)
