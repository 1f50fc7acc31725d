"""Settings dataclasses built from YAML mappings, validated at the edge."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pipeline.errors import UserError

T = TypeVar("T")


def settings_from(cls: type[T], raw: Any, where: str) -> T:
    """`cls(**raw)` with one-line errors naming `where`: a non-mapping, unknown fields and
    wrong arguments. YAML lists become tuples where the field's default is a tuple, so
    frozen settings stay hashable."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping with fields of {cls.__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UserError(f"{where}: unknown field(s) {unknown} (known: {sorted(fields)})")
    values = {k: tuple(v) if isinstance(v, list) and isinstance(fields[k].default, tuple) else v
              for k, v in raw.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None
