"""A thread-safe pool of long-lived worker processes, shared by the math and code verifiers.

Threads `acquire` an idle worker (starting a new one while fewer than `size`
exist, else waiting) and `give_back` it: a healthy one goes back to the idle
list; an unhealthy one is dropped, or swapped for a `replacement` started by the
caller. `drain` hands the idle workers to the caller for shutdown.
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

W = TypeVar("W")


class WorkerPool(Generic[W]):
    def __init__(self, factory: Callable[[], W], size: int) -> None:
        self.factory, self.size = factory, size
        self._idle: list[W] = []
        self._count = 0
        self._cond = threading.Condition()

    def acquire(self) -> W:
        with self._cond:
            while not self._idle and self._count >= self.size:
                self._cond.wait()
            if self._idle:
                return self._idle.pop()
            self._count += 1
        try:
            return self.factory()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def give_back(self, worker: W, healthy: bool, *, replacement: W | None = None) -> None:
        """Return `worker`; when it is not healthy the caller has killed it, and `replacement` takes its place."""
        with self._cond:
            if healthy:
                self._idle.append(worker)
            elif replacement is not None:
                self._idle.append(replacement)
            else:
                self._count -= 1
            self._cond.notify()

    def adopt(self, worker: W) -> None:
        """Take a worker started outside the pool as an idle one."""
        with self._cond:
            self._count += 1
            self._idle.append(worker)
            self._cond.notify()

    def grow(self, size: int) -> None:
        with self._cond:
            self.size = max(self.size, size)
            self._cond.notify_all()

    def drain(self) -> list[W]:
        """Remove and return the idle workers (the caller shuts them down)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        return idle
