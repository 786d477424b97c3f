"""JSONL and atomic file writes: the contract between stages.

Files are written to a temporary sibling and renamed into place, so a killed
process never leaves a half-written file. `read_jsonl` names the file, the line
and the problem when a line is not a JSON object. ``.gz`` is transparent.
"""
from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


def _open(path: Path, mode: str):
    return gzip.open(path, mode + "t", encoding="utf-8") if path.suffix == ".gz" else open(path, mode, encoding="utf-8")


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_figure(fig, path: str | Path) -> None:
    """Save a matplotlib figure (format from the suffix) atomically and close it if pyplot manages it (a
    bare `Figure` is left alone, so pyplot, and a notebook's backend, are never touched for it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    fig.tight_layout()
    try:
        fig.savefig(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fig.canvas.manager is not None:
        import matplotlib.pyplot as plt

        plt.close(fig)
    os.replace(tmp, path)


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Write all records atomically (replace the file)."""
    path = Path(path)
    if path.suffix == ".gz":
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, path)
        return
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def append_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Append whole lines and fsync; a reader skips nothing but a torn last line (see read_jsonl)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl_numbered(path: str | Path, *, allow_torn_tail: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; ValueError 'FILE:LINE: ...' on bad JSON or non-objects.

    allow_torn_tail: ignore an unterminated final line (a writer killed mid-append).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with _open(path, "r") as f:
        lines = f.readlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if allow_torn_tail and i == len(lines) and not line.endswith("\n"):
            return
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: bad JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{i}: expected a JSON object, got {type(obj).__name__}")
        yield i, obj


def read_jsonl(path: str | Path, *, allow_torn_tail: bool = False) -> Iterator[dict[str, Any]]:
    """Objects of a JSONL file (see `read_jsonl_numbered`)."""
    for _, obj in read_jsonl_numbered(path, allow_torn_tail=allow_torn_tail):
        yield obj


def require(obj: dict, field: str, types: type | tuple[type, ...], where: str) -> Any:
    """obj[field] checked against `types`; ValueError naming `where` (FILE:LINE) and the field."""
    if field not in obj:
        raise ValueError(f"{where}: missing field {field!r}")
    value = obj[field]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,))):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ValueError(f"{where}: field {field!r} must be {names}, got {type(value).__name__}")
    return value
