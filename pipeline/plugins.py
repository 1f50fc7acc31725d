"""Names that may point into a package of one's own: `NAME`, or `MODULE:NAME`, whose MODULE is
imported first so that it registers NAME (strategies, engine backends)."""
from __future__ import annotations

import importlib
from typing import TypeVar

from pipeline.errors import UserError

T = TypeVar("T")


def registered(name: str, registry: dict[str, T], kind: str, where: str) -> T:
    """The entry `name` names in `registry`; one line naming `where` when there is none, or
    when `MODULE:NAME`'s MODULE is not where NAME was registered."""
    module, _, key = name.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"{where} '{name}': cannot import {module}: {exc}") from None
    entry = registry.get(key)
    owner = getattr(entry, "__module__", "")
    if entry is None or (module and owner != module and not owner.startswith(module + ".")):
        said = f": {module} registers no {kind} of that name" if module else ""
        raise UserError(f"{where}: unknown {kind} '{key}'{said} (known: {', '.join(sorted(registry))})")
    return entry
