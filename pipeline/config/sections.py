"""The sections of a run configuration: plain dataclasses, validated when built.

Nothing here imports torch, Ray or another layer of the package, so reading and
checking a config is cheap for every job, including the pyarrow-only ones.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config.benchmark_spec import BenchmarkSpec, ChoicesRule, FieldRule, field_overrides, read_benchmark
from pipeline.errors import UserError

DTYPES = ("auto", "float32", "bfloat16", "float16")
ANSWER_FORMATS = ("gsm8k", "plain")
FEATURE_POOLS = ("concat", "mean")
MAX_SAMPLES = 256  # sampled answers or branches per example: beyond, a typo rather than a plan
MAX_ABS_ALPHA = 100.0  # beyond, p_s + α(p_t − p_s) is the teacher's difference alone, then overflow


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_ints(section: str, obj: object, *keys: str) -> None:
    for key in keys:
        value = getattr(obj, key)
        if not is_int(value) or value < 1:
            raise UserError(f"{section}.{key} must be an integer ≥ 1, got {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint: a local directory or a Hugging Face Hub id."""

    path: str
    dtype: str = "auto"  # auto: bfloat16 on CUDA and on CPUs with native bf16, else float32
    revision: str | None = None

    def __post_init__(self) -> None:
        if not self.path:
            raise UserError("model path is empty")
        if self.dtype not in DTYPES:
            raise UserError(f"model '{self.path}': dtype must be one of {sorted(DTYPES)}, got '{self.dtype}'")


SPLIT_NAMES = ("train", "test", "validation", "dev", "val")
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv")
# names that stay strings in a partition folder (benchmark=01 would be read back as the number 1)
DATASET_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
SPLIT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-\[\]:%+]{0,63}")  # Hub slices too: test[:100]


