"""The sandbox's wire format: length-prefixed JSON frames and tagged values (stdlib only).

Loaded by `_sandbox_server.py` from its own folder by file path (never put on
``sys.path``: the folder also holds ``math.py``), in the launcher, the fork
server and every candidate alike, so both ends of a pipe share one codec.

Frames are a 4-byte big-endian length followed by UTF-8 JSON. Values are
rebuilt by type and content on the receiving side (`encode` / `decode`), so no
method of the sender's objects ever runs on the receiving side.
"""
from __future__ import annotations

import base64
import collections
import json
import os
import struct

MAX_FRAME = 32 << 20  # bytes; a candidate answer larger than this is a failure, not a tester OOM
MAX_DEPTH = 100


# ---------------------------------------------------------------- frames


def write_frame(fd: int, obj) -> None:
    data = json.dumps(obj).encode()
    data = struct.pack(">I", len(data)) + data
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, limit: int = MAX_FRAME):
    (n,) = struct.unpack(">I", _read_exact(fd, 4))
    if n > limit:
        raise ValueError(f"frame of {n} bytes exceeds {limit}")
    return json.loads(_read_exact(fd, n))


# ---------------------------------------------------------------- values


class Unserializable(TypeError):
    pass


# Builtin types a value may name (MBPP: ``remove_datatype(t, int)``), both ways.
TYPES = {t.__name__: t for t in (int, float, complex, str, bytes, bool, list, tuple, set, frozenset, dict,
                                  type(None), object, range, bytearray)}
_TYPE_NAMES = {t: n for n, t in TYPES.items()}
_NAMEDTUPLES: dict = {}  # (typename, fields) -> class rebuilt on this side


def _namedtuple_fields(t) -> tuple | None:
    """The field names of a namedtuple class (a tuple subclass with string ``_fields``), else None."""
    fields = getattr(t, "_fields", None)
    if issubclass(t, tuple) and type(fields) is tuple and all(type(f) is str for f in fields):
        return fields
    return None


def encode(obj, depth: int = 0, handle=None):
    """A JSON-able tagged form of a value built from exact builtin types only.

    Also carried, by type and content (never by the object's own methods): Counter,
    OrderedDict, defaultdict (its factory when it is a builtin type, else none),
    deque, namedtuples (rebuilt as a fresh namedtuple class of the same name and
    fields), builtin types themselves, and sets in their iteration order. Any other
    object: ``handle(obj)`` names it (["h", id]) when a handle table is given, else
    Unserializable.
    """
    if depth > MAX_DEPTH:
        raise Unserializable("value nested too deeply")
    t = type(obj)
    if obj is None or t is bool or t is str:
        return obj
    if t is int:
        return obj if -(1 << 53) < obj < (1 << 53) else ["i", hex(obj)]  # hex: no digit-count limit
    if t is float:
        return ["F", obj] if obj != obj or obj in (float("inf"), float("-inf")) else obj
    if t is complex:
        return ["c", obj.real, obj.imag]
    if t is bytes:
        return ["b", base64.b64encode(obj).decode()]
    sub = lambda xs: [encode(x, depth + 1, handle) for x in xs]  # noqa: E731
    if t is _SetInOrder or t is _FrozenSetInOrder:  # a set this side rebuilt goes back as what it was
        t = set if t is _SetInOrder else frozenset
    if t is list or t is tuple or t is set or t is frozenset:
        tag = {list: "l", tuple: "t", set: "s", frozenset: "f"}[t]
        return [tag, sub(obj)]
    if t is dict or t is collections.Counter or t is collections.OrderedDict:
        tag = {dict: "d", collections.Counter: "C", collections.OrderedDict: "O"}[t]
        return [tag, [sub(kv) for kv in obj.items()]]
    if t is collections.defaultdict:
        factory = _TYPE_NAMES.get(obj.default_factory) if obj.default_factory is not None else None
        return ["D", factory, [sub(kv) for kv in obj.items()]]
    if t is collections.deque:
        return ["Q", sub(obj), obj.maxlen]
    if t is type and obj in _TYPE_NAMES:
        return ["T", _TYPE_NAMES[obj]]
    fields = _namedtuple_fields(t) if isinstance(obj, tuple) else None
    if fields is not None:
        return ["n", str(t.__name__), list(fields), sub(tuple.__iter__(obj))]
    if handle is not None:
        return ["h", handle(obj)]
    raise Unserializable(f"{t.__module__}.{t.__qualname__}")


