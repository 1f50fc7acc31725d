"""The strategy example of docs/extending.md, run as written: one module is a strategy."""
import re
import sys
import types
from pathlib import Path

import pytest

from pipeline.config import ModelSpec
from pipeline.data.prompts import PromptTemplate, encode_prompt
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.distributions import entropy
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import STRATEGIES, FixedAlpha, Student, build_strategy
from pipeline.engine.hf import HFEngine
from pipeline.engine.stop import StopRule
from pipeline.errors import UserError
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
QUESTIONS = ["what is 2+2?", "a much longer question, what is 17*3 minus 4?", "hi", "Tom has 3 apples.", "9 - 4 = ?", "zzz"]


@pytest.fixture
def margin_gate():
    """The doc's module, loaded as the package would find it; unregistered afterwards."""
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    module = types.ModuleType("pipeline.decoding.strategies.margin_gate")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code, str(DOC), "exec"), module.__dict__)
        yield module.MarginGate
    finally:
        STRATEGIES.pop("margin_gate", None)
        sys.modules.pop(module.__name__, None)


def test_the_example_is_under_twenty_lines():
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 20


def test_the_documented_strategy_is_built_checked_and_decodes(margin_gate, tiny_pair):
    assert STRATEGIES["margin_gate"] is margin_gate
    with pytest.raises(UserError, match="strategy 'margin_gate': margin must not be NaN"):
        build_strategy("margin_gate", {"margin": float("nan")})
    with pytest.raises(UserError, match="unknown parameter 'lo'"):
        build_strategy("margin_gate", {"lo": 0.1})

    s, t = (ModelSpec(str(d), "float32") for d in tiny_pair)
    student, teacher = load_model(s), load_model(t)
    vocab = shared_vocab_size(model_facts(s), model_facts(t))
    stop = StopRule(frozenset(model_facts(s).eos_ids), ("\n\nQ:",), 10)
    decoder = Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer, stop)
    template = PromptTemplate(name="t", instruction="Solve.\n\n", exemplars=())
    prompts = [encode_prompt(student.tokenizer, template, q) for q in QUESTIONS]

    p_first = HFEngine(student, vocab).prefill("probe", prompts).probs
    top = p_first.topk(2, dim=-1).values
    margins = (top[:, 0] - top[:, 1]).tolist()
    margin = sorted(margins)[len(margins) // 2]  # about half the rows consult the teacher
    gate = build_strategy("margin_gate", {"alpha": 2.0, "n_tokens": 3, "margin": margin})
    assert gate.params() == {"alpha": 2.0, "n_tokens": 3, "margin": margin}

    gens = generate(decoder, gate, prompts)
    consulted = [m < margin for m in margins]
    assert 0 < sum(consulted) < len(prompts), entropy(p_first)
    mixed, alone = generate(decoder, FixedAlpha(2.0, 3), prompts), generate(decoder, Student(), prompts)
    for row, asked in enumerate(consulted):
        expected = mixed[row] if asked else alone[row]
        assert gens[row].token_ids == expected.token_ids
        assert gens[row].alpha == (2.0 if asked else 0.0)
        assert (gens[row].teacher_tokens_processed > 0) == asked


def test_a_name_is_one_strategy_and_module_names_are_checked():
    from pipeline.decoding.strategies import Strategy, strategy

    class Impostor(Strategy):
        pass

    with pytest.raises(UserError, match="strategy 'fixed_alpha' is registered already \\(by pipeline.decoding.strategies.fixed_alpha\\)"):
        strategy("fixed_alpha")(Impostor)
    assert STRATEGIES["fixed_alpha"] is FixedAlpha
    with pytest.raises(UserError, match="unknown strategy 'fixed_alpha': json registers no strategy of that name"):
        build_strategy("json:fixed_alpha", {})
