"""A bounded, thread-safe least-recently-used map of verdicts, shared by the math and code verifiers.

A verdict that depends only on its inputs (a math-verify comparison, a program's tests passing) is
stored under a key of those inputs; verdicts that depend on the machine (a timeout, a crashed
worker) are not stored by the callers. A forked child starts with the parent's entries and a fresh
lock (the parent's may have been held by a thread the child does not have).
"""
from __future__ import annotations

import collections
import os
import threading
from typing import Generic, Hashable, TypeVar

V = TypeVar("V")


class VerdictCache(Generic[V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: collections.OrderedDict[Hashable, V] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = 0
        os.register_at_fork(after_in_child=self._fresh_lock)

    def _fresh_lock(self) -> None:
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The stored verdict (now the most recently used), or None; counted as a hit or a miss."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                self._misses += 1
            else:
                self._items.move_to_end(key)
                self._hits += 1
            return hit

    def put(self, key: Hashable, value: V) -> None:
        """Store `value`, dropping the least recently used entry past `size`."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            if len(self._items) > self.size:
                self._items.popitem(last=False)

    def info(self) -> dict[str, int]:
        """{"hits", "misses", "size"}."""
        with self._lock:
            return {"hits": self._hits, "misses": self._misses, "size": len(self._items)}

    def clear(self) -> None:
        """Drop every entry and zero the counts."""
        with self._lock:
            self._items.clear()
            self._hits = self._misses = 0
