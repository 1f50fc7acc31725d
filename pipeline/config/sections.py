"""The sections of a run configuration: frozen pydantic dataclasses, validated when built; each
field's type is its check and its description is its line in docs/configuration.md.

Nothing here imports torch, Ray or another layer of the package, so reading and
checking a config is cheap for every job, including the pyarrow-only ones.
"""
from __future__ import annotations

import re
from dataclasses import field
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from pipeline.config.benchmark_spec import BenchmarkSpec, ChoicesRule, FieldRule, field_overrides, read_benchmark
from pipeline.config.schema import MAX_SAMPLES, Alpha, Bool, Count, Finite, Int, PosInt, Str, doc, section
from pipeline.errors import UserError

MaxActors = Annotated[Int, Field(ge=1, le=4096)]
Amount = Annotated[Finite, Field(ge=0, le=1024)]


@section
class ModelSpec:
    """A checkpoint: a local directory or a Hugging Face Hub id."""

    where: ClassVar[str] = "config: 'student'"  # how its errors name it when built outside a config
    path: Annotated[Str, doc("a local directory or a Hub id")]
    dtype: Annotated[Literal["auto", "float32", "bfloat16", "float16"],
                     doc("auto: bfloat16 on CUDA and on CPUs with native bf16, else float32")] = "auto"
    revision: Annotated[Str | None, doc("a Hub revision (branch, tag or commit)")] = None
    backend: Annotated[Str, doc("the engine that runs it (pipeline/engine/backends.py): hf, transformers with its KV "
                                "cache per session; MODULE:NAME, one registered by a package of your own")] = "hf"

    def __post_init__(self) -> None:
        if not self.path:
            raise UserError("model path is empty")


SPLIT_NAMES = ("train", "test", "validation", "dev", "val")
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv")
# names that stay strings in a partition folder (benchmark=01 would be read back as the number 1)
DATASET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
SPLIT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-\[\]:%+]{0,63}")  # Hub slices too: test[:100]


