"""Teaching-assistant signals and distillation export on constructed cases."""
import pyarrow as pa
import pytest
import torch

from pipeline.decoding.decoder import Decoder

from pipeline.decoding.sampling import Sampler

from pipeline.decoding.shared_batch import generate
from pipeline.engine.stop import StopRule
from pipeline.config import ExportSettings
from pipeline.tasks.distill import distill_rows, weight
from pipeline.config import ModelSpec
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import LoadedModel, load_model
from pipeline.data.prompts import PromptTemplate, encode_prompt
from pipeline.engine.hf import HFEngine
from pipeline.config import SignalSettings
from pipeline.tasks.signals import SignalUnit, join_by_example, majority
from pipeline.data.datasets import Example
from pipeline.decoding.strategies import Student

TEMPLATE = PromptTemplate(name="t", instruction="Solve.\n\n")


def forced_answer_model(tokenizer):
    """A Llama whose next token depends only on the current one: ':' -> '4' -> '.' -> EOS, whatever
    the sampling temperature (logits 100 apart)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = len(tokenizer)
    config = LlamaConfig(vocab_size=vocab, hidden_size=vocab + (4 - vocab % 4) % 4, intermediate_size=8, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=4, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.model.layers.parameters():
            p.zero_()  # layers add nothing: the output reads the current token's embedding only
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        model.lm_head.weight.zero_()
        chain = {":": "4", "4": ".", ".": tokenizer.eos_token}
        ids = {ch: tokenizer.convert_tokens_to_ids(ch) for ch in [*chain, tokenizer.eos_token]}
        for tok in range(vocab):
            model.lm_head.weight[tokenizer.eos_token_id, tok] = 10.0  # default: stop
        for cur, nxt in chain.items():
            model.lm_head.weight[:, ids[cur]] = 0.0
            model.lm_head.weight[ids[nxt], ids[cur]] = 100.0
    return model


@pytest.fixture(scope="module")
def models(tiny_pair):
    s, t = ModelSpec(str(tiny_pair[0])), ModelSpec(str(tiny_pair[1]))
    return load_model(s), load_model(t), shared_vocab_size(model_facts(s), model_facts(t))


def test_forced_model_has_self_consistency_one(models):
    student, teacher, vocab = models
    forced = LoadedModel(student.spec, forced_answer_model(student.tokenizer), student.tokenizer, student.device)
    stop = StopRule(frozenset(model_facts(student.spec).eos_ids), ("\n\nQ:",), 8)
    decoder = Decoder(HFEngine(forced, vocab), HFEngine(teacher, vocab), student.tokenizer, stop)
    examples = tuple(Example(f"x/test/{i:06d}", i, f"What is {i}?", "4") for i in range(3))
    unit = SignalUnit(0, examples, SignalSettings(k=5, temperature=1.5), ta_actor=None)
    rows = unit.run(decoder, TEMPLATE)
    for row in rows:
        assert row["student_text"] == "4."
        assert row["sc_answers"] == ["4"] * 5 and row["sc_majority_answer"] == "4" and row["sc_agreement"] == 1.0
        assert row["student_correct"] is True


def test_sampling_is_seeded_per_row_and_varies_with_seed(models):
    student, teacher, vocab = models
    stop = StopRule(frozenset(model_facts(student.spec).eos_ids), (), 6)
    decoder = Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer, stop)
    prompts = [encode_prompt(student.tokenizer, TEMPLATE, q) for q in ("a?", "bb?", "ccc?")]
    batched = [g.token_ids for g in generate(decoder, Student(), prompts, Sampler(1.0, [1, 2, 3]))]
    alone = [generate(decoder, Student(), [p], Sampler(1.0, [s]))[0].token_ids for p, s in zip(prompts, [1, 2, 3])]
    assert batched == alone
    other = [g.token_ids for g in generate(decoder, Student(), prompts, Sampler(1.0, [7, 8, 9]))]
    assert other != batched


def test_ta_logprob_equals_direct_forward(models):
    student, teacher, vocab = models
    runner = HFEngine(teacher, vocab)
    prompts = [encode_prompt(student.tokenizer, TEMPLATE, q) for q in ("What is 1?", "A longer question here?")]
    completions = [student.tokenizer.encode(" 12.", add_special_tokens=False), student.tokenizer.encode(" it is 7", add_special_tokens=False)]
    scores = runner.completion_logprobs(prompts, completions)
    for (pre, suf), comp, got in zip(prompts, completions, scores):
        ids = torch.tensor([pre + suf + comp])
        with torch.no_grad():
            logp = torch.log_softmax(teacher.model(ids).logits[0, :, :vocab].float(), dim=-1)
        start = len(pre) + len(suf)
        direct = [float(logp[start + j - 1, tok]) for j, tok in enumerate(comp)]
        assert got == pytest.approx(direct, abs=1e-4)


def test_majority_counts_missing_answers_as_disagreeing():
    assert majority(["4", "4", None, "5"]) == ("4", 0.5)
    assert majority([None, None]) == (None, 0.0)


def test_join_keeps_list_columns_and_matches_ids():
    source = pa.table({"example_id": ["a", "b", "a"], "strategy": ["s", "s", "t"]})
    signals = pa.table({"example_id": ["b", "a"], "sc_answers": [["1"], ["2", "2"]], "sc_agreement": [1.0, 0.5]})
    joined = join_by_example(source, signals)
    assert joined.column("sc_answers").to_pylist() == [["2", "2"], ["1"], ["2", "2"]]
    assert joined.schema.field("sc_answers").type == pa.list_(pa.string())


def test_distill_weight_rule():
    base = {"teacher_token_mask": [True, False], "ta_teacher_mean_logprob": -3.0, "correct": False, "sc_agreement": 0.8}
    assert weight(base, ExportSettings()) == 1.0
    assert weight(base, ExportSettings(min_ta_mean_logprob=-2.0)) == 0.0
    assert weight({**base, "teacher_token_mask": [False, False]}, ExportSettings(min_ta_mean_logprob=-2.0)) == 1.0
    assert weight(base, ExportSettings(drop_incorrect=True)) == 0.0
    assert weight(base, ExportSettings(weight_by_student_uncertainty=True)) == pytest.approx(0.2)
    table = pa.table({
        "example_id": ["a", "a"], "strategy_name": ["switch", "student"], "strategy": ["switch(x)", "student"],
        "generated_text": ["t", "s"], "generated_token_ids": [[1, 2], [3]], "teacher_token_mask": [[True, False], [False]],
        "prompt": ["p", "p"], "correct": [True, False], "sc_agreement": [0.5, 0.5],
        "ta_teacher_mean_logprob": [-1.0, -1.0], "ta_student_mean_logprob": [-2.0, -2.0],
    })
    rows = distill_rows(table, ExportSettings(sources=("switch",)))
    assert len(rows) == 1 and rows[0]["origin_mask"] == [True, False] and rows[0]["teacher_token_share"] == 0.5


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_sampled_tokens_follow_the_tempered_distribution(temperature):
    p = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    want = p.pow(1 / temperature) / p.pow(1 / temperature).sum()
    draws = torch.tensor([int(Sampler(temperature, [seed])(p, [3], [0])) for seed in range(4000)])
    seen = torch.bincount(draws, minlength=4) / len(draws)
    assert torch.allclose(seen, want[0], atol=0.03), (seen, want)


def test_sampling_never_draws_a_zero_probability_token_and_survives_low_temperatures():
    p = torch.tensor([[0.0, 0.3, 0.0, 0.3, 0.25, 0.15, 0.0]])
    for temperature in (0.001, 0.01, 1.0, 100.0):
        draws = {int(Sampler(temperature, [seed])(p, [0], [0])) for seed in range(300)}
        assert draws <= {1, 3, 4, 5}, (temperature, draws)
        if temperature <= 0.01:  # the two tied top tokens, both drawn
            assert draws == {1, 3}
