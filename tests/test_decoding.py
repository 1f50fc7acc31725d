"""The shared decoding loop and its strategies on tiny random checkpoints."""
import pytest

from pipeline.decoding.decoder import Decoder

from pipeline.decoding.shared_batch import generate
from pipeline.engine.stop import StopRule
from pipeline.errors import UserError
from pipeline.config import ModelSpec
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.data.prompts import PromptTemplate, encode_prompt
from pipeline.engine.hf import HFEngine
from pipeline.decoding.strategies import EntropyGate, FixedAlpha, Student, Switch, Teacher, build_strategy

MAX_NEW = 12
QUESTIONS = ["what is 2+2?", "a much longer question, what is 17*3 minus 4?", "hi", "Tom has 3 apples."]
TEMPLATE = PromptTemplate(name="t", instruction="Solve.\n\n", exemplars=())


@pytest.fixture(scope="module")
def models(tiny_pair):
    student_dir, teacher_dir = tiny_pair
    s, t = ModelSpec(str(student_dir), "float32"), ModelSpec(str(teacher_dir), "float32")  # exact comparisons
    return load_model(s), load_model(t), shared_vocab_size(model_facts(s), model_facts(t))


def make_decoder(models, reuse_preamble=True, max_new=MAX_NEW):
    student, teacher, vocab = models
    stop = StopRule(frozenset(model_facts(student.spec).eos_ids), ("\n\nQ:",), max_new)
    return Decoder(
        HFEngine(student, vocab, reuse_preamble), HFEngine(teacher, vocab, reuse_preamble), student.tokenizer, stop
    )


def prompts_for(models, questions=QUESTIONS):
    return [encode_prompt(models[0].tokenizer, TEMPLATE, q) for q in questions]


def token_ids(decoder, strategy, prompts):
    return [g.token_ids for g in generate(decoder, strategy, prompts)]


@pytest.mark.parametrize("strategy", [Student(), Teacher(), FixedAlpha(2.0, 3), Switch(0.3, 0.1)])
def test_batched_equals_one_at_a_time(models, strategy):
    decoder, prompts = make_decoder(models), prompts_for(models)
    batched = token_ids(decoder, strategy, prompts)
    assert batched == [token_ids(decoder, strategy, [p])[0] for p in prompts]


def test_preamble_cache_gives_same_tokens_as_full_prefill(models):
    prompts = prompts_for(models)
    for strategy in (Student(), FixedAlpha(1.0, 4)):
        cached = token_ids(make_decoder(models, True), strategy, prompts)
        assert cached == token_ids(make_decoder(models, False), strategy, prompts)


def test_preamble_is_encoded_once_per_runner(models):
    decoder, prompts = make_decoder(models), prompts_for(models)
    gens = generate(decoder, Student(), prompts)
    preamble_len = len(prompts[0][0])
    fed = sum(g.student_tokens_processed for g in gens)
    assert decoder.student.tokens_processed == fed + preamble_len
    generate(decoder, Student(), prompts)
    assert decoder.student.tokens_processed == 2 * fed + preamble_len


def test_alpha_zero_is_student_and_never_calls_teacher(models):
    decoder, prompts = make_decoder(models), prompts_for(models)
    gens = generate(decoder, FixedAlpha(0.0, 5), prompts)
    assert [g.token_ids for g in gens] == token_ids(decoder, Student(), prompts)
    assert all(g.teacher_tokens_processed == 0 and g.teacher_tokens == 0 for g in gens)
    assert decoder.teacher.tokens_processed == 0


def test_alpha_one_over_all_tokens_is_teacher(models):
    decoder, prompts = make_decoder(models), prompts_for(models)
    assert token_ids(decoder, FixedAlpha(1.0, MAX_NEW), prompts) == token_ids(decoder, Teacher(), prompts)


