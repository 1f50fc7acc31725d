"""Settings as pydantic v2 schemas: strict types, unknown keys refused, NaN refused, and every
validation error said in one line that names the field."""
from __future__ import annotations

import math
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, ValidationError

from pipeline.config.sections import MAX_ABS_ALPHA
from pipeline.errors import UserError

# strict: YAML's "0.5" or `true` is not a number; an int is still a float
STRICT = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)

T = TypeVar("T")


def _not_nan(value: float) -> float:
    if math.isnan(value):
        raise ValueError("must not be NaN")
    return value


def _within_alpha_range(value: float) -> float:
    if abs(value) > MAX_ABS_ALPHA:
        raise ValueError(f"must lie in [-{MAX_ABS_ALPHA:g}, {MAX_ABS_ALPHA:g}]")
    return value


Number = Annotated[float, AfterValidator(_not_nan)]  # ±inf allowed: an open end of a band
Finite = Annotated[float, Field(allow_inf_nan=False)]
Alpha = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_within_alpha_range)]
Count = Annotated[int, Field(ge=0)]

_PHRASES = {
    "float_type": "must be a finite number", "finite_number": "must be a finite number",
    "int_type": "must be an integer", "int_from_float": "must be an integer", "string_type": "must be a string",
    "bool_type": "must be true or false", "greater_than_equal": "must be ≥ {ge}", "less_than_equal": "must be ≤ {le}",
    "greater_than": "must be > {gt}", "less_than": "must be < {lt}", "string_too_short": "must not be empty",
}


def one_line(exc: ValidationError, where: str, known: list[str]) -> str:
    """The first error of `exc` as `where: FIELD must be ..., got VALUE`."""
    error = exc.errors()[0]
    name = ".".join(str(p) for p in error["loc"])
    if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"{where}: unknown parameter '{name}' (known: {', '.join(known) or 'none'})"
    if error["type"] == "missing":
        return f"{where}: '{name}' is required"
    phrase = _PHRASES.get(error["type"], "").format(**error.get("ctx", {}))
    if not phrase:
        phrase = str(error["msg"]).removeprefix("Value error, ")
    if not name:  # a check over several fields says them itself
        return f"{where}: {phrase}"
    return f"{where}: {name} {phrase}, got {error['input']!r}"


def validated(cls: type[T], values: dict[str, Any], where: str, known: list[str]) -> T:
    """`cls(**values)` checked by its schema, or a one-line UserError."""
    try:
        return cls(**values)
    except ValidationError as exc:
        raise UserError(one_line(exc, where, known)) from None