@section
class DatasetSpec:
    """One dataset: a benchmark's rows, from its Hub source or a local copy (docs/benchmarks.md)."""

    where: ClassVar[str] = "config: 'dataset'"  # how its errors name it when built outside a config
    source: Annotated[Str | None, doc("a local file (JSON Lines, a JSON array or object of rows, CSV/TSV, Parquet: "
                                      "told from its content) or a Hub id such as openai/gsm8k; default: the benchmark's")] = None
    benchmark: Annotated[Str | None, doc("a file of pipeline/data/benchmarks/ by name (gsm8k, svamp, multiarith, asdiv, "
                                         "math, strategyqa, arc_challenge, arc_easy, commonsense_qa) or a YAML path: "
                                         "its Hub source, fields, answer type and prompt")] = None
    name: Annotated[Str | None, doc("short name in example ids; default: the benchmark's, a Hub id's last part, "
                                    "or read off a file named for its split (gsm8k/test.jsonl: gsm8k)")] = None
    split: Annotated[Str | None, doc("default: the benchmark's for its own source, a file named for its split "
                                     "(train.jsonl: train), test for a Hub id")] = None
    config: Annotated[Str | None, doc("Hub config, e.g. main")] = None
    fields: Annotated[dict | None, doc("this copy's question, answer and choices over the benchmark's: a field, "
                                       "a format {Body} {Question}, or {field: x, after: '#### '}")] = None
    question_field: Annotated[Str, doc("without a benchmark: the question's field")] = "question"
    answer_field: Annotated[Str, doc("without a benchmark: the answer's field")] = "answer"
    answer_format: Annotated[Literal["gsm8k", "plain"],
                             doc("without a benchmark: gsm8k, the gold after '#### '; plain, the field itself")] = "gsm8k"
    group_field: Annotated[Str | None, doc("a field naming each row's group (the demo's family), copied into rows")] = None
    limit: Annotated[PosInt | None, doc("the first N examples only")] = None
    offset: Annotated[Count, doc("examples skipped first")] = 0
    max_row_bytes: Annotated[Int, Field(ge=1, le=1 << 30),
                             doc("longest JSON Lines row read: a file that is not JSON Lines fails at once")] = 1 << 20
    # what was inferred for split and name, said once when the data is loaded
    inferred: str = field(default="", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._apply_benchmark()
        if self.fields is not None:
            rules = field_overrides(self.fields, "dataset.fields")
            if "answer" in rules and self.answer_format != "gsm8k":  # "gsm8k", the default, is then the rule's to say
                raise UserError("dataset.answer_format cannot be set with dataset.fields.answer: write the rule there "
                                '({field: answer, after: "#### "})')
        if not isinstance(self.source, str) or not self.source.strip():
            raise UserError("dataset source must be a JSONL or Parquet path or a Hub dataset id (or set dataset.benchmark)")
        for key in ("split", "name"):
            value = getattr(self, key)
            if value is not None and not value.strip():
                raise UserError(f"dataset.{key} must be a non-empty string, got {value!r}")
        split, name, said = self._split_and_name()
        object.__setattr__(self, "split", split)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "inferred", said)

    def _apply_benchmark(self) -> BenchmarkSpec | None:
        """Fill source, config, split and name from the benchmark file, where not given."""
        if self.benchmark is None:
            return None
        bench = read_benchmark(self.benchmark)
        for key, default in (("question_field", "question"), ("answer_field", "answer"), ("answer_format", "gsm8k")):
            if getattr(self, key) != default:
                role = "question" if key == "question_field" else "answer"
                raise UserError(f"dataset.{key} cannot be set with dataset.benchmark: benchmark '{bench.name}' names its fields; "
                                f"map this copy's with dataset.fields.{role} instead")
        if self.source is None:
            object.__setattr__(self, "source", bench.hub)
            object.__setattr__(self, "config", self.config if self.config is not None else bench.config)
            object.__setattr__(self, "split", self.split if self.split is not None else bench.split)
        if self.name is None:
            object.__setattr__(self, "name", bench.name)
        return bench

    @property
    def benchmark_prompt(self) -> str | None:
        """The prompt template the benchmark names (None without a benchmark)."""
        return None if self.benchmark is None else read_benchmark(self.benchmark).prompt_ref

    def _split_and_name(self) -> tuple[str, str, str]:
        """Split and name as given, or inferred from the source; the inference in words.

        A local file's split is only a label, so it is never silently assumed: it comes
        from the config or from the file's name, else the config is refused.
        """
        inferred = []
        path = Path(self.source).expanduser()
        named_for_split = path.stem.lower() in SPLIT_NAMES
        split = self.split
        if split is None:
            if self.is_local and not named_for_split:
                raise UserError(f"dataset.split is required for {self.source}: its file name does not say "
                                f"which split it holds ({', '.join(SPLIT_NAMES)})")
            split = path.stem.lower() if self.is_local else "test"
            inferred.append(f"split={split}")
        elif self.is_local and named_for_split and path.stem.lower() != split.lower():
            raise UserError(f"dataset.split is '{split}' but the file {self.source} is named for the "
                            f"'{path.stem}' split: set dataset.split to match")
        name = self.name
        if name is None:
            if not self.is_local:
                name = self.source.rstrip("/").split("/")[-1]
            elif not named_for_split:
                name = path.stem
            else:  # gsm8k/test.jsonl: the folder names the benchmark (as written, not where the job runs)
                name = path.parent.name
                if not name or name in (".", ".."):
                    raise UserError(f"dataset.name is required for {self.source}: neither the file nor a folder in its path names the dataset")
            inferred.append(f"name={name}")
        for key, value, rule in (("name", name, DATASET_NAME), ("split", split, SPLIT_NAME)):
            if not rule.fullmatch(value):
                raise UserError(f"dataset.{key} {value!r} cannot name a dataset in example ids and result folders: start "
                                f"with a letter, then letters, digits, '_', '-' or '.' (64 at most); set dataset.{key}")
        said = f"dataset {self.source}: inferred {', '.join(inferred)} (set dataset.split / dataset.name to choose)" if inferred else ""
        return split, name, said

    @property
    def field_rules(self) -> dict[str, FieldRule | ChoicesRule]:
        """The roles `fields` maps (question, answer, choices), each as a rule."""
        return {} if self.fields is None else field_overrides(self.fields, "dataset.fields")

    @property
    def is_local(self) -> bool:
        return self.source.endswith(LOCAL_SUFFIXES) or Path(self.source).expanduser().exists()


