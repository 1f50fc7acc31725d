"""The built-in demo world: where it is shipped, and how to rebuild it from a seed.

The shipped world lives in the repository under ``demo_world/``::

    demo_world/data/train.jsonl   GSM8K-format rows (question, answer "...\\n#### N", family)
    demo_world/data/test.jsonl    held-out rows, disjoint from train by question text
    demo_world/tokenizer/         the shared tokenizer
    demo_world/student/           small Llama (config.json, model.safetensors, tokenizer)
    demo_world/teacher/           larger Llama, same tokenizer and vocabulary
    demo_world/world.json         how it was built, the families, and every file's sha256

It was produced by ``python -m jobs.build_demo`` (= :func:`build_demo_world` with the
defaults below); ``python -m jobs.build_demo --check`` rebuilds it elsewhere and
compares the hashes. The prompt is the built-in template ``demo``.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from transformers import AutoTokenizer

import pipeline
from pipeline.data.prompts import answer_lead, load_template
from pipeline.demo.families import OPS, WORLD_FAMILIES
from pipeline.demo.problems import cot_text, read_jsonl, split_problems, write_jsonl
from pipeline.demo.tokenizer import save_tokenizer, train_tokenizer
from pipeline.demo.training import Corpus, ModelSpec, save_model, train_model
from pipeline.errors import UserError

REPO_ROOT = Path(pipeline.__file__).resolve().parent.parent
DEMO_ROOT = REPO_ROOT / "demo_world"
# the worlds built by the same recipe: name -> where the shipped one lives
WORLD_ROOTS = {"demo": DEMO_ROOT, "hard": REPO_ROOT / "demo_world_hard"}
TEMPLATE_NAME = "demo"
WORLD_FILE = "world.json"
DEFAULT_SEED = 0
N_TRAIN = 20000
N_TEST = 600

# The phenomenon comes from the two corpora (pipeline/demo/families.py), not from size:
# both models learn their beliefs; the teacher is the larger one, as in real pairs.
TEACHER_SPEC = ModelSpec(hidden_size=96, num_layers=3, num_heads=4, intermediate_size=384, steps=1500)
STUDENT_SPEC = ModelSpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256, steps=1500)


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


def demo_paths(root: str | Path | None = None, world: str = "demo") -> DemoPaths:
    """Paths of a demo world under `root` (default: the shipped one, `demo_world/` for `demo`)."""
    root = Path(root) if root is not None else WORLD_ROOTS[world]
    data = root / "data"
    return DemoPaths(root=root, data=data, train=data / "train.jsonl", test=data / "test.jsonl",
                     tokenizer=root / "tokenizer", student=root / "student", teacher=root / "teacher")


def _train_and_save(role: str, spec: ModelSpec, out: str, seed: int, root: str, position: int, threads: int,
                    world: str = "demo") -> int:
    """One model, in its own process: train on its corpus over the train split and save it."""
    paths = demo_paths(root)
    tok = AutoTokenizer.from_pretrained(paths.tokenizer)
    families = {f.name: f for f in WORLD_FAMILIES[world]}
    corpus = Corpus(read_jsonl(paths.train), tok, load_template(TEMPLATE_NAME), role, families)
    model = train_model(spec, corpus, tok, seed=seed, desc=role, threads=threads, position=position)
    save_model(model, tok, out, spec=spec, seed=seed)
    return sum(p.numel() for p in model.parameters())


def build_versions() -> dict[str, str]:
    """What the bytes of a build depend on besides the seed: saved configs name transformers'
    version, and the weights come from torch's kernels."""
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def file_hashes(root: str | Path) -> dict[str, str]:
    """sha256 of every file of a world (relative path -> hex digest), world.json aside."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != WORLD_FILE}


def _check_decision_tokens(tok) -> None:
    """The first generated token must name the operation: one token per operation."""
    pieces = [tok.encode(answer_lead(load_template(TEMPLATE_NAME)) + op, add_special_tokens=False) for op in OPS]
    if any(len(p) != 1 for p in pieces):
        raise RuntimeError(f"demo tokenizer splits an operation word: {dict(zip(OPS, pieces))}")


def build_demo_world(out_dir: str | Path | None = None, seed: int = DEFAULT_SEED, *,
                     n_train: int = N_TRAIN, n_test: int = N_TEST,
                     teacher_spec: ModelSpec = TEACHER_SPEC, student_spec: ModelSpec = STUDENT_SPEC,
                     threads: int = 1, world: str = "demo", log=print) -> DemoPaths:
    """Regenerate data, tokenizer, student and teacher of `world` (pipeline.demo.families:
    WORLD_FAMILIES) from `seed` into `out_dir`. The world is built beside it and moved into
    place when complete: an interrupted build leaves the previous world (or none), never half
    of one. A directory that is not a world is refused."""
    final = demo_paths(out_dir, world).root
    if final.exists() and any(final.iterdir()) and not (final / WORLD_FILE).is_file():
        raise UserError(f"{final} holds files and is not a demo world (no {WORLD_FILE}): choose a new or empty directory")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-building-", dir=final.parent))
    try:
        _build(demo_paths(staging, world), seed, n_train, n_test, teacher_spec, student_spec, threads, world, log)
        staging.chmod(0o755)  # mkdtemp's 0700 is for the build, not for the world
        _replace_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"demo world -> {final}")
    return demo_paths(final, world)


def _replace_dir(new: Path, final: Path) -> None:
    """`new` takes `final`'s place; the old world goes only once the new one is there."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}-old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
    new.rename(final)
    if old is not None:
        shutil.rmtree(old)


