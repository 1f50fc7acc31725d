"""Settings dataclasses built from YAML mappings, validated at the edge."""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, TypeVar

from pipeline.errors import UserError

T = TypeVar("T")


def settings_from(cls: type[T], raw: Any, where: str) -> T:
    """`cls(**raw)` with one-line errors naming `where`: a non-mapping, unknown fields and
    wrong arguments. Fields typed as another settings dataclass (or `X | None`) are built
    from their nested mapping the same way. YAML lists become tuples where the field's
    default is a tuple, so frozen settings stay hashable."""
    raw = {} if raw is None else raw
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping with fields of {cls.__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown field(s) {unknown} (known: {sorted(fields)})")
    hints = typing.get_type_hints(cls)
    values = {k: _value(hints[k], fields[k], v, _child(where, k)) for k, v in raw.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None


def _child(where: str, key: str) -> str:
    """"config: 'ray'" -> "config: 'ray.student'"."""
    return f"{where[:-1]}.{key}'" if where.endswith("'") else f"{where}.{key}"


def _value(hint: Any, field: dataclasses.Field, value: Any, where: str) -> Any:
    nested = _settings_class(hint)
    if nested is not None and isinstance(value, dict):
        return settings_from(nested, value, where)
    if not _conforms(hint, value):
        raise UserError(f"{where} must be {_describe(hint)}, got {value!r}")
    if isinstance(value, list) and isinstance(field.default, tuple):
        return tuple(value)
    return value


def _settings_class(hint: Any) -> type | None:
    """The dataclass a field holds, also through `X | None`."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        classes = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        return classes[0] if len(classes) == 1 else None
    return None


_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", dict: "a mapping",
          tuple: "a list", list: "a list", type(None): "null"}


def _conforms(hint: Any, value: Any) -> bool:
    """Whether a YAML value has the field's type (containers by kind only: their items are
    the settings' own checks, with their own messages)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(arg, value) for arg in typing.get_args(hint))
    kind = origin or hint
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind in (tuple, list):
        return isinstance(value, (list, tuple))
    if kind in (str, dict, type(None)) or dataclasses.is_dataclass(kind):
        return isinstance(value, kind)
    return True  # Any, and types YAML cannot spell: the settings check them


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    kind = typing.get_origin(hint) or hint
    return _NAMES.get(kind, f"a mapping of {getattr(kind, '__name__', kind)}" if dataclasses.is_dataclass(kind) else str(kind))
