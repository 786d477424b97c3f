"""Task suites: thin adapters that generate or load problems and judge completions.

`get_task(name)` accepts
  * a built-in suite name (one YAML file each in ``tasks/suites/``; `TASKS` lists them),
  * ``FORMAT:PATH`` for a user's JSONL file in a published format (gsm8k, math, mbpp),
  * the path of a suite YAML file (``my_suite.yaml``; see `tasks.suite`).
"""
import functools

from tasks.base import Problem, Task
from tasks.formats import FORMATS
from tasks.suite import SuiteSpec, SuiteTask, build, builtin_names, builtin_spec, format_spec, load_suite

__all__ = ["Problem", "Task", "SuiteSpec", "SuiteTask", "get_task", "get_suite", "TASKS", "FORMATS"]


def _builtin(name: str) -> SuiteTask:
    return build(builtin_spec(name))


# name -> factory; listing the suite folder reads no YAML, so importing `tasks` stays cheap.
TASKS = {name: functools.partial(_builtin, name) for name in builtin_names()}


def get_suite(name: str) -> SuiteSpec:
    """The spec of a built-in suite, ``FORMAT:PATH`` or suite YAML file (nothing is loaded or generated)."""
    if name in TASKS:
        return builtin_spec(name)
    fmt, sep, path = name.partition(":")
    if sep and fmt in FORMATS:
        return format_spec(fmt, path)
    if name.endswith((".yaml", ".yml")):
        return load_suite(name)
    if name in FORMATS:
        raise ValueError(f"format {name!r} needs a file: {name}:PATH")
    raise ValueError(
        f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}; "
        f"or FORMAT:PATH with FORMAT one of {', '.join(FORMATS)}; or a suite .yaml file"
    )


def get_task(name: str) -> Task:
    """The task called `name` (a `SuiteTask`); ValueError naming the known suites and formats otherwise."""
    if name in TASKS:
        return TASKS[name]()
    return build(get_suite(name))
