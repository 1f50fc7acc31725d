"""The engine seam: a backend picked by name, and a backend without per-session caches (its
plain continuations through `Generator.generate` with the prefix as input) gives every
strategy the rows the transformers engine gives."""
import dataclasses

import pytest

from pipeline.config import ModelSpec, load_config
from pipeline.data.prompts import encode_prompt, load_template
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import decode_strategies
from pipeline.decoding.strategies import Budget, CotDecoding, EntropyGate, FixedAlpha, Student, Switch, Teacher
from pipeline.engine.backends import build_engine
from pipeline.engine.hf import HFEngine
from pipeline.engine.stop import StopRule
from pipeline.errors import UserError
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.store.manifest import config_hash
from plain_backend import PlainGenerator

QUESTIONS = [f"Tom has {i} apples and buys {2 * i + 1} more. How many?" for i in range(6)]
COMPARED = ("token_ids", "finish_reason", "text", "alpha", "teacher_tokens", "teacher_positions", "teacher_changed_tokens",
            "teacher_tokens_processed", "teacher_calls", "consultations", "student_first_entropy", "cot_k", "cot_branch",
            "cot_confidence")


@pytest.fixture(scope="module")
def pair(tiny_pair):
    s, t = (ModelSpec(str(d), "float32") for d in tiny_pair)
    return load_model(s), load_model(t), shared_vocab_size(model_facts(s), model_facts(t)), s


def strategies(decoder, prompts):
    first = decoder.student.prefill("probe", prompts)
    decoder.student.close("probe")
    h = -(first.probs * first.probs.clamp_min(1e-30).log()).sum(-1)
    return [Student(), Teacher(), FixedAlpha(1.0, 2), FixedAlpha(0.0, 2), FixedAlpha(-0.5, 3),
            EntropyGate(alpha=1.5, n_tokens=2, lo=float(h.median()), hi=float(h.max())), Switch(0.3, 0.1),
            CotDecoding(k=2, alpha=1.0, answer_span=lambda text: (0, len(text)) if text else None),
            Budget(k=2, threshold=3.5, alpha=2.0)]  # nats: unsure at some later steps too


def test_every_strategy_gives_the_same_rows_through_a_plain_generator(pair):
    student, teacher, vocab, spec = pair
    stop = StopRule(frozenset(model_facts(spec).eos_ids), ("\nQ:",), 12)
    kept = Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer, stop)
    plain_engine = PlainGenerator(student, vocab)
    plain = Decoder(plain_engine, HFEngine(teacher, vocab), student.tokenizer, stop)
    assert kept.keeps_sessions and not plain.keeps_sessions
    prompts = [encode_prompt(student.tokenizer, load_template("gsm8k_cot_8shot"), q) for q in QUESTIONS]
    chosen = strategies(kept, prompts)
    expected, _ = decode_strategies(kept, chosen, prompts)
    got, _ = decode_strategies(plain, chosen, prompts)
    for strategy, want, have in zip(chosen, expected, got):
        assert [[getattr(g, f) for f in COMPARED] for g in have.gens] == [[getattr(g, f) for f in COMPARED] for g in want.gens], strategy
    assert plain_engine.continued > 0  # rows past their mixed prefix went through `generate`
    assert {g.alpha for g in got[5].gens} == {0.0, 1.5}  # the gate split the batch


def test_the_backend_is_picked_by_name_and_the_default_keeps_config_hashes(pair, tmp_path):
    _, _, vocab, spec = pair
    assert isinstance(build_engine(spec, vocab), HFEngine)
    assert isinstance(build_engine(dataclasses.replace(spec, backend="plain_backend:plain"), vocab), PlainGenerator)
    with pytest.raises(UserError, match="unknown backend 'vllm' \\(known: hf, plain\\)"):
        build_engine(dataclasses.replace(spec, backend="vllm"), vocab)
    with pytest.raises(UserError, match="backend 'no_such_package:x': cannot import no_such_package"):
        build_engine(dataclasses.replace(spec, backend="no_such_package:x"), vocab)
    config = tmp_path / "c.yaml"
    config.write_text(f"student: {{path: {spec.path}}}\nteacher: {{path: {spec.path}}}\n")
    default, named = (load_config(str(config), overrides, needs=()) for overrides in ([], ["student.backend=hf"]))
    other = load_config(str(config), ["student.backend=plain_backend:plain"], needs=())
    assert config_hash(default.results_key()) == config_hash(named.results_key()) != config_hash(other.results_key())
