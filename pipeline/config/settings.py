"""Settings dataclasses built from YAML mappings, validated at the edge."""
from __future__ import annotations

import dataclasses
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
