"""Work shared inside a batch: one prefill and one student-greedy decode for every strategy,
several students' teacher steps in one forward, and a driver that reads only what it needs."""
import asyncio

import pyarrow as pa
import pytest
import torch

from pipeline.config import ModelSpec
from pipeline.data.prompts import encode_prompt, load_template
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.shared_batch import decode_strategies
from pipeline.decoding.strategies import Budget, EntropyGate, FixedAlpha, Student, Switch, Teacher
from pipeline.engine.hf import HFEngine
from pipeline.engine.interface import SessionLost
from pipeline.engine.stop import StopRule
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.models.loading import load_model
from pipeline.runtime.engine_queue import EngineQueue
from pipeline.store.parts import PartDataset, filesystem, write_part
from reference_decoding import assert_same_rows, reference_generate

QUESTIONS = [f"Tom has {i} apples and buys {i + 3} more. How many apples does he have?" for i in range(7)]


@pytest.fixture(scope="module")
def decoder(tiny_pair):
    s_spec, t_spec = ModelSpec(str(tiny_pair[0]), "float32"), ModelSpec(str(tiny_pair[1]), "float32")
    student, teacher = load_model(s_spec), load_model(t_spec)
    vocab = shared_vocab_size(model_facts(s_spec), model_facts(t_spec))
    stop = StopRule(frozenset(model_facts(s_spec).eos_ids), ("\nQ:",), 12)
    return Decoder(HFEngine(student, vocab), HFEngine(teacher, vocab), student.tokenizer, stop)


@pytest.fixture(scope="module")
def prompts(decoder):
    template = load_template("gsm8k_cot_8shot")
    return [encode_prompt(decoder.tokenizer, template, q) for q in QUESTIONS]


def _gate_around_median(decoder, prompts) -> EntropyGate:
    """A gate whose band holds about half the rows, so some rows consult and some do not."""
    first = decoder.student.prefill("probe", prompts)
    decoder.student.close("probe")
    h = -(first.probs * first.probs.clamp_min(1e-30).log()).sum(-1)
    return EntropyGate(alpha=1.5, n_tokens=2, lo=float(h.median()), hi=float(h.max()))


def test_every_strategy_on_one_batch_equals_each_strategy_alone(decoder, prompts):
    strategies = [Student(), Teacher(), FixedAlpha(1.0, 1), FixedAlpha(-0.5, 2), FixedAlpha(0.0, 2),
                  _gate_around_median(decoder, prompts), Switch(0.3, 0.1), Budget(k=3, threshold=3.5, alpha=1.5),
                  Budget(k=2, threshold=0.05, signal="margin", alpha=-0.5)]
    alone = [reference_generate(decoder, s, prompts) for s in strategies]
    before = decoder.student.tokens_processed
    together, _ = decode_strategies(decoder, strategies, prompts)
    shared_work = decoder.student.tokens_processed - before
    for s, expected, got in zip(strategies, alone, together):
        assert_same_rows(got.gens, expected, s)
    gate_rows = together[5].gens
    assert {g.alpha for g in gate_rows} == {0.0, 1.5}, "the gate should split the batch"
    # the rows still count what each strategy costs alone; the batch processed less than that
    assert shared_work < sum(g.student_tokens_processed for rows in together for g in rows.gens)


class CountingTeacher:
    """The teacher engine with every feed it gets recorded: (the student's step, the sessions
    fed, the rows fed in each)."""

    def __init__(self, engine: HFEngine, student: HFEngine):
        self.engine, self.student, self.feeds = engine, student, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def _note(self, calls):
        self.feeds.append((self.student.forwards, [(session, sum(1 for t in tokens if t)) for session, tokens, _ in calls]))

    def extend_many(self, calls):
        self._note(calls)
        return self.engine.extend_many(calls)

    def extend_many_async(self, calls):
        self._note(calls)
        return self.engine.extend_many_async(calls)


def test_a_step_sends_the_teacher_one_call_for_every_lockstep_row_and_one_for_every_consulting_row(decoder, prompts):
    """Several lockstep strategies (first-N, SWITCH) and several budgets on one batch: at each
    student step the teacher gets at most one call feeding the lockstep rows of all of them and
    one catch-up of the consulting rows of all of them; the rows are those of each alone."""
    strategies = [FixedAlpha(1.0, 3), FixedAlpha(-0.5, 2), Switch(0.3, 0.1),
                  Budget(k=4, threshold=3.5, alpha=1.5), Budget(k=3, threshold=0.05, signal="margin", alpha=0.5)]
    alone = [reference_generate(decoder, s, prompts) for s in strategies]
    counting = CountingTeacher(decoder.teacher, decoder.student)
    together, _ = decode_strategies(Decoder(decoder.student, counting, decoder.tokenizer, decoder.stop), strategies, prompts)
    for s, expected, got in zip(strategies, alone, together):
        assert_same_rows(got.gens, expected, s)
    per_step = {}
    for step, fed in counting.feeds:
        per_step.setdefault(step, []).append(fed)
    assert max(len(calls) for calls in per_step.values()) <= 2  # one lockstep feed and one catch-up a step
    lockstep_sessions = max(len(fed) for _, fed in counting.feeds[:2])
    assert lockstep_sessions == 3  # the first step feeds both first-N strategies and SWITCH in one call
    catch_ups = [fed for _, fed in counting.feeds if any(n > 0 for _, n in fed) and len(fed) == 2 and
                 {session for session, _ in fed}.isdisjoint({s for s, _ in counting.feeds[0][1]})]
    assert catch_ups, "some step should catch up rows of both budgets in one call"
    consulted = sum(g.teacher_tokens for rows in together[3:] for g in rows.gens)
    assert consulted > len(per_step) // 2  # many consultations, few calls


