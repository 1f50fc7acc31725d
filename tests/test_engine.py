"""The engine interface and its in-process implementation: what a prefill computes and
keeps, sessions that cannot leak, and no deprecated transformers calls."""
import warnings

import pytest
import torch

from pipeline.config import ModelSpec
from pipeline.data.prompts import PromptTemplate, encode_prompt
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import Student, Teacher
from pipeline.engine.hf import HFEngine
from pipeline.engine.interface import FeatureRequest, Generator, SessionLost, StepEngine
from pipeline.engine.remote import RemoteEngine
from pipeline.engine.sessions import SessionStore
from pipeline.engine.stop import StopRule
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model

TEMPLATE = PromptTemplate(name="t", instruction="Solve the problems.\n\n")
QUESTIONS = ["what is 2+2?", "a longer question: what is 17*3 minus 4?", "hi"]


@pytest.fixture(scope="module")
def models(tiny_pair):
    s, t = ModelSpec(str(tiny_pair[0]), "float32"), ModelSpec(str(tiny_pair[1]), "float32")  # exact comparisons
    return load_model(s), load_model(t), shared_vocab_size(model_facts(s), model_facts(t))


def prompts(lm):
    return [encode_prompt(lm.tokenizer, TEMPLATE, q) for q in QUESTIONS]


def recorded_forwards(model):
    """Every forward output of `model` while the hook is installed."""
    outputs = []
    handle = model.register_forward_hook(lambda _module, _args, out: outputs.append(out))
    return outputs, handle


@pytest.mark.parametrize("reuse_preamble", [True, False])
def test_prefill_computes_one_logits_position_and_only_requested_layers(models, reuse_preamble):
    _, teacher, vocab = models  # two layers: three hidden states, of which the middle one is not asked for
    engine = HFEngine(teacher, vocab, reuse_preamble)
    outputs, handle = recorded_forwards(teacher.model)
    try:
        out = engine.prefill("s", prompts(teacher), FeatureRequest((0, -1), "concat"))
    finally:
        handle.remove()
    prefill = outputs[-1]
    assert prefill.logits.shape[1] == 1  # [B, 1, V], not [B, T, V]
    assert [h is not None for h in prefill.hidden_states] == [True, False, True]
    assert out.logits.shape == (len(QUESTIONS), vocab) and out.features.shape == (len(QUESTIONS), 2 * 48)


def test_features_equal_a_full_forward(models):
    """The last token's hidden states at the requested layers, as a plain full forward gives them."""
    student, _, vocab = models
    batch = prompts(student)
    out = HFEngine(student, vocab).prefill("s", batch, FeatureRequest((0, -1), "concat"))
    for i, (pre, suf) in enumerate(batch):
        with torch.inference_mode():
            full = student.model(input_ids=torch.tensor([pre + suf]), output_hidden_states=True)
        expected = torch.cat([full.hidden_states[0][0, -1], full.hidden_states[-1][0, -1]])
        assert torch.allclose(out.features[i], expected, atol=1e-4)
        assert torch.allclose(out.logits[i], full.logits[0, -1, :vocab], atol=1e-4)


def test_engines_implement_the_whole_interface(models):
    student, _, vocab = models
    for engine in (HFEngine(student, vocab), RemoteEngine(handle=None, reuse_preamble=True)):
        assert isinstance(engine, StepEngine) and isinstance(engine, Generator)


def test_generate_equals_the_decoder_loop_on_the_same_model(models):
    """The teacher decoding alone in its engine gives the tokens the shared loop gives."""
    student, teacher, vocab = models
    stop = StopRule(frozenset(model_facts(student.spec).eos_ids), ("\n\nQ:",), 10)
    batch = prompts(student)
    alone = generate(Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer, stop), Teacher(), batch)
    as_loop = generate(Decoder(HFEngine(teacher, vocab), HFEngine(student, vocab), student.tokenizer, stop), Student(), batch)
    assert [g.token_ids for g in alone] == [g.token_ids for g in as_loop]
    assert [g.teacher_tokens_processed for g in alone] == [g.student_tokens_processed for g in as_loop]
    assert all(g.teacher_tokens == len(g.token_ids) and g.student_tokens_processed == 0 for g in alone)


