"""YAML files mapped onto typed dataclasses, strictly.

Unknown keys and wrong types raise :class:`~tessera.errors.ConfigError` naming the dotted key.
``--set a.b=value`` overrides are parsed as YAML scalars and checked the same way.

>>> from dataclasses import dataclass
>>> @dataclass
... class Cfg:
...     steps: int = 10
...     lr: float = 0.1
>>> from_dict(Cfg, {"steps": 5, "lr": 1}).lr
1.0
>>> from_dict(Cfg, {"stpes": 5})
Traceback (most recent call last):
...
tessera.errors.ConfigError: unknown config key 'stpes' (known: lr, steps)
>>> from_dict(Cfg, {"steps": "five"})
Traceback (most recent call last):
...
tessera.errors.ConfigError: config key 'steps': expected an integer, got str 'five'
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError

T = TypeVar("T")

__all__ = ["from_dict", "to_dict", "load_config", "apply_overrides", "parse_overrides", "FieldError",
           "strict_yaml_load", "check_bounds"]

FLOAT32_MAX = 3.4028234663852886e38   # config numbers feed float32 math; larger ones overflow there
INT64_MAX = 2**63 - 1


class FieldError(ConfigError):
    """A field's value is out of range. ``key`` is relative to the dataclass; :func:`from_dict` prefixes it
    with where the dataclass sits in the file (``train.optim.``, ``tasks[0].``)."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"config key '{key}': {problem}")


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        if isinstance(node, yaml.MappingNode):
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:      # unhashable key: the base class reports it
                    continue
                if first is not None:
                    raise ConfigError(f"key {key!r} appears twice in one section (lines {first} and {line}); "
                                      "keep one of them")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def strict_yaml_load(text: str) -> Any:
    """``yaml.safe_load`` that raises ConfigError for a key repeated within a mapping.

    >>> strict_yaml_load("a: 1\\nb: {c: 2}")
    {'a': 1, 'b': {'c': 2}}
    >>> strict_yaml_load("train: {steps: 3}\\ntrain: {steps: 4}")
    Traceback (most recent call last):
    ...
    tessera.errors.ConfigError: key 'train' appears twice in one section (lines 1 and 2); keep one of them
    """
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 -- a SafeLoader subclass


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        if len(real) == 1:                  # Optional[X]: X's own message says more than "X | None"
            return _convert(real[0], value, key)
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"config key '{key}': must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {type(value).__name__} {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {type(value).__name__} {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"config key '{key}': expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        conv = [_convert(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(conv) if origin is tuple else conv
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {type(value).__name__} {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(kt, k, f"{key}.{k}"): _convert(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {type(value).__name__} {value!r}")
        try:
            out = float(value)
        except OverflowError:
            out = math.inf
        if not math.isfinite(out) or abs(out) > FLOAT32_MAX:
            raise ConfigError(f"config key '{key}': must be a finite number of at most 3.4e38 in magnitude "
                              f"(it feeds float32 math), got {value!r}")
        return out
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"config key '{key}': expected an integer, got {type(value).__name__} {value!r}")
        if abs(value) > INT64_MAX:
            raise ConfigError(f"config key '{key}': {value} does not fit in 64 bits; use a smaller number")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {type(value).__name__} {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"config key '{key}': expected a path, got {type(value).__name__} {value!r}")
        return Path(value)
    return value


def _bound_problem(v: Any, meta: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return f"expected a number, got {type(v).__name__} {v!r}"
    if isinstance(v, float) and (not math.isfinite(v) or abs(v) > FLOAT32_MAX):
        return f"must be a finite number of at most 3.4e38 in magnitude, got {v!r}"
    lo, hi = meta.get("ge", meta.get("gt")), meta.get("le", meta.get("lt"))
    bad_lo = lo is not None and (v < lo if "ge" in meta else v <= lo)
    bad_hi = hi is not None and (v > hi if "le" in meta else v >= hi)
    if not (bad_lo or bad_hi):
        return None
    if lo is not None and hi is not None:
        return (f"must be in {'[' if 'ge' in meta else '('}{lo}, {hi}{']' if 'le' in meta else ')'}, got {v!r}")
    return f"must be {'>=' if 'ge' in meta else '>'} {lo}, got {v!r}" if bad_lo else \
        f"must be {'<=' if 'le' in meta else '<'} {hi}, got {v!r}"


def check_bounds(obj: Any) -> None:
    """Check every dataclass field whose metadata has ``ge`` / ``gt`` / ``le`` / ``lt`` (None values and,
    for sequences, each item); raise :class:`FieldError` naming the first field out of range.

    >>> @dataclasses.dataclass
    ... class C:
    ...     lr: float = dataclasses.field(default=0.1, metadata={"gt": 0})
    >>> check_bounds(C(lr=-1.0))
    Traceback (most recent call last):
    ...
    tessera.config.FieldError: config key 'lr': must be > 0, got -1.0
    """
    for f in dataclasses.fields(obj):
        meta = f.metadata
        if not any(k in meta for k in ("ge", "gt", "le", "lt")):
            continue
        v = getattr(obj, f.name)
        items = list(enumerate(v)) if isinstance(v, (list, tuple)) else [(None, v)]
        whole = str(f.type).replace(" ", "") in ("int", "int|None", "Optional[int]")
        for i, item in items:
            if item is None:
                continue
            problem = _bound_problem(item, meta)
            if problem is None and whole and not isinstance(item, int):
                problem = f"expected an integer, got {type(item).__name__} {item!r}"
            if problem:
                raise FieldError(f.name if i is None else f"{f.name}[{i}]", problem)


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys / wrong types raise ConfigError."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config{' key ' + repr(prefix[:-1]) if prefix else ''}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' (known: {', '.join(sorted(fields))})")
    kwargs = {k: _convert(hints[k], v, prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except FieldError as e:
        if prefix and not e.key.startswith(prefix):
            raise FieldError(prefix + e.key, e.problem) from None
        raise
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config{' ' + prefix[:-1] if prefix else ''}: {e}") from None


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain JSON/YAML-able dict (Paths become strings)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.lr=0.1", "model.depth=8"]`` -> nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set optim.lr=0.01")
        key, raw = item.split("=", 1)
        try:
            value = strict_yaml_load(raw)
        except yaml.YAMLError:
            value = raw
        except ConfigError as e:
            raise ConfigError(f"--set {item!r}: {e}") from None
        if not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"--set {item!r}: empty key; write section.key=value, e.g. --set train.steps=100")
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{p}' is set twice as a value and a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    return _merge(data, parse_overrides(overrides))


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Read YAML ``path`` (optional), apply ``key=value`` overrides, and build ``cls`` strictly."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"config file {p} is a folder; pass a YAML file such as configs/mnist-isometric.yaml")
        if not p.is_file():
            raise ConfigError(f"config file {p} not found; pass a path to a YAML file such as configs/mnist-isometric.yaml")
        try:
            data = strict_yaml_load(p.read_bytes().decode("utf-8")) or {}
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {p} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                              f"{e.start}); save it as UTF-8") from None
        except OSError as e:
            raise ConfigError(f"config file {p} cannot be read ({e.strerror}); check its permissions") from None
        except ConfigError as e:
            raise ConfigError(f"config file {p}: {e}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {p}: invalid YAML{where}; fix the syntax") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p}: top level must be a mapping of keys, got {type(data).__name__}")
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)
