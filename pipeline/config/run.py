"""Run configuration: YAML → validated dataclasses, with `--set a.b=value` overrides."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.config.sections import (
    DatasetSpec, DecodingConfig, ExportSettings, LabelSettings, ModelSpec, RayConfig, SignalSettings,
)
from pipeline.config.prompt_style import CHAT_TEMPLATE_ROLES, PromptStyle
from pipeline.config.schema import settings_from
from pipeline.config.strategies import StrategySpec
from pipeline.config.yaml_text import parse_yaml, read_yaml
from pipeline.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]


# in a job's `needs`, "dataset" is exactly one `dataset` section; "datasets" is a `dataset`
# section or a `datasets` list (a run over several benchmarks, evaluation only)
MODEL_AND_DATA = ("student", "teacher", "dataset")
EVALUATION = ("student", "teacher", "datasets", "strategies")
DEFAULT_PROMPT = "gsm8k_cot_8shot"
# a `datasets` entry's name is a directory of the results (results/benchmark=<name>/)


@dataclass(frozen=True)
class RunConfig:
    """A job's configuration; a section a job does not use may be absent (None, or no strategies)."""

    student: ModelSpec | None = None
    teacher: ModelSpec | None = None
    dataset: DatasetSpec | None = None
    # a run over several benchmarks: the `datasets` list (then `dataset` is None); empty otherwise
    datasets: tuple[DatasetSpec, ...] = ()
    strategies: tuple[StrategySpec, ...] = ()
    # default: the dataset's benchmark's template, else gsm8k_cot_8shot; with `datasets`, when
    # not given it stays None and each entry is encoded with its own benchmark's template
    prompt: str | None = None
    # raw few-shot text, or the chat template (`prompt: {template: ..., chat: true, ...}`)
    prompt_style: PromptStyle = PromptStyle()
    decoding: DecodingConfig = DecodingConfig()
    ray: RayConfig = RayConfig()
    labels: LabelSettings = LabelSettings()
    signals: SignalSettings = SignalSettings()
    export: ExportSettings = ExportSettings()

    def __post_init__(self) -> None:
        if self.dataset is not None and self.datasets:
            raise UserError("config: give either 'dataset' (one) or 'datasets' (a list), not both")
        object.__setattr__(self, "datasets", tuple(self.datasets))
        check_dataset_list(self.datasets)
        if self.prompt is None and not self.datasets:
            benchmark = self.dataset.benchmark_prompt if self.dataset is not None else None
            object.__setattr__(self, "prompt", benchmark or DEFAULT_PROMPT)

    @property
    def all_datasets(self) -> tuple[DatasetSpec, ...]:
        """Every dataset of the run, in config order: the `datasets` list, or the one `dataset`."""
        return self.datasets or ((self.dataset,) if self.dataset is not None else ())

    def prompt_for(self, spec: DatasetSpec) -> str:
        """The template `spec`'s rows are encoded with: the run's `prompt` when set (it applies
        to every dataset), else the dataset's benchmark's."""
        return self.prompt or spec.benchmark_prompt or DEFAULT_PROMPT

    @property
    def default_prompt(self) -> str:
        """The template a worker starts with (a unit naming none is encoded with it)."""
        return self.prompt or self.prompt_for(self.datasets[0])

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for model in (out["student"], out["teacher"], out["signals"]["ta"]):
            if model is not None and model["backend"] == "hf":  # runs on the default engine keep their config hash
                model.pop("backend")
        for data in [out["dataset"], *out["datasets"]]:
            if data is not None:
                data.pop("inferred")  # how split and name were found, not what they are
                if data["fields"] is None:  # a dataset read as its benchmark says keeps its config hash
                    data.pop("fields")
        if out["labels"]["positions"] is None:  # labels without positions keep theirs
            out["labels"].pop("positions")
        if not out["datasets"]:  # a run over one dataset keeps the config hash it always had (it resumes)
            out.pop("datasets")
        if self.prompt_style == PromptStyle():  # so does a run with raw prompts
            out.pop("prompt_style")
        return out

    def results_key(self, ignore: tuple[str, ...] = ()) -> dict:
        """What determines a job's output (placement and reading limits never do): equal keys
        may share an output location."""
        key = self.to_dict()
        for name in ("ray", *ignore):
            key.pop(name)
        for data in [key.get("dataset"), *key.get("datasets", [])]:
            if data is not None:
                data.pop("max_row_bytes")
        if "signals" in key:
            key["signals"].pop("ta_resources")
        return key


def check_dataset_list(specs: tuple[DatasetSpec, ...]) -> None:
    """Each entry of a `datasets` list names its own results partition and example ids (what
    a name may hold, DatasetSpec checks)."""
    names = [spec.name for spec in specs]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise UserError(f"config: 'datasets' has two entries named '{twice}': give each its own name (datasets.N.name)")


def resolve_path(path: str) -> str:
    """Relative paths are tried against the working directory, then the repository root,
    so configs work from anywhere and under `ray job submit --working-dir .`."""
    if not path or Path(path).is_absolute() or Path(path).expanduser().exists():
        return path
    candidate = REPO_ROOT / path
    return str(candidate) if candidate.exists() else path


def _section(raw: dict, key: str, cls, path_keys: tuple[str, ...] = ()):
    return _mapping_section(raw.get(key), key, cls, path_keys)


def _mapping_section(value: Any, key: str, cls, path_keys: tuple[str, ...] = ()):
    if not isinstance(value, dict):
        raise UserError(f"config: '{key}' must be a mapping with fields of {cls.__name__}")
    value = {k: (resolve_path(v) if k in path_keys and isinstance(v, str) else v) for k, v in value.items()}
    return settings_from(cls, value, f"config: '{key}'")