def test_a_catch_up_copies_no_cache(decoder, prompts, monkeypatch):
    """Within the loop neither a step nor a catch-up copies a cache: the only slot copies are
    the batch's rows taken from the shared prefills, before the student's first step."""
    looping, copies = [], []
    for engine in (decoder.student, decoder.teacher):
        original = engine.cache.copy
        monkeypatch.setattr(engine.cache, "copy", lambda src, dst, original=original: copies.append(bool(looping)) or original(src, dst))
    step = decoder.student.extend_many
    monkeypatch.setattr(decoder.student, "extend_many", lambda calls: looping.append(1) or step(calls))
    teacher_forwards = decoder.teacher.forwards
    together, _ = decode_strategies(decoder, [Budget(k=6, threshold=0.0, alpha=1.0), Switch(0.3, 0.1)], prompts)
    assert decoder.teacher.forwards - teacher_forwards > 6  # a prefill, then steps and catch-ups
    assert sum(g.teacher_tokens for g in together[0].gens) == 6 * len(prompts)
    assert copies and not any(copies)


def test_mixed_rows_whose_prefix_is_the_students_own_take_the_greedy_decode(decoder, prompts):
    """α = 0.01 barely moves the first token: those rows copy the student-greedy continuation
    instead of decoding it (the student is fed the mixed prefix only)."""
    strategies = [Student(), FixedAlpha(0.01, 1)]
    greedy, mixed = (reference_generate(decoder, s, prompts) for s in strategies)
    assert [g.token_ids for g in greedy] == [g.token_ids for g in mixed]
    before = decoder.student.tokens_processed
    together, _ = decode_strategies(decoder, strategies, prompts)
    fed = decoder.student.tokens_processed - before
    prompt_tokens = sum(decoder.student.prompt_cost(p) for p in prompts)
    greedy_steps = sum(len(g.token_ids) - 1 for g in greedy)
    assert fed == prompt_tokens + greedy_steps  # one prefill, one greedy decode, nothing else
    assert_same_rows(together[1].gens, mixed)


def test_features_of_a_merged_request_are_each_requests_own(decoder, prompts):
    from pipeline.engine.interface import FeatureRequest

    a, b = FeatureRequest((-1,), "concat"), FeatureRequest((0, -1), "mean")
    merged = FeatureRequest.merged([a, None, b])
    assert merged.layers == (-1, 0)
    both = decoder.student.prefill("m", prompts, merged).features
    for request in (a, b):
        own = decoder.student.prefill("o", prompts, request).features
        assert torch.equal(request.take(both, merged), own)
    for session in ("m", "o"):
        decoder.student.close(session)


def test_steps_of_several_sessions_in_one_forward_match_stepping_each(decoder, prompts):
    engine = decoder.teacher
    batched = HFEngine(engine.lm, engine.vocab_size)
    sessions = {"a": prompts[:3], "b": prompts[3:4], "c": prompts[4:]}  # different lengths and batch sizes
    for e in (engine, batched):
        for name, ps in sessions.items():
            e.prefill(name, ps)
    tokens = {name: torch.arange(len(ps)) + 5 for name, ps in sessions.items()}
    forwards, storage = batched.forwards, batched.cache.keys[0].data_ptr()
    for t in range(6):
        rows = {"a": [0, 2] if t == 1 else None, "b": None, "c": None}  # a drops its middle row
        if t == 1:
            tokens["a"] = tokens["a"][[0, 2]]
        if t == 4:  # c steps alone between two rounds: the next round must not reuse the stack
            own, mine = engine.step("c", tokens["c"]), batched.step("c", tokens["c"])
            torch.testing.assert_close(mine.logits, own.logits, rtol=0, atol=1e-4)
            tokens["c"] = own.logits.argmax(-1)
        one = {n: engine.step(n, tokens[n], rows[n]) for n in sessions}
        arrived = list(sessions) if t % 2 else list(sessions)[::-1]  # the callers' steps arrive in either order
        many = dict(zip(arrived, batched.step_many([(n, tokens[n], rows[n]) for n in arrived])))
        for n in sessions:
            torch.testing.assert_close(many[n].logits, one[n].logits, rtol=0, atol=1e-4)
            assert torch.equal(many[n].logits.argmax(-1), one[n].logits.argmax(-1))
            tokens[n] = one[n].logits.argmax(-1)
    assert batched.forwards - forwards == 6 + 1  # one forward per round for three sessions, and c's own step
    assert batched.cache.keys[0].data_ptr() == storage  # every round wrote in place: nothing stacked or re-stacked
    for e in (engine, batched):
        for name in sessions:
            e.close(name)


