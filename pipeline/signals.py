"""Teaching-assistant signals per example: student self-consistency and a TA model's
confidence in the student's and the teacher's outputs."""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import ray

from pipeline.answers import answers_match, extract_answer, normalize_number
from pipeline.benchmarks import Example
from pipeline.decoding import Decoder, Generation, Sampler
from pipeline.errors import UserError
from pipeline.models import ModelSpec
from pipeline.placement import RoleResources
from pipeline.prompts import PromptTemplate, encode_prompt
from pipeline.settings import settings_from
from pipeline.strategies import Student, Teacher


@dataclass(frozen=True)
class SignalSettings:
    k: int = 5  # sampled answers for self-consistency
    temperature: float = 0.7
    seed: int = 0
    ta: ModelSpec | None = None  # teaching assistant; default: the teacher checkpoint
    ta_resources: RoleResources | None = None  # default: the teacher's

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise UserError(f"signals.k must be an integer ≥ 1, got {self.k!r}")
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise UserError(f"signals.temperature must be > 0, got {self.temperature!r}")

    @classmethod
    def from_dict(cls, raw: dict) -> "SignalSettings":
        raw = dict(raw or {})
        if raw.get("ta") is not None:
            raw["ta"] = settings_from(ModelSpec, raw["ta"], "config: 'signals.ta'")
        if raw.get("ta_resources") is not None:
            raw["ta_resources"] = settings_from(RoleResources, raw["ta_resources"], "config: 'signals.ta_resources'")
        return settings_from(cls, raw, "config: 'signals'")


SIGNAL_SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("gold_answer", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("student_text", pa.string()),
        pa.field("student_answer", pa.string()),
        pa.field("student_correct", pa.bool_()),
        pa.field("teacher_text", pa.string()),
        pa.field("teacher_answer", pa.string()),
        pa.field("teacher_correct", pa.bool_()),
        pa.field("sc_k", pa.int64()),
        pa.field("sc_temperature", pa.float64()),
        pa.field("sc_answers", pa.list_(pa.string())),
        pa.field("sc_majority_answer", pa.string()),
        pa.field("sc_agreement", pa.float64()),  # share of the k samples agreeing with the majority
        pa.field("ta_student_mean_logprob", pa.float64()),
        pa.field("ta_student_min_logprob", pa.float64()),
        pa.field("ta_teacher_mean_logprob", pa.float64()),
        pa.field("ta_teacher_min_logprob", pa.float64()),
    ]
)


def sample_seed(seed: int, example_id: str, j: int) -> int:
    return int(hashlib.sha256(f"{seed}/{example_id}/{j}".encode()).hexdigest()[:15], 16)


