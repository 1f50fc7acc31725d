"""The distributed path against the same engine in one process, on the same units.

    python -m speed.ray_vs_inprocess [--config configs/demo.yaml] [--examples 600]

(a) in one process: the evaluate job's units decoded one after the other by one Decoder
    (student and teacher `HFEngine`s, all of this machine's threads);
(b) on Ray: the job's own actors (a teacher actor and its student workers, resources as
    configured) and scheduler over the same units; Ray's start-up (cluster, actors, models
    loaded, each worker's first unit: imports and first kernels) is timed
    apart and printed as ray_startup_s. The in-process path gets the same warm-up, untimed.
The rows must be the same (checked: text, correctness, token counts). Prints
ray_vs_inprocess = (b) / (a), excluding start-up.
"""
from __future__ import annotations

import time

import ray
import torch

from pipeline.data.datasets import load_examples
from pipeline.data.prompts import load_template
from pipeline.models.facts import model_facts, shared_vocab_size
from pipeline.runtime.cluster import connect
from pipeline.runtime.job import teacher_batching
from pipeline.runtime.placement import start_decoders
from pipeline.runtime.scheduler import schedule
from pipeline.tasks.evaluate import decode_unit, make_units
from speed.in_process import in_process_decoder, speed_arguments, speed_config

COMPARED = ("generated_text", "correct", "teacher_tokens", "student_tokens_processed", "teacher_tokens_processed")


def keyed(rows: list[dict]) -> dict:
    return {(r["example_id"], r["strategy"]): tuple(r[f] for f in COMPARED) for r in rows}


def main() -> None:
    parser = speed_arguments(__doc__, 600)
    args = parser.parse_args()
    config = speed_config(args)
    examples = load_examples(config.dataset)
    units = list(make_units(config.strategies, examples, config.decoding.batch_size, config.dataset.name, config.dataset.split))
    vocab = shared_vocab_size(model_facts(config.student), model_facts(config.teacher))
    template = load_template(config.prompt)

    warm_up = units[: config.ray.num_students]  # a unit per worker (every strategy), untimed on both paths
    decoder = in_process_decoder(config)
    for unit in warm_up:
        decode_unit(decoder, template, unit)
    start = time.perf_counter()
    local = [row for unit in units for row in decode_unit(decoder, template, unit)]
    t_local = time.perf_counter() - start
    threads = torch.get_num_threads()

    start = time.perf_counter()
    connect()
    fleet = start_decoders(config, vocab)
    ray.get([a.placement.remote() for a in fleet.teachers + fleet.workers])  # models loaded, actors ready
    schedule(fleet.workers, warm_up, lambda unit, rows: None, config.ray.max_attempts, log=print)  # imports, first kernels
    t_startup = time.perf_counter() - start
    remote: list[dict] = []
    start = time.perf_counter()
    schedule(fleet.workers, units, lambda unit, rows: remote.extend(rows), config.ray.max_attempts, log=print)
    t_ray = time.perf_counter() - start
    steps = teacher_batching(fleet.teachers)
    ray.shutdown()

    a, b = keyed(local), keyed(remote)
    differing = sum(a[k] != b.get(k) for k in a)
    print(f"{len(units)} units, {len(local)} rows; in one process ({threads} threads): {t_local:.2f} s; "
          f"on Ray ({config.ray.num_students} student workers, {config.ray.num_teachers} teacher): {t_ray:.2f} s")
    print(f"rows that differ between Ray and one process: {differing} of {len(a)}")
    print(f"teacher steps received {steps['calls']:,}, forwards run {steps['forwards']:,} (warm-up included)")
    print(f"ray_vs_inprocess={t_ray / t_local:.2f} ray_startup_s={t_startup:.1f}")
    assert differing == 0 and len(a) == len(b), "the distributed path changed rows"


if __name__ == "__main__":
    main()
