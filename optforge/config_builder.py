"""Frozen dataclasses from YAML mappings, with errors that name the dotted key: the one typed builder of
the run config (`optforge.config`) and of every strategy's params (`build_strategy_params`).

Unknown keys and wrong types fail with the dotted key (`budget.max_candidates`), the value and what is
allowed: a field annotated `int` refuses 2.5 and `true`, `float` takes ints, `bool` only true/false,
`X | None` takes null, a tuple a list, a nested dataclass a mapping (or its name, when it has a
`from_name` classmethod). Range checks live in each dataclass's `__post_init__`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from typing import Any, Mapping, Union


class ConfigError(ValueError):
    """A config key is unknown, mistyped or out of range. The message names the dotted key."""


def build(cls: type, data: Any, prefix: str = "", removed: Mapping[str, str] | None = None) -> Any:
    """`cls` (a dataclass) from the mapping `data`, each value converted to its field's annotated type.
    `prefix` is the dotted key of `data` in the config ("strategy."), named in every error; `removed`
    maps dotted keys that existed once to what replaced them. Raises ConfigError."""
    removed = removed or {}
    where = prefix.rstrip(".") or "the config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if f"{prefix}{key}" in removed:
            raise ConfigError(f"'{prefix}{key}' was removed: {removed[prefix + key]}")
        if key not in fields:
            known = ", ".join(fields)
            raise ConfigError(f"unknown key '{prefix}{key}'; known keys in {where}: {known}")
    kwargs = {key: _convert(hints[key], value, f"{prefix}{key}", removed) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from e


def _convert(tp: Any, value: Any, key: str, removed: Mapping[str, str]) -> Any:  # noqa: C901 - a branch per type
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _convert(a, value, key, removed)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}={value!r} has the wrong type ({tp})")
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, str) and callable(getattr(tp, "from_name", None)):
            return tp.from_name(value)  # a section written as its name (a stage: `stages: [smoke, train]`)
        if isinstance(value, tp):
            return value
        return build(tp, value, f"{key}.", removed)
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} must be a list")
        item_tp = args[0] if args else Any
        return tuple(_convert(item_tp, v, f"{key}[{i}]", removed) for i, v in enumerate(value))
    if origin in (collections.abc.Mapping, dict) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}={value!r} must be a mapping")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            hint = " (YAML 1.2 reads only true/false as booleans)" if isinstance(value, str) else ""
            raise ConfigError(f"{key}={value!r} must be true or false{hint}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}={value!r} must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r} must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} must be a string")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - a bug in this module


def jsonable(value: Any) -> Any:
    """Mappings, lists and tuples as JSON's dicts and lists (keys as strings)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def deep_copy(value: Any) -> Any:
    """A copy of nested dicts and lists (other values shared)."""
    if isinstance(value, Mapping):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value
