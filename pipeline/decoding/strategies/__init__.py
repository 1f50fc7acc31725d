"""Decoding strategies, one module each. A module defines one class with `@strategy(NAME)`:
its fields are the parameters a config entry may set, checked by their types; the package
finds every module here, so adding a strategy touches nothing else (docs/extending.md)."""
import importlib
import pkgutil

from pipeline.decoding.strategies.base import STRATEGIES, AlphaPolicy, LoadArtifact, Strategy, TeacherPlan, strategy
from pipeline.decoding.strategies.building import build_strategy, check_strategies, parsed_strategy, strategy_class

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "building"):
        importlib.import_module(f"{__name__}.{_module.name}")

from pipeline.decoding.strategies.budget import Budget  # noqa: E402
from pipeline.decoding.strategies.cot_decoding import CotDecoding  # noqa: E402
from pipeline.decoding.strategies.entropy_gate import EntropyGate  # noqa: E402
from pipeline.decoding.strategies.fixed_alpha import FixedAlpha  # noqa: E402
from pipeline.decoding.strategies.predicted_alpha import PredictedAlpha  # noqa: E402
from pipeline.decoding.strategies.student import Student  # noqa: E402
from pipeline.decoding.strategies.switch import Switch  # noqa: E402
from pipeline.decoding.strategies.teacher import Teacher  # noqa: E402

__all__ = [
    "STRATEGIES", "AlphaPolicy", "Budget", "CotDecoding", "EntropyGate", "FixedAlpha", "LoadArtifact", "PredictedAlpha", "Strategy",
    "Student", "Switch", "Teacher", "TeacherPlan", "build_strategy", "check_strategies", "parsed_strategy", "strategy",
    "strategy_class",
]
