"""Position labels (`labels.positions`) and the budget calibrated on them."""
import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipeline.config import LabelSettings, load_config
from pipeline.config.sections import PositionSettings
from pipeline.data.answer_types import score
from pipeline.decoding.distributions import mix
from pipeline.decoding.position_labels import label_positions
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import Student, build_strategy
from pipeline.tasks.label import LabelUnit
from predictor.budget_calibration import Budget, _Example, replay
from speed.in_process import encoded_examples, in_process_decoder

SETTINGS = PositionSettings(top_m=3, alpha_grid=(0.5, 1.0, 2.0))


@pytest.fixture(scope="module")
def demo():
    config = load_config("configs/demo.yaml", ["dataset.limit=40"])
    decoder = in_process_decoder(config)
    examples, prompts, template = encoded_examples(config, decoder)
    return config, decoder, examples, prompts, template


def test_position_labels_agree_with_decoding_each_labelled_choice_directly(demo):
    """Each label: the mixed token of fresh prefills of prompt + greedy prefix, and the answer of
    the student continuing after it, as `generate` gives it from that prefix."""
    _, decoder, examples, prompts, _ = demo
    labels = label_positions(decoder, prompts[:12], SETTINGS)
    alone = generate(decoder, Student(), prompts[:12])
    checked = changed = 0
    for prompt, ex, lab, own in zip(prompts, examples, labels, alone):
        assert lab.greedy.token_ids == own.token_ids and len(lab.entropy) == len(own.token_ids) == len(lab.margin)
        assert len(lab.steps) == min(3, len(own.token_ids)) and lab.steps == sorted(lab.steps)
        assert min(lab.entropy[s] for s in lab.steps) >= max([h for t, h in enumerate(lab.entropy) if t not in lab.steps], default=0)
        for s, tokens, answers in zip(lab.steps, lab.tokens, lab.answers):
            prefix = (prompt[0], prompt[1] + own.token_ids[:s])
            p_s = decoder.student.prefill("check", [prefix]).probs
            p_t = decoder.teacher.prefill("check", [prefix]).probs
            decoder.student.close("check"), decoder.teacher.close("check")
            for alpha, token, answer in zip(SETTINGS.alpha_grid, tokens, answers):
                assert token == int(mix(p_s, p_t, torch.tensor([alpha])).argmax())
                [direct] = decoder.student.generate([prompt], decoder.stop, prefixes=[own.token_ids[:s] + [token]])
                assert answer.token_ids == direct.token_ids
                assert score(answer.text, ex).correct == score(decoder.finish_text(direct), ex).correct
                checked += 1
                changed += token != own.token_ids[s]
    assert checked == 12 * 3 * 3 and changed >= 10


def test_the_label_unit_writes_position_columns_and_their_cost(demo):
    config, decoder, examples, _, template = demo
    settings = dataclasses.replace(config.labels, positions=SETTINGS)
    unit = LabelUnit(0, tuple(examples[:6]), settings, "demo", "test", "s", "t")
    with_positions = unit.run(decoder, template)
    without = dataclasses.replace(unit, settings=dataclasses.replace(config.labels, positions=None)).run(decoder, template)
    for row, plain, ex in zip(with_positions, without, examples):
        assert row["position_alpha_grid"] == [0.5, 1.0, 2.0] and len(row["position_correct"]) == len(row["position_steps"])
        assert row["greedy_correct"] == score(decoder.tokenizer.decode(row["greedy_token_ids"]), ex).correct
        assert row["teacher_tokens_processed"] > plain["teacher_tokens_processed"]
        assert "position_steps" not in plain


def _example(**fields) -> _Example:
    base = dict(grid_correct=[False, True], diverges=[False, True], first_lengths=[1, 1], first=None, greedy=[7, 8, 9, 10],
                greedy_correct=False, trace={"entropy": np.array([0.1, 0.9, 0.2, 0.8]), "margin": np.array([0.9, 0.1, 0.8, 0.2])},
                labelled={1: 0, 3: 1}, tokens=[[8, 5], [10, 6]], correct=[[False, True], [False, False]])
    return _Example(**{**base, **fields})


