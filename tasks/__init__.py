"""Task suites: thin adapters that generate or load problems and judge completions."""
from tasks.base import Problem, Task

__all__ = ["Problem", "Task", "get_task", "TASKS"]


def _arithmetic():
    from tasks.arithmetic import ArithmeticTask

    return ArithmeticTask()


TASKS = {"arithmetic": _arithmetic}


def get_task(name: str) -> Task:
    """The task adapter called `name`; ValueError naming the known ones otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]()
