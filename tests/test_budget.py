"""`budget`: K teacher-decided tokens spent at the steps where the student is unsure."""
from pathlib import Path

import pytest
import torch

from pipeline.config import ModelSpec
from pipeline.data.prompts import encode_prompt, load_template
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.distributions import entropy
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import FixedAlpha, Student, build_strategy
from pipeline.engine.hf import HFEngine
from pipeline.engine.stop import StopRule
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from reference_decoding import assert_same_rows, reference_generate

QUESTIONS = [f"Ann had {i} pens and gave {i + 2} away. How many now?" for i in range(6)]
MAX_NEW = 10
ARTIFACT = str(Path(__file__).resolve().parents[1] / "artifacts" / "alpha-demo-v2")  # trained before position labels


@pytest.fixture(scope="module")
def decoder(tiny_pair):
    s, t = (ModelSpec(str(d), "float32") for d in tiny_pair)
    student, teacher = load_model(s), load_model(t)
    stop = StopRule(frozenset(model_facts(s).eos_ids), ("\nQ:",), MAX_NEW)
    return Decoder(HFEngine(student, shared_vocab_size(model_facts(s), model_facts(t))),
                   HFEngine(teacher, shared_vocab_size(model_facts(s), model_facts(t))), student.tokenizer, stop)


@pytest.fixture(scope="module")
def prompts(decoder):
    return [encode_prompt(decoder.tokenizer, load_template("gsm8k_cot_8shot"), q) for q in QUESTIONS]


def test_unsure_at_every_step_it_is_fixed_alpha_for_the_first_k_tokens(decoder, prompts):
    always = build_strategy("budget", {"k": 3, "threshold": -1.0, "alpha": 1.5})  # entropy > -1: every step
    got, want = generate(decoder, always, prompts), generate(decoder, FixedAlpha(1.5, 3), prompts)
    assert [g.token_ids for g in got] == [g.token_ids for g in want]
    assert [g.teacher_positions for g in got] == [[0, 1, 2]] * len(prompts)
    # consulted at steps 0, 1, 2: the prompt, then one token caught up at each later step
    assert [g.teacher_tokens_processed for g in got] == [g.teacher_tokens_processed for g in want]
    assert [g.teacher_calls for g in got] == [g.teacher_calls for g in want] == [3] * len(prompts)


def test_the_budget_is_never_exceeded_and_spent_only_where_the_student_is_unsure(decoder, prompts):
    alone = generate(decoder, Student(), prompts)
    # a threshold between the student's own entropies: some steps are unsure, others not
    seen = []
    session = "probe"
    p = decoder.student.prefill(session, prompts).probs
    seen += entropy(p).tolist()
    decoder.student.close(session)
    threshold = float(torch.tensor(seen).median())
    for k in (1, 2, 4):
        strategy = build_strategy("budget", {"k": k, "threshold": threshold, "alpha": 2.0})
        gens = generate(decoder, strategy, prompts)
        assert all(g.teacher_tokens <= k and len(g.teacher_positions) == g.teacher_tokens for g in gens)
        assert any(g.teacher_tokens > 0 for g in gens) and any(g.teacher_tokens < k for g in gens)
        for g, own in zip(gens, alone):
            if not g.teacher_positions:  # never consulted: the student's own answer
                assert g.token_ids == own.token_ids
        # the one orchestration and the plain reference agree
        assert_same_rows(gens, reference_generate(decoder, strategy, prompts), strategy)


def test_a_consulted_step_records_the_student_uncertainty_it_acted_on(decoder, prompts):
    strategy = build_strategy("budget", {"k": 1, "threshold": 0.5, "signal": "margin", "alpha": 1.0})
    gens = generate(decoder, strategy, prompts)
    for prompt, g in zip(prompts, gens):
        if not g.teacher_positions:
            continue
        [step] = g.teacher_positions
        # replay the row's prefix on the student: at the consulted step its margin was under the threshold
        prefix = g.token_ids[:step]
        p = decoder.student.prefill("replay", [(prompt[0], prompt[1] + prefix)]).probs
        decoder.student.close("replay")
        top = p.topk(2, dim=-1).values[0]
        assert float(top[0] - top[1]) < 0.5


