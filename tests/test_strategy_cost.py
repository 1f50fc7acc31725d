"""The floor of `speed.strategy_cost` on the demo world: what each strategy's rows make each
model compute, reconstructed from the rows, and the wall time measured against it."""
import pytest

from pipeline.config import load_config
from pipeline.decoding.shared_batch import generate
from pipeline.tasks.evaluate import built_strategy, for_examples
from speed.in_process import encoded_examples, in_process_decoder
from speed.strategy_cost import measure, read_calls


@pytest.fixture(scope="module")
def demo():
    config = load_config("configs/demo.yaml", ["dataset.limit=12", "decoding.batch_size=6"])
    decoder = in_process_decoder(config)
    examples, prompts, _ = encoded_examples(config, decoder)
    strategies = {spec.label: for_examples(built_strategy(spec), examples) for spec in config.strategies}
    return decoder, prompts, strategies


def test_the_calls_a_floor_replays_read_exactly_what_the_rows_say_the_teacher_read(demo):
    decoder, prompts, strategies = demo
    checked = 0
    for label, strategy in strategies.items():
        if strategy.alone:
            continue
        for prompt, gen in zip(prompts, generate(decoder, strategy, prompts)):
            calls = read_calls(strategy, gen, decoder.teacher.prompt_cost(prompt))
            if gen.teacher_tokens_processed:
                assert decoder.teacher.prompt_cost(prompt) + sum(map(len, calls.values())) == gen.teacher_tokens_processed, label
                assert 1 + len(calls) == gen.teacher_calls, label  # the prefill, then one call per replayed step
                checked += 1
    assert checked > 30


def test_each_strategy_gets_a_floor_of_the_models_it_uses(demo):
    decoder, prompts, strategies = demo
    batches = [prompts[:6], prompts[6:]]
    by_name = {strategy.name: strategy for strategy in strategies.values()}
    student, teacher, budget = (measure(decoder, by_name[n], batches) for n in ("student", "teacher", "budget"))
    assert student["floor_teacher"] == 0 < student["floor_student"]
    assert teacher["floor_student"] == 0 < teacher["floor_teacher"]
    assert budget["floor_student"] > 0 and budget["floor_teacher"] > 0
    for m in (student, teacher, budget):
        assert m["overhead"] == pytest.approx(m["wall"] / m["floor"])
    assert budget["read"] > 0 and budget["calls"] >= 1 and student["read"] == 0
