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
        # a relative name ('.evil') would need a package to be relative to: import_module raises TypeError
        if not all(part.isidentifier() for part in module.split(".")):
            raise UserError(f"{where} '{name}': '{module}' is not a module name (MODULE:NAME takes an absolute, dotted module)")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"{where} '{name}': cannot import {module}: {exc}") from None
        except UserError:  # its own one line (a name registered twice) says it already
            raise
        except Exception as exc:  # noqa: BLE001 - the module's own code failed as it ran (or did not compile)
            raise UserError(f"{where} '{name}': cannot import {module}: {type(exc).__name__}: {_first_line(exc)}") from None
    entry = registry.get(key)
    owner = getattr(entry, "__module__", "")
    if entry is None or (module and owner != module and not owner.startswith(module + ".")):
        said = f": {module} registers no {kind} of that name" if module else ""
        raise UserError(f"{where}: unknown {kind} '{key}'{said} (known: {', '.join(sorted(registry))})")
    return entry


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""