def test_the_teacher_reads_only_what_a_row_wrote_before_its_consultations(decoder, prompts):
    """Catch-up, not lockstep: a row's teacher cost is its prompt plus its tokens up to its last
    consultation, one call for the prefill and one per later consultation; each consultation
    records its step, the student's entropy there, α and whether the token changed."""
    strategy = build_strategy("budget", {"k": 2, "threshold": 3.5, "alpha": 2.0})  # nats: unsure at steps 0 and 2
    gens = generate(decoder, strategy, prompts)
    assert any(g.consultations and g.consultations[-1].step > 1 for g in gens)  # caught up over several tokens
    for prompt, g in zip(prompts, gens):
        steps = [c.step for c in g.consultations]
        assert steps == g.teacher_positions and len(steps) == g.teacher_tokens <= 2
        assert g.teacher_tokens_processed == decoder.teacher.prompt_cost(prompt) + (steps[-1] if steps else 0)
        assert g.teacher_calls == 1 + sum(step > 0 for step in steps)
        assert all(c.alpha == 2.0 and c.uncertainty > 3.5 for c in g.consultations)
        assert sum(c.changed for c in g.consultations) == g.teacher_changed_tokens
        assert g.alpha == (2.0 if steps else 0.0)


def test_with_a_predictor_the_first_token_is_predicted_alpha_and_later_doubts_still_consult():
    """On the demo world: where the artifact's α is not 0 the first token is predicted α's
    (that α, one teacher token), where it is 0 the first token is the student's own; the
    `teacher_only` problems' second decision, after the first token, consults with `alpha`."""
    from pipeline.config import load_config
    from pipeline.data.answer_types import score
    from pipeline.decoding.strategies import PredictedAlpha
    from predictor.online import load_online
    from speed.in_process import encoded_examples, in_process_decoder

    config = load_config("configs/demo.yaml", ["dataset.limit=100"])
    demo = in_process_decoder(config)
    examples, batch, _ = encoded_examples(config, demo)
    predicted = PredictedAlpha(ARTIFACT).resolved(load_online)
    budget = build_strategy("budget", {"artifact": ARTIFACT, "k": 2, "threshold": 0.3,
                                       "signal": "margin", "alpha": 1.0}, load_online)
    assert budget.params()["first_tokens"] == 1
    alone, first, spent = generate(demo, Student(), batch), generate(demo, predicted, batch), generate(demo, budget, batch)
    late = 0
    for ex, s, p, b in zip(examples, alone, first, spent):
        assert b.teacher_tokens <= 2
        at_first = [c for c in b.consultations if c.step == 0]
        assert [c.alpha for c in at_first] == ([p.alpha] if p.alpha else [])
        assert b.token_ids[0] == p.token_ids[0]
        late += any(c.step > 0 for c in b.consultations)
        if ex.group == "teacher_only":
            assert [c.alpha for c in b.consultations if c.step > 0] == [1.0] and score(b.text, ex).correct
        if not b.consultations:
            assert b.token_ids == s.token_ids
    assert late >= 10


def test_k_counts_an_artifacts_first_tokens():
    """K below the artifact's N would cut its first tokens short: refused; left out, K is at least N."""
    import copy

    from pipeline.errors import UserError
    from predictor.online import load_online

    artifact = ARTIFACT  # N = 1, no calibrated budget
    assert build_strategy("budget", {"artifact": artifact}, load_online).k == 2
    wide = copy.copy(load_online(artifact))
    wide.n_tokens = 3
    assert build_strategy("budget", {"artifact": artifact}, lambda _: wide).k == 3
    with pytest.raises(UserError, match=r"k \(2\) is below the 3 first tokens"):
        build_strategy("budget", {"artifact": artifact, "k": 2}, lambda _: wide)
