"""Teaching-assistant signals per example: student self-consistency and a TA model's
confidence in the student's and the teacher's outputs."""
from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import ray

from pipeline.config import RunConfig, SignalSettings
from pipeline.data.answer_types import score
from pipeline.data.datasets import Example, load_examples
from pipeline.data.prompts import PromptTemplate, encode_prompt, prompt_text
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.sampling import Sampler
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import Student, Teacher
from pipeline.engine.backends import backend_factory
from pipeline.engine.remote import RemoteEngine
from pipeline.errors import UserError
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.runtime.job import Job, batches, finish, run_units
from pipeline.runtime.placement import start_model_actor
from pipeline.store.parts import filesystem, join, read_table, write_part
from pipeline.store.schemas import SIGNAL_SCHEMA


def sample_seed(seed: int, example_id: str, j: int) -> int:
    return int(hashlib.sha256(f"{seed}/{example_id}/{j}".encode()).hexdigest()[:15], 16)


def majority(answers: list[str | None]) -> tuple[str | None, float]:
    """Most common extracted answer and the share of samples agreeing with it (no answer never agrees)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0
    answer, count = counts.most_common(1)[0]
    return answer, count / len(answers)


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
        k = self.settings.k
        prompts = [encode_prompt(decoder.tokenizer, template, ex.question) for ex in self.examples]
        student = generate(decoder, Student(), prompts)
        teacher = generate(decoder, Teacher(), prompts)
        seeds = [sample_seed(self.settings.seed, ex.id, j) for ex in self.examples for j in range(k)]
        samples = generate(decoder, Student(), [p for p in prompts for _ in range(k)], Sampler(self.settings.temperature, seeds))
        ta = RemoteEngine(ray.get_actor(self.ta_actor), True) if self.ta_actor else decoder.teacher
        def kept(gens):  # the tokens of each text: no end id, no stop string
            return [decoder.stop.kept_ids(decoder.tokenizer, g.token_ids) for g in gens]

        s_scores = ta.completion_logprobs(prompts, kept(student))
        t_scores = ta.completion_logprobs(prompts, kept(teacher))
        rows = []
        for i, ex in enumerate(self.examples):
            answers = [score(g.text, ex).answer for g in samples[i * k : (i + 1) * k]]
            top, agreement = majority(answers)
            (s_ans, s_ok), (t_ans, t_ok) = ((s.answer, s.correct) for s in (score(g.text, ex) for g in (student[i], teacher[i])))
            s_mean, s_min = ta_confidence(s_scores[i])
            t_mean, t_min = ta_confidence(t_scores[i])
            rows.append({
                "example_id": ex.id, "gold_answer": ex.gold, "prompt": prompt_text(decoder.tokenizer, template, ex.question),
                "student_text": student[i].text, "student_answer": s_ans, "student_correct": s_ok,
                "teacher_text": teacher[i].text, "teacher_answer": t_ans, "teacher_correct": t_ok,
                "sc_k": k, "sc_temperature": float(self.settings.temperature), "sc_answers": answers,
                "sc_majority_answer": top, "sc_agreement": agreement,
                "ta_student_mean_logprob": s_mean, "ta_student_min_logprob": s_min,
                "ta_teacher_mean_logprob": t_mean, "ta_teacher_min_logprob": t_min,
            })
        return rows


def run_signals(config: RunConfig, results_path: str, out: str) -> dict:
    """Signals for every example of `results_path` (a results or label dataset) into `out/signals/`,
    the dataset joined with them into `out/with_signals/`; returns the separation summary."""
    settings = config.signals
    ta_spec = settings.ta or config.teacher
    backend_factory(ta_spec.backend, "signals.ta.backend" if settings.ta else "teacher.backend")  # before any actor starts
    shared_vocab_size(model_facts(config.student), model_facts(ta_spec))  # the TA scores the student's token ids
    source = read_table(results_path)
    if "example_id" not in source.column_names or "generated_text" not in source.column_names:
        raise UserError(f"{results_path} is not an evaluation results dataset (OUT/results of jobs.evaluate)")
    wanted = set(source.column("example_id").to_pylist())
    examples = [ex for ex in load_examples(config.dataset) if ex.id in wanted]
    if len(examples) != len(wanted):
        raise UserError(f"{len(wanted) - len(examples)} example ids of {results_path} are not in the configured dataset {config.dataset.source}")
    ta_name = f"ta-{uuid.uuid4().hex[:12]}"
    resources = settings.ta_resources or config.ray.teacher

    def start_ta(vocab: int):
        return start_model_actor(ta_spec, resources, vocab, config, ta_name, "teaching-assistant")

    units = [SignalUnit(b, batch, settings, ta_name) for b, batch in batches(examples, config.decoding.batch_size)]
    job = Job("score_signals", "signals", SIGNAL_SCHEMA, units, len(examples), manifest_name="signals_manifest.json",
              ignored_config=("strategies", "labels", "export"), extra_actors=start_ta)
    data, manifest = run_units(config, out, job, examples)
    signals = data.read()
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
