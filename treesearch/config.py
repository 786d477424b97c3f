"""Strict loading of nested frozen config dataclasses from YAML (after lingua's strict merge).

    cfg = load_config(IterateConfig, "run.yaml")

Unknown keys are errors naming the dotted path (``search.c_puct``), values are
type-checked against the field annotations, and anything not given keeps the
dataclass default. `to_dict` gives the snapshot written into a run directory.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def field(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field whose help text lives in ``metadata["help"]`` (CLI help, docs, YAML errors)."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def require_positive(cfg: Any, *names: str) -> None:
    """Raise ``ValueError("Config.name must be >= 1, got v")`` for the first of `names` below 1 (a config's
    __post_init__ check of its counts and budgets)."""
    for name in names:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{type(cfg).__name__}.{name} must be >= 1, got {getattr(cfg, name)}")


def parse_bool(text: str) -> bool:
    """'true'/'1'/'yes' or 'false'/'0'/'no' (any case) as a bool; ValueError otherwise."""
    low = text.strip().lower()
    if low not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"expected true or false, got {text!r}")
    return low in ("true", "1", "yes")


def add_flags(group, cls: type, *, prefix: str = "cfg_") -> None:
    """One ``--field-name`` option per field of the config dataclass `cls` (bools read true/false), each
    defaulting to None so `from_flags` keeps the dataclass's own default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        group.add_argument("--" + f.name.replace("_", "-"), dest=prefix + f.name, type=parse_bool if tp is bool else tp,
                           default=None, metavar=tp.__name__.upper(), help=f"{f.metadata['help']} (default: {f.default!r})")


def from_flags(cls: type[T], args, *, prefix: str = "cfg_", **defaults: Any) -> T:
    """`cls` from the options `add_flags` made: the given ones, else `defaults`, else the field defaults."""
    given = {k.removeprefix(prefix): v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}
    return cls(**{**defaults, **given})


def apply_overrides(config, pairs: typing.Sequence[str], *, where: str = "--set"):
    """A copy of the frozen `config` with ``key=value`` strings applied, typed by the field."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not eq:
            raise ValueError(f"{where} {pair!r}: expected KEY=VALUE")
        if key not in fields:
            raise ValueError(f"{where} {pair!r}: {type(config).__name__} has no field {key!r}; fields: {', '.join(fields)}")
        kind = type(getattr(config, key))
        try:
            if kind is bool:
                value: Any = parse_bool(raw)
            elif kind is str:
                # escapes such as "\n" can be typed on a command line; other characters stay as given (" ки")
                value = raw.encode("latin-1", "backslashreplace").decode("unicode_escape")
            else:
                value = kind(raw)
        except ValueError:
            raise ValueError(f"{where} {pair!r}: {key} must be of type {kind.__name__}") from None
        changes[key] = value
    return dataclasses.replace(config, **changes)


def _check(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check(value, a, where)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_check(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build `cls` from `data`; unknown keys and ill-typed values raise ValueError with the dotted path."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        path = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ValueError(f"unknown config key {path!r} (known: {', '.join(sorted(names))})")
    kwargs = {k: _check(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where or cls.__name__}: {e}") from None


def load_config(cls: type[T], path: str | Path | None, overrides: dict | None = None) -> T:
    """Read YAML at `path` (or nothing) into `cls`, then apply `overrides` (a nested dict)."""
    import yaml

    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: config file not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise ValueError(f"{p}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a mapping at the top level")
    if overrides:
        data = merge(data, overrides)
    try:
        return from_dict(cls, data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}" if path else str(e)) from None


def merge(base: dict, extra: dict) -> dict:
    """`base` with `extra` laid over it, nested dicts merged key by key (a new dict)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
