"""Configs are data: frozen dataclasses with defaults in code; YAML only fills them.

``from_dict(Cls, data)`` builds a config from plain data (parsed YAML), rejecting unknown keys
and wrong types with an error naming the key path (``stages[1].weights.silhouete: unknown key;
expected one of ...``). ``apply_overrides`` applies ``key.path=value`` strings (the CLI's
``--set``; values are parsed as YAML). ``to_dict`` gives plain data back, to save the resolved
config next to the outputs.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigError", "apply_overrides", "from_dict", "load_yaml", "parse_yaml", "to_dict"]


class ConfigError(ValueError):
    """A config that does not fit its schema; the message names the key."""


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if tp is bool:
        return "true or false"
    if typing.get_origin(tp) is typing.Literal:
        return " or ".join(repr(c) for c in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            try:
                return _convert(arm, value, where)
            except ConfigError as e:
                errors.append(str(e))
        names = " or ".join(_type_name(a) for a in typing.get_args(tp))
        raise ConfigError(f"{where}: expected {names}; got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null; got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list; got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items; got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping; got {value!r}")
        return {
            _convert(key_tp, k, f"{where}"): _convert(value_tp, v, f"{where}.{k}") for k, v in value.items()
        }
    if typing.get_origin(tp) is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: expected one of {list(choices)}; got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where=where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false; got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer; got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number; got {value!r}")
            return float(value)
        raise ConfigError(f"{where}: expected a number; got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string; got {value!r}")
    raise TypeError(f"{where}: unsupported config field type {tp!r}")


def from_dict(cls: type, data: Any, *, where: str = "config") -> Any:
    """Build the frozen dataclass ``cls`` from a mapping, validating keys and types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys to values; got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; expected one of {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def to_dict(cfg: Any) -> Any:
    """Plain data (dicts, lists, scalars) from a config dataclass, for YAML or JSON."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's float rule: ``1e-3``, ``1E5`` and ``.5`` are numbers
    (YAML 1.1, which PyYAML follows, wants a dot and a signed exponent, so ``1e-3`` is a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, *, source: str = "<text>") -> Any:
    """Parse YAML text (YAML 1.2 floats); errors are ConfigErrors naming ``source``."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML: {problem}{where}") from e


def load_yaml(path) -> dict:
    """Parse a YAML config file into plain data, with the file named in errors."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError as e:
        raise FileNotFoundError(f"config file not found: {path}") from e
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a YAML text file ({e})") from e
    data = parse_yaml(text, source=str(path))
    return {} if data is None else data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` / ``stages.0.steps=100`` overrides to plain config data (a copy).

    Values are parsed as YAML (``true``, ``3``, ``0.5``, ``[1, 2]``). List indices may address
    existing items only.
    """
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty key")
        value = parse_yaml(raw, source=f"override {item!r}")
        node: Any = data
        for depth, part in enumerate(parts[:-1]):
            where = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {key}: {where} is not an index of a {len(node)}-item list")
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, (dict, list)):
                    raise ConfigError(f"override {key}: {where} is a value, not a section")
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise ConfigError(f"override {key}: {last} is not an index of a {len(node)}-item list")
            node[int(last)] = value
        else:
            node[last] = value
    return data
