"""The teacher's compact transport: its top-k per row, the mixed argmax certified from it,
full rows fetched only where the certificate fails. Tokens must equal full-row mixing."""
from __future__ import annotations

import numpy as np
import pytest
import ray
import torch

from pipeline.config import ModelSpec
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.distributions import certified_mix_argmax, mix
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import Budget, FixedAlpha, Switch
from pipeline.decoding.teacher_next import TeacherNext, mixed_argmax
from pipeline.engine.hf import HFEngine
from pipeline.engine.remote import RemoteEngine
from pipeline.engine.stop import StopRule
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.runtime.actors import ModelActor
from speed.big_vocab import big_vocab_prompts, save_big_vocab_pair

ALPHAS = (3.0, 2.0, 1.25, 1.0, 0.5, 0.25, 0.0, -0.5, -1.0)


@pytest.mark.parametrize("concentration", [0.01, 0.1, 1.0])
@pytest.mark.parametrize("k", [1, 4, 32])
def test_a_certified_token_is_the_full_row_argmax(concentration, k):
    gen = np.random.default_rng(int(concentration * 100) + k)
    rows, vocab = 400, 2000
    p_s = torch.tensor(gen.dirichlet(np.full(vocab, concentration), rows), dtype=torch.float32)
    p_t = torch.tensor(gen.dirichlet(np.full(vocab, concentration), rows), dtype=torch.float32)
    alphas = torch.tensor(gen.choice(ALPHAS, rows), dtype=torch.float32)
    top = p_t.topk(k, dim=-1)
    token, certain = certified_mix_argmax(p_s, top.values, top.indices, alphas)
    full = mix(p_s, p_t, alphas).argmax(dim=-1)
    assert (token[certain] == full[certain]).all()
    if k == 32 and concentration == 0.01:  # peaked distributions, like a language model's
        assert certain.float().mean() > 0.9


def test_ties_are_broken_like_argmax_over_the_full_row():
    p_s = torch.tensor([[0.25, 0.25, 0.25, 0.25]])
    p_t = torch.tensor([[0.1, 0.4, 0.4, 0.1]])
    top = p_t.topk(2, dim=-1)
    for alpha in (0.5, 1.0, 2.0):
        a = torch.tensor([alpha])
        token, certain = certified_mix_argmax(p_s, top.values, top.indices, a)
        assert not certain or int(token) == int(mix(p_s, p_t, a).argmax(dim=-1))


def prefilled(tiny_pair, n: int):
    """Both tiny models in process, prefilled on n prompts: (student p, teacher NextToken, teacher engine)."""
    s, t = ModelSpec(str(tiny_pair[0]), "float32"), ModelSpec(str(tiny_pair[1]), "float32")
    vocab = shared_vocab_size(model_facts(s), model_facts(t))
    student, teacher = HFEngine(load_model(s), vocab), HFEngine(load_model(t), vocab)
    prompts = [([], student.tokenizer.encode(f"Q: {i} plus {i}?\nA:", add_special_tokens=False)) for i in range(n)]
    return student.prefill("s", prompts).probs, teacher.prefill("t", prompts), teacher


def test_compact_rows_with_fallback_equal_full_rows_on_a_real_model(tiny_pair):
    p_s, full, teacher = prefilled(tiny_pair, 16)
    for k in (1, 2, 8):
        compact = TeacherNext(teacher, "t", full.compact(k))
        for alpha in ALPHAS:
            a = torch.full((len(p_s),), alpha)
            assert torch.equal(mixed_argmax(p_s, compact, a), mix(p_s, full.probs, a).argmax(dim=-1))
    assert compact.fetched_rows > 0  # k = 8 of a random model's flat rows: some rows needed their full row


def test_rows_of_a_session_fetch_their_own_full_rows(tiny_pair):
    """A consultation's rows are some rows of the teacher's session (a subset, or the rows a
    catch-up fed): where the top-1 cannot certify the mixed token, the full row fetched is
    that session row's."""
    p_s, full, teacher = prefilled(tiny_pair, 8)
    rows = [6, 1, 3]
    subset = TeacherNext(teacher, "t", full.compact(1)).subset(rows)
    for alpha in (0.5, 2.0):
        a = torch.full((len(rows),), alpha)
        assert torch.equal(mixed_argmax(p_s[rows], subset, a), mix(p_s[rows], full.probs[rows], a).argmax(dim=-1))
    assert subset.fetched_rows > 0
    fed = [[7], [], [], [9, 4], [], [], [], []]  # rows 0 and 3 caught up
    caught = teacher.extend("t", fed)
    after = TeacherNext(teacher, "t", caught.compact(1), rows=[0, 3])
    a = torch.full((2,), 2.0)
    assert torch.equal(mixed_argmax(p_s[[0, 3]], after, a), mix(p_s[[0, 3]], caught.probs, a).argmax(dim=-1))
    assert after.fetched_rows > 0


@pytest.fixture(scope="module")
def big_vocab(tmp_path_factory):
    return save_big_vocab_pair(tmp_path_factory.mktemp("bigvocab"))


@pytest.mark.ray  # runs a job on Ray
def test_a_remote_teacher_sends_under_one_percent_of_a_full_row_and_the_same_tokens(big_vocab):
    ray.init(address="local", num_cpus=2, num_gpus=0, log_to_driver=True)
    try:
        s, t = ModelSpec(str(big_vocab[0]), "float32"), ModelSpec(str(big_vocab[1]), "float32")
        vocab = shared_vocab_size(model_facts(s), model_facts(t))
        assert vocab == 151_936
        lm = load_model(s)
        actor = ModelActor.options(num_cpus=0.5).remote(t, vocab, True)
        stop = StopRule(frozenset({lm.tokenizer.eos_token_id}), (), 6)
        prompts = big_vocab_prompts(lm.tokenizer, 8)
        tokens, sent = {}, {}
        for k in (None, 32):
            remote = RemoteEngine(actor, True)
            decoder = Decoder(HFEngine(lm, vocab), remote, lm.tokenizer, stop, teacher_top_k=k)
            tokens[k] = [[g.token_ids for g in generate(decoder, strategy, prompts)]
                         for strategy in (FixedAlpha(0.5, 4), FixedAlpha(2.0, 4), FixedAlpha(-1.0, 4),
                                          Budget(k=3, threshold=-1.0, alpha=2.0))]  # consulted at 0, 1, 2: two catch-ups
            sent[k] = remote.bytes_received / remote.calls / len(prompts)  # per row per call
        assert tokens[32] == tokens[None]
        full_row = 4 * vocab
        assert sent[None] >= full_row and sent[32] <= 0.01 * full_row, (sent, full_row)
        # SWITCH reads whole rows: they cross as bfloat16, half a float32 row, and its tokens
        # are those of an in-process teacher (which SWITCH reads at bfloat16 too)
        remote = RemoteEngine(actor, True)
        switched = generate(Decoder(HFEngine(lm, vocab), remote, lm.tokenizer, stop, teacher_top_k=32), Switch(0.1, 0.1), prompts)
        local = generate(Decoder(HFEngine(lm, vocab), HFEngine(load_model(t), vocab), lm.tokenizer, stop), Switch(0.1, 0.1), prompts)
        assert [g.token_ids for g in switched] == [g.token_ids for g in local]
        assert remote.bytes_received / remote.calls / len(prompts) == 2 * vocab + 4  # bfloat16 row + its int32 argmax
    finally:
        ray.shutdown()