def _build(paths: DemoPaths, seed: int, n_train: int, n_test: int, teacher_spec: ModelSpec, student_spec: ModelSpec,
           threads: int, world: str, log) -> None:
    families = WORLD_FAMILIES[world]
    t0 = time.time()
    template = load_template(TEMPLATE_NAME)
    train, test = split_problems(n_train, n_test, seed, families)
    write_jsonl(train, paths.train)
    write_jsonl(test, paths.test)
    log(f"data: {len(train)} train / {len(test)} test problems -> {paths.data}")

    tok = train_tokenizer(template.render(r["question"]) + answer_lead(template) + cot_text(r) for r in train)
    _check_decision_tokens(tok)
    save_tokenizer(tok, paths.tokenizer)
    log(f"tokenizer: {len(tok)} tokens (eos={tok.eos_token_id}, pad={tok.pad_token_id}) -> {paths.tokenizer}")

    summary = {"seed": seed, "n_train": len(train), "n_test": len(test), "template": TEMPLATE_NAME,
               "vocab_size": len(tok), "families": [_family_record(f) for f in families]}
    if world != "demo":  # the shipped demo world's world.json predates the field
        summary = {"world": world, **summary}
    jobs = (("teacher", teacher_spec, paths.teacher, seed + 1), ("student", student_spec, paths.student, seed + 2))
    # the two models train at once, one process and `threads` threads each: a 2-core machine
    # builds the world in the teacher's time, and each model stays deterministic
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {role: pool.submit(_train_and_save, role, spec, str(out), model_seed, str(paths.root), i, threads, world)
                   for i, (role, spec, out, model_seed) in enumerate(jobs)}
        for role, spec, out, _ in jobs:
            n_params = futures[role].result()
            summary[role] = {"num_parameters": n_params, **asdict(spec)}
            log(f"{role}: {n_params:,} parameters -> {out}")
    summary["threads"] = threads
    summary["versions"] = build_versions()
    summary["build_seconds"] = round(time.time() - t0, 1)
    summary["files"] = file_hashes(paths.root)
    (paths.root / WORLD_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    log(f"demo world built in {summary['build_seconds']:.0f} s")


def _family_record(family) -> dict:
    """A family as JSON: beliefs and its best-α interval (null ends: unbounded; null: none)."""
    interval = family.interval()
    ends = None if interval is None else [None if abs(x) == float("inf") else round(x, 4) for x in interval]
    return {**asdict(family), "interval": ends}


def recorded_build(root: str | Path | None = None, world: str = "demo") -> dict:
    """The world.json of a built world."""
    path = demo_paths(root, world).root / WORLD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build the world first (python -m jobs.build_demo)")
    return json.loads(path.read_text())


def check_demo_world(root: str | Path | None = None, threads: int | None = None, log=print, world: str = "demo") -> list[str]:
    """Rebuild the world recorded in `root`'s world.json into a temporary directory and
    compare every file's sha256 with the recorded ones; the differing paths (empty: the
    rebuild reproduces the world byte for byte)."""
    recorded = recorded_build(root, world)
    want = recorded.get("files")
    if not isinstance(want, dict):
        raise FileNotFoundError(f"{demo_paths(root, world).root / WORLD_FILE} records no file hashes: rebuild the world first "
                                "(python -m jobs.build_demo)")
    built_with, now = recorded.get("versions"), build_versions()
    if built_with and built_with != now:
        log(f"note: the world was built with {built_with}, this machine has {now}: files may differ for that reason alone")
    steps = {"teacher_spec": replace(TEACHER_SPEC, **_spec_fields(recorded["teacher"])),
             "student_spec": replace(STUDENT_SPEC, **_spec_fields(recorded["student"]))}
    with tempfile.TemporaryDirectory(prefix="demo-check-") as tmp:
        build_demo_world(tmp, recorded["seed"], n_train=recorded["n_train"], n_test=recorded["n_test"],
                         threads=threads or recorded.get("threads", 1), world=recorded.get("world", "demo"), log=log, **steps)
        rebuilt = file_hashes(tmp)
    return sorted(p for p in set(want) | set(rebuilt) if want.get(p) != rebuilt.get(p))


def _spec_fields(recorded: dict) -> dict:
    names = ModelSpec.__dataclass_fields__
    return {k: v for k, v in recorded.items() if k in names}
