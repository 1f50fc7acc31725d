"""What each strategy of a config costs in wall time, against the floor its own rows set.

    python -m speed.strategy_cost [--config configs/demo.yaml] [--examples 600] [--threads 2]
    python -m speed.strategy_cost --config configs/real_pair.yaml --examples 20   # the real pair

For every strategy of the config, decoded alone batch by batch (the config's batch size),
student and teacher in this process:
- `wall`: seconds, the way the evaluate job decodes it (`Decoder.generate`);
- the teacher's cost per example: tokens it decided, tokens it read, calls;
- `floor`: the model forwards those very rows need, each timed alone: the student's own decode
  of the rows (prompts prefilled, then each row's tokens fed one step at a time, every row of
  the batch in each step: CoT-decoding's branches, recomputed untimed, included), plus the
  teacher's forwards over exactly the tokens the strategy made it read, batched as wide as
  its rows allow: the prompts in one prefill, then one forward per call the method needs (a
  lockstep strategy or the teacher alone: a step per token; a budget: a catch-up per
  consultation step, all rows consulting there together);
- `overhead = wall / floor`: what the implementation adds to the forwards (orchestration,
  copies, waits, padding). Ratios come from one run, on one machine, in one process.
"""
from __future__ import annotations

import time
import uuid
from collections import defaultdict

import torch

from pipeline.decoding.cot import decode_branches, first_distribution
from pipeline.decoding.decoder import Decoder
from pipeline.decoding.generation import Generation
from pipeline.decoding.shared_batch import generate
from pipeline.decoding.strategies import CotDecoding, Strategy, Teacher
from pipeline.engine.interface import Prompt
from pipeline.tasks.evaluate import built_strategy, for_examples
from speed.in_process import encoded_examples, in_process_decoder, speed_arguments, speed_config


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def forced_decode(engine, prompts: list[Prompt], streams: list[list[int]]) -> float:
    """Seconds of the forwards that decoding `streams` (one per prompt) costs: one prefill of
    the prompts, then a step per token, every unfinished row in each step (a row's last token
    is never fed)."""
    session = uuid.uuid4().hex
    seconds = timed(lambda: engine.prefill(session, prompts))
    try:
        for t in range(max((len(s) for s in streams), default=0) - 1):
            feed = [[s[t]] if t < len(s) - 1 else [] for s in streams]
            if any(feed):
                seconds += timed(lambda: engine.extend_many([(session, feed, None)]))
    finally:
        engine.close(session)
    return seconds


def read_calls(strategy: Strategy, gen: Generation, prompt_cost: int) -> dict[int, list[int]]:
    """The tokens of a row's answer the teacher read beyond its prompt, by the step of the call
    that read them: a catch-up at each consultation after the first step (on demand), else one
    token per step, the teacher fed each token as it was written."""
    read = gen.teacher_tokens_processed - prompt_cost
    if read <= 0:
        return {}
    if strategy.plan.on_demand:
        calls, start = {}, 0
        for step in sorted({c.step for c in gen.consultations if c.step > 0}):
            calls[step] = gen.token_ids[start:step]
            start = step
        return calls
    return {t + 1: [token] for t, token in enumerate(gen.token_ids[:read])}


def teacher_floor(engine, prompts: list[Prompt], strategy: Strategy, gens: list[Generation]) -> float:
    """Seconds of the teacher's forwards over what the rows made it read: the prompts of the
    rows it prefilled in one prefill, then each call's rows together."""
    if isinstance(strategy, Teacher):  # it wrote every token itself
        return forced_decode(engine, prompts, [g.token_ids for g in gens])
    rows = [r for r, g in enumerate(gens) if g.teacher_tokens_processed > 0]
    if not rows:
        return 0.0
    session = uuid.uuid4().hex
    seconds = timed(lambda: engine.prefill(session, [prompts[r] for r in rows]))
    try:
        by_step = defaultdict(dict)
        for i, r in enumerate(rows):
            for step, tokens in read_calls(strategy, gens[r], engine.prompt_cost(prompts[r])).items():
                by_step[step][i] = tokens
        for step in sorted(by_step):
            feed = [by_step[step].get(i, []) for i in range(len(rows))]
            seconds += timed(lambda: engine.extend_many([(session, feed, None)]))
    finally:
        engine.close(session)
    return seconds