@section
class DecodingConfig:
    where: ClassVar[str] = "config: 'decoding'"  # how its errors name it when built outside a config

    max_new_tokens: Annotated[PosInt, doc("generated tokens per answer at most")] = 256
    batch_size: Annotated[PosInt, doc("examples per work unit, decoded as one batch")] = 16
    reuse_preamble_cache: Annotated[Bool, doc("the few-shot preamble's KV cache computed once per worker")] = True
    stop_token_ids: Annotated[tuple[Annotated[Int, Field(ge=0)], ...],
                              doc("more end ids, beside both models' own (tokenizer, generation_config)")] = ()
    teacher_top_k: Annotated[Count, doc("what a remote teacher sends per row and mixed step: its k largest "
                                        "probabilities (the mixed argmax is certified from them, full rows "
                                        "fetched only where it cannot be); 0: full rows")] = 32


@section
class PositionSettings:
    """Position labels: along the student's greedy answer, at its M most uncertain steps,
    whether one teacher token there makes the answer right (what a `budget` is calibrated on)."""

    where: ClassVar[str] = "config: 'labels.positions'"
    top_m: Annotated[PosInt, doc("M: the labelled steps per example, the student's most uncertain")] = 8
    alpha_grid: Annotated[tuple[Alpha, ...], Field(min_length=1), doc("the α of the one mixed token at each labelled step")] = (0.5, 1.0, 2.0)
    signal: Annotated[Literal["entropy", "margin"], doc("how uncertain: entropy (highest first), or top-1 − top-2 margin (lowest first)")] = "entropy"

    def __post_init__(self) -> None:
        if len(set(self.alpha_grid)) < len(self.alpha_grid):
            raise UserError(f"labels.positions.alpha_grid has duplicate values {sorted(self.alpha_grid)}")
        object.__setattr__(self, "alpha_grid", tuple(float(a) for a in self.alpha_grid))


@section
class LabelSettings:
    where: ClassVar[str] = "config: 'labels'"  # how its errors name it when built outside a config

    alpha_grid: Annotated[tuple[Alpha, ...], Field(min_length=1), doc("the α values labelled per example")] = tuple(3.0 - 0.25 * i for i in range(17))
    n_tokens: Annotated[PosInt | None, doc("N of the single-N label columns; default: n_grid's first, else 3")] = None
    n_grid: Annotated[tuple[PosInt, ...] | None, Field(min_length=1),
                      doc("every N labelled in one prefix tree grown to max(N), e.g. [1, 2, 3, 5, 10]")] = None
    feature_layers: Annotated[tuple[Int, ...], Field(min_length=1),
                              doc("student layers whose hidden state at the prompt's last token is a feature (0: embeddings, -1: last)")] = (-1,)
    feature_pool: Annotated[Literal["concat", "mean"], doc("how the layers' states combine")] = "concat"
    positions: Annotated[PositionSettings | None, doc("also label positions of the student's greedy answer (a section)")] = None

    def __post_init__(self) -> None:
        duplicates = sorted({a for a in self.alpha_grid if self.alpha_grid.count(a) > 1})
        if duplicates:
            raise UserError(f"alpha grid has duplicate values {duplicates}")
        object.__setattr__(self, "alpha_grid", tuple(float(a) for a in self.alpha_grid))
        self._resolve_n()

    def _resolve_n(self) -> None:
        """n_tokens and n_grid, each filled from the other: a single N is a one-element grid."""
        n, grid = self.n_tokens, self.n_grid
        if grid is None:
            grid = (3 if n is None else n,)
        duplicates = sorted({v for v in grid if list(grid).count(v) > 1})
        if duplicates:
            raise UserError(f"labels.n_grid has duplicate values {duplicates}")
        n = grid[0] if n is None else n
        if n not in grid:
            raise UserError(f"labels.n_tokens ({n}) must be one of labels.n_grid {list(grid)}: it names the N of the single-N columns")
        object.__setattr__(self, "n_grid", tuple(grid))
        object.__setattr__(self, "n_tokens", n)

    def check_against(self, max_new_tokens: int, num_layers: int) -> None:
        """Errors that need the decoding budget and the student's depth (known before any model work)."""
        if max(self.n_grid) > max_new_tokens:
            what = f"n_tokens ({self.n_tokens})" if len(self.n_grid) == 1 else f"labels.n_grid's largest N ({max(self.n_grid)})"
            raise UserError(f"{what} is larger than decoding.max_new_tokens ({max_new_tokens})")
        bad = [i for i in self.feature_layers if not -(num_layers + 1) <= i <= num_layers]
        if bad:
            raise UserError(
                f"feature layer(s) {bad} out of range for a student with {num_layers} layers "
                f"(valid: {-(num_layers + 1)}..{num_layers}; 0 = embeddings, -1 = last layer)"
            )