@dataclass(frozen=True)
class DatasetSpec:
    # a local JSONL or Parquet path, or a Hub dataset id such as "openai/gsm8k"; with a
    # benchmark, default: the benchmark's own Hub source (a local copy may replace it)
    source: str | None = None
    # a benchmark file, by built-in name ("arc_challenge") or YAML path: it names the fields,
    # the answer type and the prompt (see pipeline/data/benchmarks/); without one, the
    # fields below say what to read and the answers are numbers
    benchmark: str | None = None
    # short name used in example ids; default: the benchmark's name, else a Hub id's last
    # part, a local file's folder when the file is named for its split (gsm8k/test.jsonl ->
    # gsm8k), else its stem
    name: str | None = None
    # default: the benchmark's split when its own source is read; a local file named for its
    # split (train.jsonl -> train); "test" for a Hub id
    split: str | None = None
    config: str | None = None  # Hub config, e.g. "main"
    # where this copy keeps the question, answer and choices, over the benchmark's own (or the
    # fields below): {question: input, answer: target}, a format "{Body} {Question}", or a rule
    # {field: answer, after: "#### "}, as a benchmark file writes them
    fields: dict | None = None
    question_field: str = "question"
    answer_field: str = "answer"
    answer_format: str = "gsm8k"  # "gsm8k": gold after '#### '; "plain": the field is the answer itself
    group_field: str | None = None  # optional field naming each row's group (e.g. the demo's family), copied into rows
    limit: int | None = None  # first N examples only
    offset: int = 0
    # a local JSONL line (one row) may be at most this long: a file that is not JSON Lines, or
    # a device, fails at once instead of being read into memory whole
    max_row_bytes: int = 1 << 20
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
        if self.answer_format not in ANSWER_FORMATS:
            raise UserError(f"answer_format must be one of {', '.join(ANSWER_FORMATS)}, got {self.answer_format!r}")
        if self.limit is not None and (not is_int(self.limit) or self.limit < 1):
            raise UserError(f"dataset limit must be an integer >= 1, got {self.limit!r}")
        if not is_int(self.offset) or self.offset < 0:
            raise UserError(f"dataset offset must be an integer >= 0, got {self.offset!r}")
        if not is_int(self.max_row_bytes) or not 1 <= self.max_row_bytes <= 1 << 30:
            raise UserError(f"dataset.max_row_bytes must be an integer from 1 to {1 << 30}, got {self.max_row_bytes!r}")
        for key in ("split", "name"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
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


@dataclass(frozen=True)
class DecodingConfig:
    max_new_tokens: int = 256
    batch_size: int = 16
    reuse_preamble_cache: bool = True
    stop_token_ids: tuple[int, ...] = ()  # more end ids, beside both models' own (tokenizer, generation_config)
    # what a remote teacher sends per row and mixed step: its k largest probabilities (the
    # mixed argmax is certified from them, full rows fetched only where it cannot be); 0: full rows
    teacher_top_k: int = 32

    def __post_init__(self) -> None:
        check_positive_ints("decoding", self, "max_new_tokens", "batch_size")
        if not isinstance(self.reuse_preamble_cache, bool):
            raise UserError(f"decoding.reuse_preamble_cache must be true or false, got {self.reuse_preamble_cache!r}")
        ids = self.stop_token_ids
        if not isinstance(ids, (list, tuple)) or not all(is_int(i) and i >= 0 for i in ids):
            raise UserError(f"decoding.stop_token_ids must be a list of token ids (integers ≥ 0), got {ids!r}")
        object.__setattr__(self, "stop_token_ids", tuple(ids))
        if not is_int(self.teacher_top_k) or self.teacher_top_k < 0:
            raise UserError(f"decoding.teacher_top_k must be an integer ≥ 0 (0: full rows), got {self.teacher_top_k!r}")


@dataclass(frozen=True)
class LabelSettings:
    alpha_grid: tuple[float, ...] = tuple(3.0 - 0.25 * i for i in range(17))
    # N of the single-N label columns (correct, answers, ...); default: n_grid's first, else 3
    n_tokens: int | None = None
    # every N to label in one tree grown to max(N) (columns *_per_n); default: (n_tokens,)
    n_grid: tuple[int, ...] | None = None
    feature_layers: tuple[int, ...] = (-1,)
    feature_pool: str = "concat"  # concat | mean

    def __post_init__(self) -> None:
        grid = self.alpha_grid
        if not isinstance(grid, (list, tuple)) or not grid:
            raise UserError("alpha grid is empty: give at least one α value")
        if any(isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) for a in grid):
            raise UserError(f"alpha grid must hold finite numbers, got {list(grid)}")
        if any(abs(a) > MAX_ABS_ALPHA for a in grid):
            raise UserError(f"alpha grid values must lie in [-{MAX_ABS_ALPHA:g}, {MAX_ABS_ALPHA:g}], got {list(grid)}")
        duplicates = sorted({a for a in grid if list(grid).count(a) > 1})
        if duplicates:
            raise UserError(f"alpha grid has duplicate values {duplicates}")
        object.__setattr__(self, "alpha_grid", tuple(float(a) for a in grid))
        self._resolve_n()
        if not self.feature_layers or not all(is_int(i) for i in self.feature_layers):
            raise UserError(f"feature_layers must be a non-empty list of integers, got {self.feature_layers!r}")
        object.__setattr__(self, "feature_layers", tuple(self.feature_layers))
        if self.feature_pool not in FEATURE_POOLS:
            raise UserError(f"feature_pool must be 'concat' or 'mean', got {self.feature_pool!r}")

    def _resolve_n(self) -> None:
        """n_tokens and n_grid, each filled from the other: a single N is a one-element grid."""
        n, grid = self.n_tokens, self.n_grid
        if n is not None and (not is_int(n) or n < 1):
            raise UserError(f"n_tokens (N) must be an integer ≥ 1 for α-labels, got {n!r}")
        if grid is None:
            grid = (3 if n is None else n,)
        if not isinstance(grid, (list, tuple)) or not grid:
            raise UserError(f"labels.n_grid must be a non-empty list of integers N ≥ 1, got {grid!r}")
        if not all(is_int(v) and v >= 1 for v in grid):
            raise UserError(f"labels.n_grid must hold integers N ≥ 1, got {list(grid)}")
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


