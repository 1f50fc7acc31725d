"""Settings as pydantic v2 schemas: YAML scalars checked strictly ("0.5" is not a number, `true`
is not 1), lists read as tuples, unknown keys and NaN refused, and every validation error
said in one line that names the field. Descriptions live on the fields: the configuration
reference is generated from them (`python -m jobs.config_reference`)."""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Annotated, Any, TypeVar, Union

from pydantic import AfterValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from pipeline.errors import UserError

MAX_SAMPLES = 256  # sampled answers or branches per example: beyond, a typo rather than a plan
MAX_ABS_ALPHA = 100.0  # beyond, p_s + α(p_t − p_s) is the teacher's difference alone, then overflow

STRICT = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)  # strategies: scalars only
SECTION = ConfigDict(extra="forbid")  # settings sections: nested mappings and lists are read, scalars strict

T = TypeVar("T")


class InvalidSettings(UserError):
    """A section built with a bad value: one line, which `settings_from` rewrites to name the
    config key it read the section from."""

    def __init__(self, exc: ValidationError, cls: type):
        self.exc, self.cls = exc, cls
        super().__init__(one_line(exc, getattr(cls, "where", cls.__name__), known_fields(cls), cls=cls))


def known_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def section(cls: type[T]) -> type[T]:
    """A frozen settings section validated by its field types when built; a bad value is an
    `InvalidSettings` (a UserError) wherever the section is built."""
    cls = pydantic_dataclass(frozen=True, config=SECTION)(cls)
    validate = cls.__init__

    @functools.wraps(validate)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            validate(self, *args, **kwargs)
        except ValidationError as exc:
            raise InvalidSettings(exc, cls) from None

    cls.__init__ = __init__
    return cls


def doc(text: str) -> Any:
    """A field's description, as the configuration reference prints it."""
    return Field(description=text)


def _not_nan(value: float) -> float:
    """not NaN"""
    if math.isnan(value):
        raise ValueError("must not be NaN")
    return value


def _within_alpha_range(value: float) -> float:
    """within [-100, 100]"""
    if abs(value) > MAX_ABS_ALPHA:
        raise ValueError(f"must lie in [-{MAX_ABS_ALPHA:g}, {MAX_ABS_ALPHA:g}]")
    return value


Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Int = Annotated[int, Strict()]
PosInt = Annotated[int, Strict(), Field(ge=1)]
Count = Annotated[int, Strict(), Field(ge=0)]
# numbers stay as written (1 stays 1): configs hash as they did, and rows record what was given
Finite = Union[Int, Annotated[float, Strict(), Field(allow_inf_nan=False)]]
Number = Union[Int, Annotated[float, Strict(), AfterValidator(_not_nan)]]  # ±inf allowed: an open end of a band
Alpha = Annotated[Finite, AfterValidator(_within_alpha_range)]

_PHRASES = {
    "float_type": "must be a finite number", "finite_number": "must be a finite number",
    "int_type": "must be an integer", "int_from_float": "must be an integer", "string_type": "must be a string",
    "bool_type": "must be true or false", "tuple_type": "must be a list", "list_type": "must be a list",
    "dict_type": "must be a mapping", "dataclass_type": "must be a mapping", "greater_than_equal": "must be ≥ {ge}",
    "less_than_equal": "must be ≤ {le}", "greater_than": "must be > {gt}", "less_than": "must be < {lt}",
    "string_too_short": "must not be empty", "string_pattern_mismatch": "must not be empty", "too_short": "must not be empty", "literal_error": "must be one of {expected}",
}


def _first_error(exc: ValidationError) -> dict:
    """The error to say: a number field's (int or float) says its float branch's, without the
    branch in its location."""
    errors = exc.errors()
    error = errors[0]
    if error["loc"] and error["loc"][-1] == "int":  # the int branch of an int-or-float field
        error = next((e for e in errors[1:] if "float" in str(e["loc"][-1]) and e["loc"][:-1] == error["loc"][:-1]), error)
        error = {**error, "loc": error["loc"][:-1]}
    return error


def one_line(exc: ValidationError, where: str, known: list[str], noun: str = "field", cls: type | None = None) -> str:
    """The first error of `exc` as `where: FIELD must be ..., got VALUE`; a config key in quotes
    ("config: 'ray'") takes the field inside them ("config: 'ray.num_students'"). Given the
    validated `cls`, an error inside a nested section names that section and its fields."""
    error = _first_error(exc)
    loc = list(error["loc"])
    while cls is not None and len(loc) > 1 and (inner := _section_class(cls, loc[0])) is not None:
        where, cls, loc = _inside(where, str(loc[0])), inner, loc[1:]
        known = known_fields(inner)
    name = ".".join(str(p) for p in loc)
    if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"{where}: unknown {noun} '{name}' (known: {', '.join(known) or 'none'})"
    subject = _inside(where, name) if name else where
    if error["type"] == "missing":
        return f"{subject} is required"
    phrase = _PHRASES.get(error["type"], "").format(**error.get("ctx", {}))
    if not phrase:
        phrase = str(error["msg"]).removeprefix("Value error, ")
    if not name:  # a check over several fields says them itself
        return f"{where}: {phrase}"
    return f"{subject} {phrase}, got {error['input']!r}"


def _inside(where: str, name: str) -> str:
    return f"{where[:-1]}.{name}'" if where.startswith("config: '") and where.endswith("'") else f"{where}: {name}"


def _section_class(cls: type, name: Any) -> type | None:
    """The settings class field `name` of `cls` holds (also through `X | None`), if any."""
    hint = typing.get_type_hints(cls).get(name) if isinstance(name, str) else None
    candidates = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def validated(cls: type[T], values: dict[str, Any], where: str, known: list[str] | None = None, noun: str = "field") -> T:
    """`cls(**values)` checked by its schema, or a one-line UserError."""
    try:
        return cls(**values)
    except (ValidationError, InvalidSettings) as exc:
        error = exc.exc if isinstance(exc, InvalidSettings) else exc
        raise UserError(one_line(error, where, known if known is not None else known_fields(cls), noun, cls)) from None


def settings_from(cls: type[T], raw: Any, where: str) -> T:
    """A settings section from its YAML mapping (absent: the defaults)."""
    if raw is None:
        raw = {}
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping with fields of {cls.__name__}")
    return validated(cls, raw, where, known_fields(cls))
