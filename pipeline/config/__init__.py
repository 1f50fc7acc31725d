"""Run configuration: every settings section in one schema (`RunConfig`), validated when
loaded. Imports nothing of the package but `pipeline.errors`, and neither torch nor Ray."""
from pipeline.config.run import EVALUATION, MODEL_AND_DATA, RunConfig, load_config, parse_config, resolve_path
from pipeline.config.sections import (
    DatasetSpec, DecodingConfig, ExportSettings, LabelSettings, ModelSpec, RayConfig, RoleResources, SignalSettings,
)
from pipeline.config.schema import settings_from
from pipeline.config.strategies import StrategySpec

__all__ = [
    "EVALUATION", "MODEL_AND_DATA", "DatasetSpec", "DecodingConfig", "ExportSettings", "LabelSettings", "ModelSpec", "RayConfig", "RoleResources",
    "RunConfig", "SignalSettings", "StrategySpec", "load_config", "parse_config", "resolve_path", "settings_from",
]