def _dataset_list(raw: Any) -> tuple[DatasetSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise UserError("config: 'datasets' must be a non-empty list of dataset sections ({benchmark: ..., source: ...})")
    return tuple(_mapping_section(item, f"datasets.{i}", DatasetSpec, ("source",)) for i, item in enumerate(raw))


def _missing_sections(raw: dict, needs: tuple[str, ...]) -> list[str]:
    """The sections of `needs` the config lacks ("datasets": a `dataset` or a `datasets` list)."""
    if "dataset" in needs and "datasets" in raw:
        raise UserError("config: this job reads one dataset: give a 'dataset' section, not a 'datasets' list")
    given = set(raw) | ({"datasets"} if "dataset" in raw else set())
    return ["dataset" if k == "datasets" else k for k in needs if k not in given]


def _strategy_specs(raw: Any) -> tuple[StrategySpec, ...]:
    """The entries' shape; their parameters are checked by the strategies' own schemas when
    a job builds its run (`pipeline.decoding.strategies.check_strategies`)."""
    if not isinstance(raw, list) or not raw:
        raise UserError("config: 'strategies' must be a non-empty list of {name: ..., <params>}")
    specs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "name" not in item:
            raise UserError(f"config: strategies[{i}] must be a mapping with a 'name'")
        params = {k: (resolve_path(v) if k == "artifact" and isinstance(v, str) else v) for k, v in item.items() if k != "name"}
        specs.append(StrategySpec(str(item["name"]), params))
    return tuple(specs)


def _prompt_section(raw: Any) -> tuple[str | None, PromptStyle]:
    """`prompt: NAME` (a template), or a mapping: `template` plus the PromptStyle fields."""
    if raw is None or isinstance(raw, str):
        return raw, PromptStyle()
    if not isinstance(raw, dict):
        raise UserError(f"config: 'prompt' must name a template or be a mapping (template, chat, system, ...), got {raw!r}")
    template = raw.get("template")
    if template is not None and not (isinstance(template, str) and template.strip()):
        raise UserError(f"config: 'prompt.template' must name a template, got {template!r}")
    style = settings_from(PromptStyle, {k: v for k, v in raw.items() if k != "template"}, "config: 'prompt'")
    if style.chat_template is not None and style.chat_template not in CHAT_TEMPLATE_ROLES and style.chat_template.endswith((".jinja", ".j2")):
        style = replace(style, chat_template=resolve_path(style.chat_template))
    return template, style


def parse_config(raw: dict, needs: tuple[str, ...] = EVALUATION) -> RunConfig:
    """Validate every section given; `needs` are the sections the job cannot run without."""
    if not isinstance(raw, dict):
        raise UserError("config: top level must be a mapping")
    known = {f.name for f in dataclasses.fields(RunConfig)} - {"prompt_style"}  # written inside `prompt`
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"config: unknown key(s) {unknown} (known: {sorted(known)})")
    missing = _missing_sections(raw, needs)
    if missing:
        raise UserError(f"config: this job needs the section(s) {missing}")
    prompt, style = _prompt_section(raw.get("prompt"))  # prompt None: RunConfig picks the benchmark's

    def optional(key: str, cls, path_keys: tuple[str, ...]):
        return _section(raw, key, cls, path_keys) if key in raw else None

    return RunConfig(
        student=optional("student", ModelSpec, ("path",)),
        teacher=optional("teacher", ModelSpec, ("path",)),
        dataset=optional("dataset", DatasetSpec, ("source",)),
        datasets=_dataset_list(raw["datasets"]) if "datasets" in raw else (),
        strategies=_strategy_specs(raw["strategies"]) if "strategies" in raw else (),
        prompt=resolve_path(prompt) if prompt is not None and str(prompt).endswith((".yaml", ".yml")) else prompt,
        prompt_style=style,
        decoding=settings_from(DecodingConfig, raw.get("decoding"), "config: 'decoding'"),
        ray=settings_from(RayConfig, raw.get("ray"), "config: 'ray'"),
        labels=settings_from(LabelSettings, raw.get("labels"), "config: 'labels'"),
        signals=settings_from(SignalSettings, raw.get("signals"), "config: 'signals'"),
        export=settings_from(ExportSettings, raw.get("export"), "config: 'export'"),
    )


def apply_override(raw: dict, assignment: str) -> None:
    """`a.b=value` sets raw['a']['b'] to the YAML-parsed value; a number picks a list item
    (`strategies.4.artifact=DIR`)."""
    if "=" not in assignment:
        raise UserError(f"override '{assignment}' must look like key.sub=value")
    key, value = assignment.split("=", 1)
    parsed = parse_yaml(value, f"override '{assignment}': the value")
    node: Any = raw
    parts = key.strip().split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"override '{assignment}': '{'.'.join(parts[:depth])}' is a list of {len(node)}: "
                                f"pick an item by its index 0..{len(node) - 1}")
            part = int(part)
        elif not isinstance(node, dict):
            raise UserError(f"override '{assignment}': '{parts[depth - 1]}' is not a mapping")
        if last:
            node[part] = parsed
        else:
            if depth == 0 and part == "prompt" and isinstance(node.get(part), str):  # `prompt: NAME` gains chat settings
                node[part] = {"template": node[part]}
            if isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                node = node[part]


def load_config(path: str, overrides: list[str] = (), needs: tuple[str, ...] = EVALUATION) -> RunConfig:
    file = Path(resolve_path(path))
    if not file.is_file():
        raise UserError(f"config file not found: {path}")
    raw = read_yaml(file, f"config {path}") or {}
    if not isinstance(raw, dict):
        raise UserError(f"config {path}: top level must be a mapping")
    for assignment in overrides:
        apply_override(raw, assignment)
    return parse_config(raw, needs)
