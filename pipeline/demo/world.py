"""The built-in demo world: where it is shipped, and how to rebuild it from a seed.

The shipped world lives in the repository under ``demo_world/``::

    demo_world/data/train.jsonl   GSM8K-format rows (question, answer "...\\n#### N")
    demo_world/data/test.jsonl    held-out rows, disjoint from train by question text
    demo_world/tokenizer/         the shared tokenizer
    demo_world/student/           small Llama (config.json, model.safetensors, tokenizer)
    demo_world/teacher/           larger Llama, same tokenizer and vocabulary

It was produced by ``python -m jobs.build_demo`` (= :func:`build_demo_world` with the
defaults below); the prompt is the built-in template ``demo``.
"""
from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import AutoTokenizer

import pipeline
from pipeline.demo.problems import cot_text, read_jsonl, split_problems, write_jsonl
from pipeline.demo.tokenizer import save_tokenizer, train_tokenizer
from pipeline.demo.training import ModelSpec, build_examples, save_model, train_model
from pipeline.data.prompts import answer_lead, load_template

DEMO_ROOT = Path(pipeline.__file__).resolve().parent.parent / "demo_world"
TEMPLATE_NAME = "demo"
DEFAULT_SEED = 0
N_TRAIN = 20000
N_TEST = 600

# The teacher is deep enough for the lookup of the asked item's count (an induction
# step, learnt from the recall drill first); the one-layer student is not (it picks the
# right count a third of the time, chance) but, given it, finishes ~90 % of problems:
# the gap two teacher tokens can close.
TEACHER_SPEC = ModelSpec(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384,
                         steps=1000, batch_size=64, lr=2e-3, warmup_steps=60,
                         drill_steps=2000, drill_per_batch=32, drill_until=0.97)
STUDENT_SPEC = ModelSpec(hidden_size=96, num_layers=1, num_heads=4, intermediate_size=384,
                         steps=1200, batch_size=64, lr=3e-3, warmup_steps=60,
                         drill_steps=200, drill_per_batch=32)


@dataclass(frozen=True)
class DemoPaths:
    root: Path
    data: Path
    train: Path
    test: Path
    tokenizer: Path
    student: Path
    teacher: Path
    template: str = TEMPLATE_NAME


def demo_paths(root: str | Path | None = None) -> DemoPaths:
    """Paths of the demo world under `root` (default: the shipped `demo_world/`)."""
    root = Path(root) if root is not None else DEMO_ROOT
    data = root / "data"
    return DemoPaths(root=root, data=data, train=data / "train.jsonl", test=data / "test.jsonl",
                     tokenizer=root / "tokenizer", student=root / "student", teacher=root / "teacher")


def _train_and_save(role: str, spec: ModelSpec, out: str, seed: int, root: str, position: int, threads: int) -> int:
    """One model, in its own process: train on the world's train split and save it."""
    paths = demo_paths(root)
    tok = AutoTokenizer.from_pretrained(paths.tokenizer)
    examples = build_examples(read_jsonl(paths.train), tok, load_template(TEMPLATE_NAME))
    model = train_model(spec, examples, tok, seed=seed, desc=role, threads=threads, position=position)
    save_model(model, tok, out, spec=spec, seed=seed)
    return sum(p.numel() for p in model.parameters())


def build_demo_world(out_dir: str | Path | None = None, seed: int = DEFAULT_SEED, *,
                     n_train: int = N_TRAIN, n_test: int = N_TEST,
                     teacher_spec: ModelSpec = TEACHER_SPEC, student_spec: ModelSpec = STUDENT_SPEC,
                     threads: int = 1, log=print) -> DemoPaths:
    """Regenerate data, tokenizer, student and teacher from `seed` into `out_dir`."""
    paths = demo_paths(out_dir)
    t0 = time.time()
    template = load_template(TEMPLATE_NAME)
    train, test = split_problems(n_train, n_test, seed)
    write_jsonl(train, paths.train)
    write_jsonl(test, paths.test)
    log(f"data: {len(train)} train / {len(test)} test problems -> {paths.data}")

    tok = train_tokenizer(template.render(r["question"]) + answer_lead(template) + cot_text(r) for r in train)
    save_tokenizer(tok, paths.tokenizer)
    log(f"tokenizer: {len(tok)} tokens (eos={tok.eos_token_id}, pad={tok.pad_token_id}) -> {paths.tokenizer}")

    summary = {"seed": seed, "n_train": len(train), "n_test": len(test), "template": TEMPLATE_NAME,
               "vocab_size": len(tok)}
    jobs = (("teacher", teacher_spec, paths.teacher, seed + 1), ("student", student_spec, paths.student, seed + 2))
    # the two models train at once, one process and `threads` threads each: a 2-core machine
    # builds the world in the teacher's time, and each model stays deterministic
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {role: pool.submit(_train_and_save, role, spec, str(out), model_seed, str(paths.root), i, threads)
                   for i, (role, spec, out, model_seed) in enumerate(jobs)}
        for role, spec, out, _ in jobs:
            n_params = futures[role].result()
            summary[role] = {"num_parameters": n_params, **asdict(spec)}
            log(f"{role}: {n_params:,} parameters -> {out}")
    summary["build_seconds"] = round(time.time() - t0, 1)
    (paths.root / "world.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"demo world built in {summary['build_seconds']:.0f} s -> {paths.root}")
    return paths
