"""CoT-decoding: top-k first-token branches continued greedily in one batch, the path with the
most confident answer kept; and its combination with teacher mixing at the branching token."""
from __future__ import annotations

import json
import uuid

import pyarrow as pa
import pytest
import ray
import torch
import yaml

from pipeline.config import ModelSpec, StrategySpec, load_config
from pipeline.data.answer_span import answer_span
from pipeline.data.datasets import Example
from pipeline.data.prompts import PromptTemplate, encode_prompt
from pipeline.decoding import cot
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.distributions import mix
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import CotDecoding, FixedAlpha, Student, build_strategy
from pipeline.engine.hf import HFEngine
from pipeline.engine.stop import StopRule
from pipeline.errors import UserError
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.store.schemas import RESULT_SCHEMA
from pipeline.tasks.evaluate import decode_unit, make_units, run_evaluation

MAX_NEW = 12
QUESTIONS = ["what is 2+2?", "a much longer question, what is 17*3 minus 4?", "hi", "Tom has 3 apples."]
TEMPLATE = PromptTemplate(name="t", instruction="Solve.\n\n", exemplars=())


def fixed_span(text: str) -> tuple[int, int] | None:
    """A span known in advance (characters 2..5), so the answer-token mapping is exercised on any text."""
    return (2, 5) if len(text) >= 5 else None


@pytest.fixture(scope="module")
def models(tiny_pair):
    s, t = ModelSpec(str(tiny_pair[0]), "float32"), ModelSpec(str(tiny_pair[1]), "float32")  # exact comparisons
    return load_model(s), load_model(t), shared_vocab_size(model_facts(s), model_facts(t))


@pytest.fixture(scope="module")
def decoder(models):
    student, teacher, vocab = models
    stop = StopRule(frozenset(model_facts(student.spec).eos_ids), ("\n\nQ:",), MAX_NEW)
    return Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer, stop)


@pytest.fixture(scope="module")
def prompts(models):
    return [encode_prompt(models[0].tokenizer, TEMPLATE, q) for q in QUESTIONS]


def gap(p: torch.Tensor) -> float:
    top = p.sort(descending=True).values
    return float(top[0] - top[1])


def one_branch_alone(decoder, prompt, first_token: int) -> tuple[list[int], list[float]]:
    """A branch decoded by hand: its own prefill, its first token, then the student greedily;
    the top-1 − top-2 gap of the distribution each token was chosen from."""
    engine, session = decoder.student, uuid.uuid4().hex
    p = engine.prefill(session, [prompt]).probs[0]
    ids, gaps, token = [], [], first_token
    while True:
        ids.append(token)
        gaps.append(gap(p))
        if decoder.stop.stop_reason(decoder.tokenizer, ids):
            break
        p = engine.step(session, torch.tensor([token])).probs[0]
        token = int(p.argmax())
    engine.close(session)
    return ids, gaps


def confidence_by_hand(decoder, ids: list[int], gaps: list[float], span_of) -> float:
    tok = decoder.tokenizer
    span = span_of(decoder.stop.final_text(tok, ids))
    if span is None:
        return sum(gaps) / len(gaps)
    start, end = span
    bounds = [(len(tok.decode(ids[:i], skip_special_tokens=True)), len(tok.decode(ids[: i + 1], skip_special_tokens=True)))
              for i in range(len(ids))]
    inside = [g for g, (a, b) in zip(gaps, bounds) if a < end and b > start]
    return sum(inside) / len(inside)


def student_top(decoder, prompts, k: int) -> list[list[int]]:
    p = decoder.student.prefill("top", prompts).probs
    decoder.student.close("top")
    return torch.sort(p, dim=-1, descending=True, stable=True).indices[:, :k].tolist()


def test_k_one_is_student_greedy(decoder, prompts):
    gens = generate(decoder, CotDecoding(k=1, answer_span=answer_span), prompts)
    greedy = generate(decoder, Student(), prompts)
    assert [g.token_ids for g in gens] == [g.token_ids for g in greedy]
    assert [g.student_tokens_processed for g in gens] == [g.student_tokens_processed for g in greedy]
    assert all(g.cot_k == 1 and g.cot_branch == 0 and g.teacher_tokens == 0 for g in gens)