def test_engine_queue_keeps_each_callers_order_and_batches_waiting_steps(decoder, prompts):
    engine = HFEngine(decoder.teacher.lm, decoder.teacher.vocab_size)

    async def scenario():
        queue = EngineQueue(engine)
        # seq 1 (a step) arrives before seq 0 (the prefill it needs): it waits for it
        step_a = queue.feed("A", 1, [("sa", [[5], [6]], None)], lambda outs: outs[0].logits.argmax(-1).tolist())
        pre_a = queue.call("A", 0, lambda e: e.prefill("sa", prompts[:2]) and "prefilled")
        pre_b = queue.call("B", 0, lambda e: e.prefill("sb", prompts[2:3]) and "prefilled")
        step_b = queue.feed("B", 1, [("sb", [[7]], None)], lambda outs: outs[0].logits.argmax(-1).tolist())
        lost = queue.feed("C", 0, [("nowhere", [[1]], None)], lambda outs: outs)
        results = await asyncio.gather(pre_a, step_a, pre_b, step_b, lost, return_exceptions=True)
        return queue, results

    queue, (pre_a, step_a, pre_b, step_b, lost) = asyncio.run(scenario())
    assert (pre_a, pre_b) == ("prefilled", "prefilled")
    assert isinstance(lost, SessionLost)
    assert queue.feed_calls == 3 and queue.feed_forwards == 1  # A's and B's steps in one forward
    reference = HFEngine(engine.lm, engine.vocab_size)
    reference.prefill("sa", prompts[:2])
    reference.prefill("sb", prompts[2:3])
    assert step_a == reference.step("sa", torch.tensor([5, 6])).logits.argmax(-1).tolist()
    assert step_b == reference.step("sb", torch.tensor([7])).logits.argmax(-1).tolist()


def test_engine_queue_waits_a_window_for_stepping_callers_then_stops_waiting_for_gone_ones(decoder, prompts):
    engine = HFEngine(decoder.teacher.lm, decoder.teacher.vocab_size)
    argmax = lambda outs: outs[0].logits.argmax(-1).tolist()  # noqa: E731

    async def scenario():
        queue = EngineQueue(engine, batch_wait_s=5.0)
        await asyncio.gather(queue.call("A", 0, lambda e: e.prefill("sa", prompts[:2])),
                             queue.call("B", 0, lambda e: e.prefill("sb", prompts[2:3])))
        await asyncio.gather(queue.feed("A", 1, [("sa", [[5], [6]], None)], argmax),
                             queue.feed("B", 1, [("sb", [[7]], None)], argmax))
        before = engine.forwards
        asyncio.get_running_loop().call_later(0.05, lambda: queue.feed("B", 2, [("sb", [[8]], None)], argmax))
        await queue.feed("A", 2, [("sa", [[1], [2]], None)], argmax)  # B's step, 50 ms late, joins it
        joined = engine.forwards - before
        queue.batch_wait_s = 0.05
        await queue.feed("A", 3, [("sa", [[3], [4]], None)], argmax)  # B sends none: one window
        return joined, set(queue.stepping)

    joined, stepping = asyncio.run(scenario())
    assert joined == 1
    assert stepping == {"A"}  # B no longer holds A's steps back


def test_engine_queue_fails_calls_held_behind_one_that_never_comes(decoder, prompts):
    """After an actor restart a caller's numbering has a gap: its later calls fail, none hangs."""
    engine = HFEngine(decoder.teacher.lm, decoder.teacher.vocab_size)

    async def scenario():
        queue = EngineQueue(engine, gap_timeout_s=0.05)
        held = queue.call("A", 3, lambda e: "never runs")  # calls 0..2 were sent to the old actor
        first = await asyncio.gather(held, return_exceptions=True)
        late = await asyncio.gather(queue.call("A", 1, lambda e: "too late"), return_exceptions=True)
        after = await queue.call("A", 4, lambda e: "runs")
        return first[0], late[0], after

    held, late, after = asyncio.run(scenario())
    assert isinstance(held, SessionLost) and "never arrived" in str(held)
    assert isinstance(late, SessionLost)
    assert after == "runs"


def test_part_dataset_counts_rows_from_footers_and_reads_only_asked_columns(tmp_path):
    fs, root = filesystem(str(tmp_path))
    schema = pa.schema([("strategy", pa.string()), ("generated_text", pa.string())])
    for i in range(3):
        write_part(fs, f"{root}/results", f"part-b{i:06d}.parquet", [{"strategy": "s", "generated_text": "x" * 100}] * (i + 1), schema)
    data = PartDataset(fs, f"{root}/results")
    assert data.count_rows() == 6
    assert data.read(["strategy"]).column_names == ["strategy"]
