"""The one way a config entry becomes a strategy (evaluation builds its entries here; signals
and the speed scripts construct the classes directly). An entry that names an artifact gets it
from the `load_artifact` its caller passes (the task layer passes `predictor.online.load_online`)."""
from __future__ import annotations

from collections.abc import Sequence

from pipeline.config.schema import validated
from pipeline.config.strategies import StrategySpec
from pipeline.decoding.strategies.base import STRATEGIES, LoadArtifact, Strategy
from pipeline.errors import UserError
from pipeline.plugins import registered


def strategy_class(name: str) -> type[Strategy]:
    """The class registered under `name`; `MODULE:NAME` imports MODULE first (a strategy kept
    in a package of one's own, importable wherever the job's workers run)."""
    return registered(name, STRATEGIES, "strategy", "strategies")


def parsed_strategy(name: str, params: dict | None = None, where: str | None = None) -> Strategy:
    """The strategy an entry describes, checked by its class's schema; artifacts not loaded.
    `where` names the entry in errors (default: the strategy's name)."""
    cls = strategy_class(name)
    known = cls.config_fields()
    where = where or f"strategy '{name}'"
    runtime = sorted(set(params or {}) & set(cls.runtime_fields))
    if runtime:
        raise UserError(f"{where}: unknown parameter '{runtime[0]}' (known: {', '.join(known) or 'none'})")
    return validated(cls, dict(params or {}), where, known, noun="parameter")


def build_strategy(name: str, params: dict | None = None, load_artifact: LoadArtifact | None = None) -> Strategy:
    """The decoding unit of a config entry, with the artifact it names loaded."""
    return parsed_strategy(name, params).resolved(load_artifact)


def check_strategies(specs: Sequence[StrategySpec]) -> None:
    """Every entry's parameters, and no two entries that are one strategy (`alpha: 1` and
    `alpha: 1.0`): checked before any model loads."""
    seen: list[tuple[StrategySpec, Strategy]] = []
    for i, spec in enumerate(specs):
        parsed = parsed_strategy(spec.name, spec.params, f"strategies.{i} ({spec.name})")
        twin = next((s for s, p in seen if p == parsed), None)
        if twin is not None:
            raise UserError(f"config: duplicate strategies {twin.label} and {spec.label}")
        seen.append((spec, parsed))