def majority(answers: list[str | None]) -> tuple[str | None, float]:
    """Most common extracted answer and the share of samples agreeing with it (no answer never agrees)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0
    answer, count = counts.most_common(1)[0]
    return answer, count / len(answers)


def completion_ids(gen: Generation, eos_ids: frozenset[int]) -> list[int]:
    return [t for t in gen.token_ids if t not in eos_ids]


def ta_confidence(scores: list[float]) -> tuple[float | None, float | None]:
    return (sum(scores) / len(scores), min(scores)) if scores else (None, None)


@dataclass(frozen=True)
class SignalUnit:
    batch_index: int
    examples: tuple[Example, ...]
    settings: SignalSettings
    ta_actor: str | None  # name of the TA ModelActor; None: score with the decoder's teacher runner

    @property
    def part_name(self) -> str:
        return f"part-b{self.batch_index:06d}.parquet"

    def run(self, decoder: Decoder, template: PromptTemplate, worker_id: str = "", node_id: str = "") -> list[dict]:
        from pipeline.actors import RemoteRunner

        k, eos = self.settings.k, decoder.stop.eos_ids
        prompts = [encode_prompt(decoder.tokenizer, template, ex.question) for ex in self.examples]
        student = decoder.generate(Student(), prompts)
        teacher = decoder.generate(Teacher(), prompts)
        seeds = [sample_seed(self.settings.seed, ex.id, j) for ex in self.examples for j in range(k)]
        samples = decoder.generate(Student(), [p for p in prompts for _ in range(k)], Sampler(self.settings.temperature, seeds))
        ta = RemoteRunner(ray.get_actor(self.ta_actor), True) if self.ta_actor else decoder.teacher
        s_scores = ta.completion_logprobs(prompts, [completion_ids(g, eos) for g in student])
        t_scores = ta.completion_logprobs(prompts, [completion_ids(g, eos) for g in teacher])
        rows = []
        for i, ex in enumerate(self.examples):
            answers = [normalize_number(extract_answer(g.text)) for g in samples[i * k : (i + 1) * k]]
            top, agreement = majority(answers)
            s_ans, t_ans = (normalize_number(extract_answer(g.text)) for g in (student[i], teacher[i]))
            s_mean, s_min = ta_confidence(s_scores[i])
            t_mean, t_min = ta_confidence(t_scores[i])
            rows.append({
                "example_id": ex.id, "gold_answer": ex.gold, "prompt": template.render(ex.question),
                "student_text": student[i].text, "student_answer": s_ans, "student_correct": answers_match(s_ans, ex.gold),
                "teacher_text": teacher[i].text, "teacher_answer": t_ans, "teacher_correct": answers_match(t_ans, ex.gold),
                "sc_k": k, "sc_temperature": float(self.settings.temperature), "sc_answers": answers,
                "sc_majority_answer": top, "sc_agreement": agreement,
                "ta_student_mean_logprob": s_mean, "ta_student_min_logprob": s_min,
                "ta_teacher_mean_logprob": t_mean, "ta_teacher_min_logprob": t_min,
            })
        return rows


def run_signals(config, results_path: str, out: str) -> dict:
    """Signals for every example of `results_path` (a results or label dataset) into `out/signals/`,
    the dataset joined with them into `out/with_signals/`; returns the separation summary."""
    import uuid

    import pyarrow.parquet as pq

    from pipeline.actors import ModelActor
    from pipeline.benchmarks import load_examples
    from pipeline.models import shared_vocab_size
    from pipeline.orchestration import Job, finish, run_units
    from pipeline.results_io import filesystem, join, write_part

    settings = config.signals
    ta_spec = settings.ta or config.teacher
    shared_vocab_size(config.student, ta_spec)  # the TA scores the student's token ids
    try:
        source = pq.read_table(results_path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UserError(f"cannot read dataset {results_path}: {str(exc).splitlines()[0]}") from None
    if "example_id" not in source.column_names:
        raise UserError(f"{results_path} has no example_id column: not a results or label dataset")
    wanted = set(source.column("example_id").to_pylist())
    examples = [ex for ex in load_examples(config.dataset) if ex.id in wanted]
    if len(examples) != len(wanted):
        raise UserError(f"{len(wanted) - len(examples)} example ids of {results_path} are not in the configured dataset {config.dataset.source}")
    ta_name = f"ta-{uuid.uuid4().hex[:12]}"
    resources = settings.ta_resources or config.ray.teacher

    def start_ta(has_gpus: bool, vocab: int):
        actor = ModelActor.options(**resources.actor_options(has_gpus), name=ta_name, max_restarts=-1, max_task_retries=-1).remote(
            ta_spec, vocab, config.decoding.reuse_preamble_cache
        )
        try:
            ray.get(actor.placement.remote(), timeout=config.ray.placement_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise UserError(
                f"Ray could not start the teaching-assistant actor within {config.ray.placement_timeout_s:.0f}s: it needs "
                f"{resources.actor_options(has_gpus)}, the cluster has {ray.cluster_resources()}; lower signals.ta_resources"
            ) from None
        return actor

    size = config.decoding.batch_size
    units = [SignalUnit(b, tuple(examples[s : s + size]), settings, ta_name) for b, s in enumerate(range(0, len(examples), size))]
    job = Job("score_signals", "signals", SIGNAL_SCHEMA, units, len(examples), manifest_name="signals_manifest.json",
              ignored_config=("strategies", "labels", "export"), extra_actors=start_ta)
    signals, manifest = run_units(config, out, job, examples)
    joined = join_by_example(source, signals)
    fs, root = filesystem(out)
    write_part(fs, join(root, "with_signals"), "part-000000.parquet", joined.to_pylist(), joined.schema)
    summary = separation_summary(signals)
    finish(out, job, manifest, "signals_summary.json", summary)
    return summary


def join_by_example(source: pa.Table, signals: pa.Table) -> pa.Table:
    """`source` with the signal columns it lacks appended, matched on example_id (types kept:
    Arrow's own join refuses list columns)."""
    position = {eid: i for i, eid in enumerate(signals.column("example_id").to_pylist())}
    rows = pa.array([position[eid] for eid in source.column("example_id").to_pylist()])
    joined = source
    for name in signals.column_names:
        if name not in source.column_names:
            joined = joined.append_column(signals.schema.field(name), signals.column(name).take(rows))
    return joined


def separation_summary(signals: pa.Table) -> dict:
    """How well each signal tells correct answers from wrong ones (ROC AUC; None if one class only)."""
    from sklearn.metrics import roc_auc_score

    df = signals.to_pandas()

    def auc(score: str, target: str) -> float | None:
        rows = df[[score, target]].dropna()
        return float(roc_auc_score(rows[target], rows[score])) if rows[target].nunique() == 2 else None

    return {
        "n": len(df),
        "student_accuracy": float(df["student_correct"].mean()),
        "teacher_accuracy": float(df["teacher_correct"].mean()),
        "auc_self_consistency_vs_student_correct": auc("sc_agreement", "student_correct"),
        "auc_ta_mean_logprob_vs_student_correct": auc("ta_student_mean_logprob", "student_correct"),
        "auc_ta_min_logprob_vs_student_correct": auc("ta_student_min_logprob", "student_correct"),
        "auc_ta_mean_logprob_vs_teacher_correct": auc("ta_teacher_mean_logprob", "teacher_correct"),
    }