def student_streams(decoder: Decoder, strategy: Strategy, prompts: list[Prompt], gens: list[Generation]) -> tuple[list[Prompt], list[list[int]]]:
    """What the student decoded for the rows: each row's answer, or CoT-decoding's every branch
    (recomputed, untimed: a row keeps only the chosen one)."""
    if isinstance(strategy, Teacher):
        return [], []
    if not isinstance(strategy, CotDecoding):
        return prompts, [g.token_ids for g in gens]
    session = uuid.uuid4().hex
    try:
        p = decoder.student.prefill(session, prompts).probs
        p_teacher = None
        if strategy.alpha:
            decoder.teacher.prefill(session, prompts)
            p_teacher = decoder.teacher.full_probs(session, list(range(len(prompts))))
            decoder.teacher.close(session)
        paths = decode_branches(decoder.student, session, first_distribution(p, p_teacher, strategy.alpha), strategy.k,
                                decoder.stop, decoder.tokenizer)
    finally:
        decoder.student.close(session)
    return [prompts[r] for r, row in enumerate(paths) for _ in row], [b.token_ids for row in paths for b in row]


def measure(decoder: Decoder, strategy: Strategy, batches: list[list[Prompt]]) -> dict:
    wall, floor_s, floor_t, rows = 0.0, 0.0, 0.0, []
    for batch in batches:
        start = time.perf_counter()
        gens = generate(decoder, strategy, batch)
        wall += time.perf_counter() - start
        rows += gens
        streams = student_streams(decoder, strategy, batch, gens)
        floor_s += forced_decode(decoder.student, *streams) if streams[0] else 0.0
        floor_t += teacher_floor(decoder.teacher, batch, strategy, gens)
    per = lambda field: sum(getattr(g, field) for g in rows) / len(rows)  # noqa: E731
    floor = floor_s + floor_t
    return {"wall": wall, "floor": floor, "floor_student": floor_s, "floor_teacher": floor_t, "overhead": wall / floor,
            "decided": per("teacher_tokens"), "read": per("teacher_tokens_processed"), "calls": per("teacher_calls"),
            "tokens": sum(len(g.token_ids) for g in rows) / len(rows)}


def main() -> None:
    parser = speed_arguments(__doc__, 600)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = speed_config(args)
    decoder = in_process_decoder(config)
    examples, prompts, _ = encoded_examples(config, decoder)
    size = config.decoding.batch_size
    batches = [prompts[i: i + size] for i in range(0, len(prompts), size)]
    strategies = [(spec.label, for_examples(built_strategy(spec), examples)) for spec in config.strategies]
    for _, strategy in strategies:  # warm-up, untimed: two prompts each
        generate(decoder, strategy, prompts[:2])
    print(f"{len(prompts)} examples, batch {size}, {args.threads} thread(s), student and teacher in one process")
    header = f"{'strategy':<52} {'wall s':>8} {'floor s':>8} {'(student':>9} {'teacher)':>9} {'overhead':>9} {'decided':>8} {'read':>7} {'calls':>6}"
    print(header)
    print("-" * len(header))
    results = {}
    for label, strategy in strategies:
        m = results[label] = measure(decoder, strategy, batches)
        print(f"{label[:52]:<52} {m['wall']:8.1f} {m['floor']:8.1f} {m['floor_student']:9.1f} {m['floor_teacher']:9.1f} "
              f"{m['overhead']:9.2f} {m['decided']:8.2f} {m['read']:7.1f} {m['calls']:6.2f}", flush=True)
    by_name = {built_strategy(spec).name: spec.label for spec in config.strategies}
    walls = {label: m["wall"] for label, m in results.items()}
    for name in ("student", "teacher"):
        if name in by_name:
            print(" ".join(f"{label}_vs_{name}={walls[label] / walls[by_name[name]]:.2f}"
                           for label in walls if label != by_name[name]))
    print(f"max_overhead={max(m['overhead'] for m in results.values()):.2f}")


if __name__ == "__main__":
    main()