class _SetInOrder(set):
    """A set that iterates (and prints) in the order it had on the other side of the pipe.

    Used only when a plain set rebuilt from the same elements would iterate differently (its hash
    table had another history there), so ``list(s)``, ``tuple(s)`` and ``str(s)`` see the program's
    own order; comparisons, hashing of elements and set algebra are set's own.
    """

    __slots__ = ("_order",)

    def __iter__(self):
        return iter(self._order) if len(self._order) == set.__len__(self) else set.__iter__(self)

    def __repr__(self) -> str:
        return "{" + ", ".join(map(repr, self)) + "}" if self else "set()"


class _FrozenSetInOrder(frozenset):
    """`_SetInOrder` for frozensets."""

    __slots__ = ("_order",)

    def __iter__(self):
        return iter(self._order)

    def __repr__(self) -> str:
        return "frozenset({" + ", ".join(map(repr, self)) + "})" if self else "frozenset()"


def _rebuild_set(items: list, kind):
    """A set of `items` that iterates in their order: a plain one when insertion reproduces it."""
    out = kind(items) if kind is frozenset else set()
    if kind is set:
        for x in items:
            out.add(x)  # one by one, as a literal or a loop of .add builds it
    if len(out) != len(items):
        raise ValueError("malformed set")
    if all(a is b for a, b in zip(out, items)):
        return out
    ordered = (_SetInOrder if kind is set else _FrozenSetInOrder)(items)
    ordered._order = list(items)
    return ordered


def _namedtuple(name, fields):
    key = (name, tuple(fields))
    if key not in _NAMEDTUPLES:
        _NAMEDTUPLES[key] = collections.namedtuple(name, fields)  # validates the names (identifiers only)
    return _NAMEDTUPLES[key]


def decode(obj, handle=None):
    """Inverse of `encode`; ``handle(id)`` resolves ["h", id]. Malformed input raises ValueError/TypeError."""
    t = type(obj)
    if obj is None or t in (bool, int, float, str):
        return obj
    if t is not list or not obj or type(obj[0]) is not str:
        raise ValueError("malformed value")
    tag = obj[0]
    sub = lambda xs: [decode(x, handle) for x in xs]  # noqa: E731
    if tag == "i":
        return int(obj[1], 16)
    if tag == "F":
        return float(obj[1])
    if tag == "c":
        return complex(float(obj[1]), float(obj[2]))
    if tag == "b":
        return base64.b64decode(obj[1])
    if tag in ("l", "t"):
        return (list if tag == "l" else tuple)(sub(obj[1]))
    if tag in ("s", "f"):
        return _rebuild_set(sub(obj[1]), set if tag == "s" else frozenset)
    if tag in ("d", "C", "O"):
        kind = {"d": dict, "C": collections.Counter, "O": collections.OrderedDict}[tag]
        return kind(dict((decode(k, handle), decode(v, handle)) for k, v in obj[1]))  # Counter(pairs) would count them
    if tag == "D":
        factory = TYPES[obj[1]] if obj[1] is not None else None
        return collections.defaultdict(factory, ((decode(k, handle), decode(v, handle)) for k, v in obj[2]))
    if tag == "Q":
        return collections.deque(sub(obj[1]), obj[2] if obj[2] is None else int(obj[2]))
    if tag == "T":
        return TYPES[obj[1]]
    if tag == "n":
        return _namedtuple(str(obj[1]), [str(f) for f in obj[2]])(*sub(obj[3]))
    if tag == "h" and handle is not None:
        return handle(int(obj[1]))
    raise ValueError(f"unknown tag {tag!r}")