def test_branches_decoded_in_one_batch_equal_each_branch_alone(decoder, prompts):
    k, session = 4, uuid.uuid4().hex
    p = decoder.student.prefill(session, prompts).probs
    rows = cot.decode_branches(decoder.student, session, p, k, decoder.stop, decoder.tokenizer)
    decoder.student.close(session)
    for prompt, row, firsts in zip(prompts, rows, student_top(decoder, prompts, k)):
        assert [b.rank for b in row] == list(range(k))
        for branch, first in zip(row, firsts):
            ids, gaps = one_branch_alone(decoder, prompt, first)
            assert branch.token_ids == ids
            assert branch.gaps == pytest.approx(gaps, abs=1e-5)


@pytest.mark.parametrize("span_of", [answer_span, fixed_span])
def test_the_kept_path_has_the_highest_answer_confidence(decoder, prompts, span_of):
    k = 4
    gens = generate(decoder, CotDecoding(k=k, answer_span=span_of), prompts)
    for prompt, gen, firsts in zip(prompts, gens, student_top(decoder, prompts, k)):
        paths = [one_branch_alone(decoder, prompt, first) for first in firsts]
        confidences = [confidence_by_hand(decoder, ids, gaps, span_of) for ids, gaps in paths]
        best = max(range(k), key=lambda j: confidences[j])
        assert gen.cot_k == k
        assert gen.cot_confidence == pytest.approx(confidences[best], abs=1e-5)
        assert confidences[gen.cot_branch] == pytest.approx(max(confidences), abs=1e-5)
        assert gen.token_ids == paths[gen.cot_branch][0]
        # every branch was decoded for this example: the prompt once, each branch's tokens fed
        fed = sum(len(ids) - 1 for ids, _ in paths)
        assert gen.student_tokens_processed == decoder.student.prompt_cost(prompt) + fed


@pytest.mark.parametrize("alpha", [1.0, 0.5, -0.5])
def test_mixed_branching_uses_the_top_k_of_the_mixed_distribution(decoder, prompts, alpha):
    k = 5
    p_s = decoder.student.prefill("s", prompts).probs
    p_t = decoder.teacher.prefill("t", prompts).probs
    decoder.student.close("s")
    decoder.teacher.close("t")
    order = torch.sort(mix(p_s, p_t, alpha), dim=-1, descending=True, stable=True).indices[:, :k].tolist()
    assert order != torch.sort(p_s, dim=-1, descending=True, stable=True).indices[:, :k].tolist()  # the case tests something
    gens = generate(decoder, CotDecoding(k=k, alpha=alpha, answer_span=answer_span), prompts)
    for prompt, gen, row, own in zip(prompts, gens, order, p_s.argmax(dim=-1).tolist()):
        assert gen.token_ids[0] == row[gen.cot_branch]
        assert gen.token_ids == one_branch_alone(decoder, prompt, row[gen.cot_branch])[0]
        assert gen.alpha == alpha and gen.teacher_tokens == 1 and gen.teacher_positions == [0]
        assert gen.teacher_changed_tokens == int(gen.token_ids[0] != own)
        assert gen.teacher_tokens_processed == decoder.teacher.prompt_cost(prompt)  # the prefill only: N = 1


def test_mixed_branching_with_k_one_is_fixed_alpha_at_n_one(decoder, prompts):
    gens = generate(decoder, CotDecoding(k=1, alpha=1.0, answer_span=answer_span), prompts)
    fixed = generate(decoder, FixedAlpha(1.0, 1), prompts)
    assert [g.token_ids for g in gens] == [g.token_ids for g in fixed]
    assert [g.teacher_tokens for g in gens] == [g.teacher_tokens for g in fixed]


@pytest.mark.parametrize("params,message", [
    ({"k": 0}, "k must be ≥ 1, got 0"),
    ({"k": 257}, "k must be ≤ 256, got 257"),
    ({"k": 2.5}, "k must be an integer, got 2.5"),
    ({"k": True}, "k must be an integer, got True"),
    ({"k": "3"}, "k must be an integer, got '3'"),
    ({"alpha": float("inf")}, "alpha must be a finite number"),
    ({"alpha": float("nan")}, "alpha must be a finite number"),
    ({"alpha": "x"}, "alpha must be a finite number"),
    ({"n_tokens": 2}, "unknown parameter 'n_tokens'"),
    ({"answer_span": len}, "unknown parameter 'answer_span'"),
])
def test_bad_cot_parameters(params, message):
    with pytest.raises(UserError, match=message) as err:
        build_strategy("cot_decoding", params)
    assert "\n" not in str(err.value)