def test_fixed_alpha_mixes_only_first_n_tokens(models):
    decoder, prompts = make_decoder(models), prompts_for(models)
    gens = generate(decoder, FixedAlpha(1.0, 3), prompts)
    teacher = token_ids(decoder, Teacher(), prompts)
    for g, t in zip(gens, teacher):
        assert g.token_ids[:3] == t[:3]
        assert g.teacher_tokens == min(3, len(g.token_ids))
        # the teacher saw the prompt and fed tokens only up to step N-1
        assert g.teacher_tokens_processed - g.student_tokens_processed == min(3, len(g.token_ids)) - len(g.token_ids)


def test_entropy_gate_band_selects_rows(models):
    decoder, prompts = make_decoder(models), prompts_for(models)
    student = generate(decoder, Student(), prompts)
    entropies = sorted(g.student_first_entropy for g in student)
    lo = hi = entropies[1]  # exactly one row inside the band
    gated = generate(decoder, EntropyGate(alpha=1.0, n_tokens=MAX_NEW, lo=lo, hi=hi), prompts)
    teacher = token_ids(decoder, Teacher(), prompts)
    for s, g, t in zip(student, gated, teacher):
        inside = lo <= s.student_first_entropy <= hi
        assert g.token_ids == (t if inside else s.token_ids)
        assert (g.teacher_tokens_processed > 0) == inside
        assert g.alpha == (1.0 if inside else 0.0)


def test_switch_extremes(models):
    decoder, prompts = make_decoder(models), prompts_for(models)
    never = generate(decoder, Switch(tau0=10.0, lam=0.0), prompts)  # JSD ≤ ln 2 < 10
    assert [g.token_ids for g in never] == token_ids(decoder, Student(), prompts)
    assert all(g.teacher_tokens == 0 for g in never)
    always = generate(decoder, Switch(tau0=0.0, lam=0.0), prompts)
    assert [g.token_ids for g in always] == token_ids(decoder, Teacher(), prompts)
    assert all(g.teacher_tokens == len(g.token_ids) for g in always)


def test_stop_string_ends_row_and_is_cut(models):
    student, _, _ = models
    tok = student.tokenizer
    rule = StopRule(frozenset({tok.eos_token_id}), ("\n\nQ:",), 50)
    ids = tok.encode("The answer is 4.\n\nQ: next", add_special_tokens=False)
    stops = [i for i in range(1, len(ids) + 1) if rule.stop_reason(tok, ids[:i])]
    assert tok.decode(ids[: stops[0]]).endswith("\n\nQ:")
    assert rule.final_text(tok, ids) == "The answer is 4."


def test_padded_teacher_vocabulary_is_mixed_over_shared_range(models):
    student, teacher, vocab = models
    assert teacher.model.get_output_embeddings().weight.shape[0] > vocab == len(student.tokenizer)
    decoder = make_decoder(models)
    logits = decoder.teacher.prefill("s", prompts_for(models)[:1]).logits
    assert logits.shape[-1] == vocab


def test_incompatible_tokenizers_name_both_models(tmp_path, tiny_pair):
    from tiny_models import build_char_tokenizer, save_tiny_llama

    other = save_tiny_llama(tmp_path / "other", build_char_tokenizer(extra="é"), hidden=32, layers=1, seed=3)
    with pytest.raises(UserError, match="incompatible tokenizers") as err:
        shared_vocab_size(model_facts(ModelSpec(str(tiny_pair[0]))), model_facts(ModelSpec(str(other))))
    assert str(tiny_pair[0]) in str(err.value) and str(other) in str(err.value)


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="model not found"):
        load_model(ModelSpec(str(tmp_path / "nope")))


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("fixed_alpha", {"alpha": 1.0, "n_tokens": -1}, "n_tokens"),
        ("fixed_alpha", {"alpha": "x", "n_tokens": 2}, "alpha"),
        ("entropy_gate", {"lo": 2.0, "hi": 1.0}, "lo"),
        ("nope", {}, "unknown strategy"),
        ("switch", {"tau0": 0.1, "bogus": 1}, "unknown parameter 'bogus'"),
    ],
)
def test_bad_strategy_parameters(name, params, message):
    with pytest.raises(UserError, match=message):
        build_strategy(name, params)