def test_a_replayed_budget_spends_at_unsure_steps_and_takes_the_first_changed_tokens_label():
    ex = _example()
    unsure = Budget("entropy", 0.5, 2, 2.0)
    assert replay(ex, unsure, 0, 0) == (False, 2, 0)  # α 0.5 keeps both greedy tokens: the greedy answer
    assert replay(ex, unsure, 0, 1) == (True, 1, 0)  # α 2 changes step 1's token: its label
    assert replay(ex, Budget("margin", 0.5, 1, 2.0), 0, 0) == (False, 1, 0)  # K = 1: step 3 is never reached
    assert replay(ex, Budget("entropy", 0.0, 4, 2.0), 0, 0) == (False, 4, 2)  # steps 0 and 2 unlabelled
    # an artifact α whose first token differs from the student's: its α-label, N tokens spent
    assert replay(_example(first=1), unsure, 1, 1) == (True, 1, 0)
    # one that keeps it: the walk goes on after the first N tokens
    assert replay(_example(first=1, diverges=[False, False]), unsure, 1, 1) == (True, 2, 0)
    # the artifact's α is 0: its first N tokens are the student's, unspent, and the walk starts after them
    assert replay(ex, Budget("entropy", 0.0, 4, 2.0), 1, 0) == (False, 3, 1)


def test_a_replay_with_an_artifact_agrees_with_the_strategys_consultations():
    """The first tokens are the artifact's to decide, whatever the threshold: what `Budget.consults` does."""
    from pipeline.decoding.strategies import Budget as Strategy

    class Artifact:  # what `consults` reads of a loaded artifact
        n_tokens, budget = 1, None

    strategy = dataclasses.replace(Strategy(k=2, threshold=0.0, signal="entropy", alpha=2.0, artifact="a"), policy=Artifact())
    p = torch.full((2, 4), 0.25)  # maximally unsure
    assert strategy.consults(0, p, torch.tensor([0.0, 1.0]), torch.tensor([0, 0])).tolist() == [False, True]
    assert strategy.consults(1, p, torch.tensor([0.0, 1.0]), torch.tensor([0, 1])).tolist() == [True, True]
    assert replay(_example(first=None), Budget("entropy", 0.0, 2, 2.0), 1, 0)[1] == 2  # steps 1 and 2, not 0


def test_a_budget_trained_on_position_labels_decodes_as_calibrated(demo, tmp_path):
    """Train labels with positions → an artifact whose budget the strategy takes up, and that
    budget on held-out problems scores what the calibration promised, within its interval."""
    from predictor.online import load_online
    from predictor.training import TrainSettings, train_predictor

    config, decoder, _, _, template = demo
    train = load_config("configs/demo.yaml", ["dataset.source=demo_world/data/train.jsonl", "dataset.split=train",
                                              "dataset.limit=150"])
    from pipeline.data.datasets import load_examples
    settings = LabelSettings(alpha_grid=(2.0, 1.0, 0.5, 0.0), n_tokens=1, positions=SETTINGS)
    examples = load_examples(train.dataset)
    rows = [r for i in range(0, 150, 50)
            for r in LabelUnit(i, tuple(examples[i:i + 50]), settings, "demo", "train", "s", "t").run(decoder, template)]
    from pipeline.models.facts import model_facts
    for r in rows:
        r["student"] = model_facts(config.student).identity
    table = pa.Table.from_pylist(rows)
    predictor = train_predictor(table, TrainSettings(teacher_token_cost=0.01, folds=3, inner_folds=3), ["train"])
    calibrated = predictor.meta["budget"]
    assert calibrated["k"] in (1, 2, 3, 5) and calibrated["accuracy"] >= 0.9  # K ∈ N + {0, 1, 2, 4}, N = 1
    artifact = str(predictor.save(tmp_path / "art"))
    budget = build_strategy("budget", {"artifact": artifact}, load_online)
    assert (budget.k, budget.threshold, budget.signal, budget.alpha) == tuple(calibrated[k] for k in ("k", "threshold", "signal", "alpha"))
    _, _, test_examples, prompts, _ = demo
    gens = generate(decoder, budget, prompts)
    right = sum(score(g.text, ex).correct for g, ex in zip(gens, test_examples)) / len(gens)
    assert right >= calibrated["accuracy_lo"] - 0.05 and all(g.teacher_tokens <= budget.k for g in gens)