@dataclass(frozen=True)
class RoleResources:
    """Resources one actor of a role (student, teacher, teaching assistant) asks Ray for."""

    num_gpus: float = 1.0
    num_cpus: float = 1.0
    accelerator_type: str | None = None
    resources: dict = field(default_factory=dict)
    # host memory the actor declares to Ray, in GiB; default: estimated from the model, the
    # dtype, the batch and the longest prompt (pipeline/runtime/memory.py); 0: declare none
    memory_gb: float | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.num_gpus <= 1024 and 0 <= self.num_cpus <= 1024):
            raise UserError(f"ray: num_gpus and num_cpus must lie in [0, 1024], got {self.num_gpus}, {self.num_cpus}")
        if not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e9
                   for k, v in self.resources.items()):
            raise UserError(f"ray: resources must map names to amounts ≥ 0, got {self.resources!r}")
        if self.memory_gb is not None and not 0 <= self.memory_gb <= 1e5:
            raise UserError(f"ray: memory_gb must be a number of GiB in [0, 100000], got {self.memory_gb!r}")


@dataclass(frozen=True)
class RayConfig:
    num_students: int = 1
    students_per_teacher: int = 1
    student: RoleResources = RoleResources()
    teacher: RoleResources = RoleResources()
    max_attempts: int = 3  # tries per work unit when a worker dies, before the run fails
    placement_timeout_s: float = 600.0  # autoscaling clusters may need minutes to add GPU nodes
    # a shared teacher runs the steps its students send together as one forward; its rows
    # then equal single steps up to float rounding (~1e-6 here), so a token can differ at a
    # near-tie: false runs each step alone, for runs that must match one process bit for bit
    teacher_batch_steps: bool = True
    # how long a shared teacher waits for the other students' steps to batch them in one forward
    teacher_batch_wait_s: float = 0.002

    def __post_init__(self) -> None:
        check_positive_ints("ray", self, "num_students", "students_per_teacher", "max_attempts")
        if self.num_students > 4096 or self.students_per_teacher > 4096 or self.max_attempts > 100:
            raise UserError(f"ray: num_students and students_per_teacher must be at most 4096 and max_attempts at most 100, "
                            f"got {self.num_students}, {self.students_per_teacher}, {self.max_attempts}")
        if not 0 < self.placement_timeout_s <= 86400:
            raise UserError(f"ray.placement_timeout_s must be a number of seconds in (0, 86400], got {self.placement_timeout_s!r}")
        if not isinstance(self.teacher_batch_steps, bool):
            raise UserError(f"ray.teacher_batch_steps must be true or false, got {self.teacher_batch_steps!r}")
        if not isinstance(self.teacher_batch_wait_s, (int, float)) or not 0 <= self.teacher_batch_wait_s <= 1:
            raise UserError(f"ray.teacher_batch_wait_s must be a number of seconds in [0, 1], got {self.teacher_batch_wait_s!r}")

    @property
    def num_teachers(self) -> int:
        return -(-self.num_students // self.students_per_teacher)


@dataclass(frozen=True)
class SignalSettings:
    k: int = 5  # sampled answers for self-consistency
    temperature: float = 0.7
    seed: int = 0
    ta: ModelSpec | None = None  # teaching assistant; default: the teacher checkpoint
    ta_resources: RoleResources | None = None  # default: the teacher's

    def __post_init__(self) -> None:
        if not is_int(self.k) or self.k < 1:
            raise UserError(f"signals.k must be an integer ≥ 1, got {self.k!r}")
        if self.k > MAX_SAMPLES:
            raise UserError(f"signals.k ({self.k}) is more samples per example than this job takes (at most {MAX_SAMPLES})")
        if not isinstance(self.temperature, (int, float)) or not 0 < self.temperature <= 100:
            raise UserError(f"signals.temperature must be a number in (0, 100], got {self.temperature!r}")


@dataclass(frozen=True)
class ExportSettings:
    sources: tuple[str, ...] = ("teacher", "switch")
    min_ta_mean_logprob: float | None = None
    drop_incorrect: bool = False
    weight_by_student_uncertainty: bool = False
    uncertainty_floor: float = 0.1

    def __post_init__(self) -> None:
        if not self.sources or not all(isinstance(v, str) and v for v in self.sources):
            raise UserError(f"export.sources must be a non-empty list of strategy names, got {list(self.sources)!r}")
        object.__setattr__(self, "sources", tuple(self.sources))
        if not 0 <= self.uncertainty_floor <= 1:
            raise UserError(f"export.uncertainty_floor must lie in [0, 1], got {self.uncertainty_floor!r}")
        if self.min_ta_mean_logprob is not None and self.min_ta_mean_logprob > 0:
            raise UserError(f"export.min_ta_mean_logprob is a mean log-probability (≤ 0), got {self.min_ta_mean_logprob!r}")