def test_defaults_and_the_answer_extraction_it_needs(decoder, prompts):
    built = build_strategy("cot_decoding")
    assert (built.k, built.alpha, built.params()) == (10, 0.0, {"k": 10, "alpha": 0.0, "n_tokens": 0})
    assert build_strategy("cot_decoding", {"k": 3, "alpha": 1}).params() == {"k": 3, "alpha": 1, "n_tokens": 1}
    with pytest.raises(ValueError, match="answer_span"):
        generate(decoder, built, prompts)


def test_result_rows_carry_the_cot_columns(decoder, models):
    from pipeline.data.prompts import load_template

    examples = [Example(f"tiny/test/{i:06d}", i, q, "4") for i, q in enumerate(QUESTIONS)]
    specs = [StrategySpec("student"), StrategySpec("cot_decoding", {"k": 3}), StrategySpec("cot_decoding", {"k": 2, "alpha": 1.0})]
    units = list(make_units(specs, examples, len(examples), "tiny", "test"))
    rows = [row for unit in units for row in decode_unit(decoder, load_template("gsm8k_cot_8shot"), unit)]
    table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
    assert table.num_rows == len(examples) * len(specs)
    for row in rows:
        if row["strategy_name"] == "student":
            assert row["cot_k"] is None and row["cot_branch"] is None and row["cot_confidence"] is None
            continue
        k = json.loads(row["params"])["k"]
        assert row["cot_k"] == k and 0 <= row["cot_branch"] < k and isinstance(row["cot_confidence"], float)
        assert row["teacher_tokens"] == (1 if row["alpha"] else 0) and row["n_tokens"] == (1 if row["alpha"] else 0)
        assert row["teacher_token_mask"][:1] == [bool(row["alpha"])]


@pytest.mark.ray  # runs a job on Ray
def test_ray_evaluation_with_a_remote_teacher_equals_in_process(tiny_pair, tmp_path):
    from test_ray_evaluation import read_rows, single_process_rows

    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} plus {i + 1}?", "answer": str(2 * i + 1)}) + "\n" for i in range(4)))
    raw = {
        "student": {"path": str(tiny_pair[0])}, "teacher": {"path": str(tiny_pair[1])},
        "dataset": {"source": str(data), "name": "tiny", "split": "test", "answer_format": "plain"},
        "prompt": "gsm8k_cot_8shot", "decoding": {"max_new_tokens": 8, "batch_size": 2},
        "strategies": [{"name": "cot_decoding", "k": 3, "alpha": 1.0}],
        "ray": {"num_students": 1, "students_per_teacher": 1, "student": {"num_cpus": 0.5}, "teacher": {"num_cpus": 0.5}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(str(path))
    ray.init(address="local", num_cpus=2, num_gpus=0, log_to_driver=True)
    try:
        run_evaluation(config, str(tmp_path / "run"))
    finally:
        ray.shutdown()
    fields = ("generated_token_ids", "cot_k", "cot_branch", "cot_confidence", "teacher_tokens", "teacher_changed_tokens",
              "student_tokens_processed", "teacher_tokens_processed")

    def keyed(rows):
        return {r["example_id"]: tuple(r[f] for f in fields) for r in rows}

    assert keyed(read_rows(tmp_path / "run")) == keyed(single_process_rows(config))


@pytest.mark.parametrize("answer_type, choices, text, span", [
    ("number", (), "Add: 6+3=9. The answer is 9.", "9"),
    ("number", (), "6+3=9, so 9 it is", "9"),
    ("choice", ("A", "B", "C", "D"), "Birds fly, so (B) fits. The answer is C.", "C"),
    ("choice", ("A", "B", "C", "D"), "It is (B). But Birds differ.", "B"),  # not the B of "But" or "Birds"
    ("yes_no", (), "Paris is in France, 2 cities. So the answer is yes.", "yes"),
    ("math", (), "We get 2+2=4, so the result is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
])
def test_the_answer_span_is_the_benchmarks_answer(answer_type, choices, text, span):
    """CoT-decoding's confidence is measured on the answer the benchmark scores: a letter on
    ARC, yes/no on StrategyQA, the \\boxed{} content on MATH, not the last number."""
    from pipeline.data.answer_span import span_finder

    start, end = span_finder(answer_type, choices)(text)
    assert text[start:end] == span
