"""A settings schema as Markdown: one table row per field, its type, constraints, default and
description, read off the pydantic fields (docs/configuration.md is generated from these)."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml
from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import AfterValidator

_SCALARS = {bool: "true/false", int: "integer", float: "number", str: "string", dict: "mapping", Any: "any"}
_BOUNDS = ((Ge, "ge", "≥"), (Gt, "gt", ">"), (Le, "le", "≤"), (Lt, "lt", "<"))


def type_text(hint: Any) -> str:
    """`tuple[int, ...] | None` as "list of integer, or null"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        flat = list(_flat(args[1:]))
        listed = typing.get_origin(args[0]) in (tuple, list) and any(isinstance(m, MinLen) and m.min_length for m in flat)
        return ("non-empty " if listed else "") + type_text(args[0]) + _constraints([m for m in flat if not isinstance(m, MinLen)])
    if origin in (typing.Union, types.UnionType):
        if {typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a for a in args} == {int, float}:
            return "number" + _constraints(list(_flat([m for a in args for m in typing.get_args(a)[1:]])))
        inner = [type_text(a) for a in args if a is not type(None)]
        return " or ".join(inner) + (", or null" if type(None) in args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (tuple, list):
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_text(args[0])} to {type_text(args[1])}" if args else "mapping"
    if dataclasses.is_dataclass(hint):
        return f"a `{hint.__name__}` mapping"
    return _SCALARS.get(hint, getattr(hint, "__name__", str(hint)))


def _flat(metadata) -> typing.Iterator[Any]:
    """Constraint objects, also those inside a `Field(...)`."""
    for item in metadata:
        yield item
        yield from _flat(getattr(item, "metadata", ()))


def _constraints(metadata: list) -> str:
    said = []
    for item in metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(item, kind):
                bound = getattr(item, attr)
                said.append(f"{sign} {bound if isinstance(bound, int) else format(bound, 'g')}")
        if isinstance(item, MinLen) and item.min_length:
            said.append("not empty")
        if isinstance(item, AfterValidator) and item.func.__doc__:
            said.append(item.func.__doc__)
    return f" ({', '.join(dict.fromkeys(said))})" if said else ""


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "its defaults"
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6).strip().removesuffix("...").strip()
    if value is None or value == "":
        return "null" if value is None else "empty"
    return f"`{text}`"


def _description(hint: Any) -> str:
    for item in typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated else ():
        if getattr(item, "description", None):
            return item.description
    return ""


def schema_table(cls: type, skip: tuple[str, ...] = ()) -> str:
    """The fields of a settings or strategy class as a Markdown table."""
    hints = typing.get_type_hints(cls, include_extras=True)
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        hint = hints[f.name]
        text = type_text(hint).replace("|", "\\|")
        lines.append(f"| `{f.name}` | {text} | {_default(f)} | {_description(hint)} |")
    return "\n".join(lines)