def test_engine_calls_emit_no_deprecation_warnings(models):
    student, _, vocab = models
    engine = HFEngine(student, vocab)
    stop = StopRule(frozenset(model_facts(student.spec).eos_ids), (), 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = engine.prefill("s", prompts(student), FeatureRequest((-1,)))
        engine.step("s", out.logits.argmax(dim=-1), rows=[0, 0, 2])
        engine.close("s")
        engine.generate(prompts(student), stop)
        engine.completion_logprobs(prompts(student), [[5, 6], [7], [8, 9, 10]])


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_unused_sessions_expire_and_a_lost_session_says_so(models):
    student, _, vocab = models
    clock = Clock()
    engine = HFEngine(student, vocab, sessions=SessionStore(max_sessions=8, ttl_s=60, clock=clock))
    engine.prefill("dead-student", prompts(student))  # never closed: its caller died
    clock.now = 30
    engine.prefill("alive", prompts(student))
    clock.now = 70
    engine.step("alive", torch.tensor([1, 2, 3]))  # used within the ttl: kept
    engine.prefill("new", prompts(student))
    assert len(engine.sessions) == 2
    with pytest.raises(SessionLost, match="dead-student"):
        engine.step("dead-student", torch.tensor([1, 2, 3]))


def test_session_count_is_bounded():
    store = SessionStore(max_sessions=2, ttl_s=1e9)
    with pytest.warns(RuntimeWarning, match="evicted the oldest"):
        for name in "abc":
            store.put(name, object())
    assert len(store) == 2
    with pytest.raises(SessionLost):
        store.get("a")


@pytest.mark.parametrize("reuse_preamble", [True, False])
def test_a_catch_up_leaves_the_cache_as_a_fresh_prefill_of_the_same_text(models, reuse_preamble):
    """`extend` feeds each row its own tokens (none for some, rows dropped on the way), twice:
    every fed row's distribution, and the next step's, equal a prefill of its whole text."""
    _, teacher, vocab = models
    engine, batch = HFEngine(teacher, vocab, reuse_preamble), prompts(teacher)
    engine.prefill("s", batch)
    written = [[5, 9, 13], [], [7]]
    first = engine.extend("s", written)
    assert first.probs.shape[0] == 2  # fed rows only
    more = [[4, 4], [8]]  # row 0 dropped; rows 1 and 2 (now 0 and 1) fed
    second = engine.extend("s", more, rows=[1, 2])
    texts = [(batch[1][0], batch[1][1] + [4, 4]), (batch[2][0], batch[2][1] + [7, 8])]
    fresh = HFEngine(teacher, vocab, reuse_preamble)
    want = fresh.prefill("f", texts).probs
    torch.testing.assert_close(second.probs, want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(engine.full_probs("s", [0, 1]), want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(first.probs[1], fresh.prefill("g", [(batch[2][0], batch[2][1] + [7])]).probs[0], atol=1e-5, rtol=1e-4)
    step = engine.step("s", torch.tensor([3, 3]))
    torch.testing.assert_close(step.probs, fresh.step("f", torch.tensor([3, 3])).probs, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="one token list per row"):
        engine.extend("s", [[1]])


def test_a_catch_up_feeds_its_rows_alone_and_writes_them_in_place(models):
    """Rows caught up at different times: each forward runs the fed row's tokens only, writes
    them into its slot in place (the same storage, no other row's entries touched), and every
    row still sees exactly its text."""
    _, teacher, vocab = models
    engine, batch = HFEngine(teacher, vocab, reuse_preamble=False), prompts(teacher)
    engine.prefill("s", batch)
    texts = [pre + suffix for pre, suffix in batch]
    keys = engine.cache.keys[0]
    storage, slots = keys.data_ptr(), engine.sessions.get("s").slots
    outputs, handle = recorded_forwards(teacher.model.model)
    shapes = []
    handle2 = teacher.model.model.register_forward_pre_hook(lambda _m, _a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                                            with_kwargs=True)
    try:
        for row, n in ((0, 100), (1, 90), (2, 110)):
            feed = [[] for _ in batch]
            feed[row] = [3 + (i % 11) for i in range(n)]
            others = [keys[slots[r]].clone() for r in range(len(batch)) if r != row]
            texts[row] += feed[row]
            engine.extend("s", feed)
            assert engine.cache.keys[0].data_ptr() == storage  # in place: the pool was not reallocated
            assert all(torch.equal(before, keys[slots[r]]) for before, r in zip(others, [r for r in range(len(batch)) if r != row]))
    finally:
        handle.remove()
        handle2.remove()
    assert shapes == [(1, 100), (1, 90), (1, 110)]  # the fed row alone, never padded to the batch
    fresh = HFEngine(teacher, vocab, reuse_preamble=False)
    want = fresh.prefill("f", [([], t) for t in texts]).probs
    torch.testing.assert_close(engine.full_probs("s", [0, 1, 2]), want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(engine.step("s", torch.tensor([5, 6, 7])).probs, fresh.step("f", torch.tensor([5, 6, 7])).probs,
                               atol=1e-5, rtol=1e-4)


def test_dropped_rows_give_their_slots_back_and_branches_copy_one_row(models):
    """Dropping rows moves nothing; a branch copies its row into a free slot; a closed
    session's slots serve the next one, and an empty pool gives its memory back."""
    _, teacher, vocab = models
    engine, batch = HFEngine(teacher, vocab, reuse_preamble=False), prompts(teacher)
    engine.prefill("s", batch)
    slots = list(engine.sessions.get("s").slots)
    keys = engine.cache.keys[0]
    kept = keys[slots[2]].clone()
    engine.fork("s", [2, 0, 0])  # row 1 dropped, row 0 branched
    state = engine.sessions.get("s")
    assert state.slots[:2] == [slots[2], slots[0]] and state.slots[2] == slots[1]  # the branch reuses the freed slot
    assert torch.equal(keys[slots[2]], kept) and engine.cache.keys[0].data_ptr() == keys.data_ptr()
    width = len(batch[0][0]) + len(batch[0][1])
    assert torch.equal(keys[state.slots[2], :, :width], keys[slots[0], :, :width])
    p = engine.step("s", torch.tensor([4, 5, 5])).probs
    torch.testing.assert_close(p[1], p[2])  # the branch is its row's twin
    engine.close("s")
    assert engine.cache.keys == []  # nothing live: the pool's memory is given back