@section
class RoleResources:
    """Resources one actor of a role (student, teacher, teaching assistant) asks Ray for."""

    where: ClassVar[str] = "config: 'ray.student'"  # how its errors name it when built outside a config
    num_gpus: Annotated[Amount, doc("GPUs per actor (fractions share one); 0 on a cluster without GPUs")] = 1.0
    num_cpus: Annotated[Amount, doc("CPUs per actor")] = 1.0
    accelerator_type: Annotated[Str | None, doc("a Ray accelerator type, e.g. A100")] = None
    resources: Annotated[dict[Str, Annotated[Finite, Field(ge=0, lt=1e9)]], doc("custom Ray resources: name to amount")] = field(default_factory=dict)
    memory_gb: Annotated[Finite | None, Field(ge=0, le=1e5),
                         doc("host memory declared to Ray, GiB; default: estimated from the model, dtype, batch and "
                             "longest prompt; 0: declare none")] = None


@section
class RayConfig:
    where: ClassVar[str] = "config: 'ray'"  # how its errors name it when built outside a config

    num_students: Annotated[MaxActors, doc("student decode workers")] = 1
    students_per_teacher: Annotated[MaxActors, doc("workers one teacher actor serves")] = 1
    student: Annotated[RoleResources, doc("a student worker's resources (the next table)")] = RoleResources()
    teacher: Annotated[RoleResources, doc("a teacher actor's resources")] = RoleResources()
    max_attempts: Annotated[PosInt, Field(le=100), doc("tries per work unit when a worker dies, before the run fails")] = 3
    placement_timeout_s: Annotated[Finite, Field(gt=0, le=86400),
                                   doc("how long to wait for the actors' resources (autoscaling clusters may need minutes)")] = 600.0
    teacher_batch_steps: Annotated[Bool, doc("a shared teacher runs its students' steps as one forward (rows equal single "
                                             "steps up to float rounding); false: each alone, bit for bit")] = True
    teacher_batch_wait_s: Annotated[Finite, Field(ge=0, le=1),
                                    doc("how long a shared teacher waits for the other students' steps")] = 0.002

    @property
    def num_teachers(self) -> int:
        return -(-self.num_students // self.students_per_teacher)


@section
class SignalSettings:
    where: ClassVar[str] = "config: 'signals'"  # how its errors name it when built outside a config

    k: Annotated[PosInt, Field(le=MAX_SAMPLES), doc("sampled answers per example for self-consistency")] = 5
    temperature: Annotated[Finite, Field(gt=0, le=100), doc("sampling temperature")] = 0.7
    seed: Annotated[Int, doc("seed of the samples")] = 0
    ta: Annotated[ModelSpec | None, doc("the teaching assistant (a model section); default: the teacher checkpoint")] = None
    ta_resources: Annotated[RoleResources | None, doc("its actor's resources; default: the teacher's")] = None


@section
class ExportSettings:
    where: ClassVar[str] = "config: 'export'"  # how its errors name it when built outside a config

    sources: Annotated[tuple[Annotated[Str, Field(min_length=1)], ...], Field(min_length=1),
                       doc("strategy names whose rows become distillation targets")] = ("teacher", "switch")
    min_ta_mean_logprob: Annotated[Finite | None, Field(le=0), doc("keep rows the TA scores at least this (a mean log-probability)")] = None
    drop_incorrect: Annotated[Bool, doc("drop rows whose answer is wrong")] = False
    weight_by_student_uncertainty: Annotated[Bool, doc("weight rows by the student's first-token entropy")] = False
    uncertainty_floor: Annotated[Finite, Field(ge=0, le=1), doc("the least weight a row gets")] = 0.1
