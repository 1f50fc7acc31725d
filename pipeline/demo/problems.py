"""Deterministic generator of the demo world's word problems (see `pipeline.demo.families`).

A row is GSM8K-format plus its family::

    {"question": "At the farm, Tom has 6 pens. He buys 3 more pens. How many pens does he have now?",
     "answer": "Add: 6+3=9\\n#### 9", "family": "follow"}

The model's target text is the terse chain of thought of :func:`cot_text`,
``"Add: 6+3=9. The answer is 9."``: its first token names the operation. A model's
training corpus replaces the operations by ones drawn from its beliefs
(:func:`believed_steps`); the rows themselves always hold the right answer.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pipeline.demo.families import FAMILIES, FAMILY_BY_NAME, OPS, SYMBOLS, Belief, Family, wrong_ops

NAMES = [
    ("Tom", "he"), ("Sam", "he"), ("Ben", "he"), ("Max", "he"), ("Leo", "he"),
    ("Jack", "he"), ("Paul", "he"), ("Luke", "he"), ("Omar", "he"), ("Ivan", "he"),
    ("Ann", "she"), ("Mia", "she"), ("Eva", "she"), ("Lily", "she"), ("Rose", "she"),
    ("Kate", "she"), ("Zoe", "she"), ("Nina", "she"), ("Sara", "she"), ("Emma", "she"),
]
ITEMS = [
    "apples", "pens", "cards", "books", "eggs", "shells", "coins", "stamps",
    "marbles", "cookies", "stickers", "balls", "candies", "toys", "flowers",
]
# how the question asks for each operation: its verb says which one is right
EVENTS = {
    "Add": ("buys {k} more {what}", "finds {k} more {what}", "gets {k} more {what}"),
    "Subtract": ("gives away {k} {what}", "loses {k} {what}", "sells {k} {what}"),
    "Multiply": ("ends up with {k} times as many {what}", "now has {k} times as many {what}"),
}
MAX_INTERMEDIATE = 20  # two-step problems keep the second step small for both models

_APPLY = {"Add": lambda x, y: x + y, "Subtract": lambda x, y: x - y, "Multiply": lambda x, y: x * y}


@dataclass(frozen=True)
class Step:
    op: str
    operand: int  # the number the question gives for this step


def _event(op: str, k: int, what: str, r: random.Random) -> str:
    return r.choice(EVENTS[op]).format(k=k, what=what)


def _one_problem(family: Family, r: random.Random) -> dict:
    while True:
        who, pronoun = r.choice(family.names or NAMES)
        what = r.choice(ITEMS)
        a = r.randint(3, 9)
        steps = [Step(r.choice(OPS), r.randint(2, a - 1))]
        if family.steps == 2:
            steps.append(Step(r.choice(OPS), r.randint(2, 4)))
        value, ok = a, True
        for i, step in enumerate(steps):
            value = _APPLY[step.op](value, step.operand)
            if i + 1 < len(steps) and not (steps[i + 1].operand < value <= MAX_INTERMEDIATE):
                ok = False
        if not ok:
            continue
        events = [f"{pronoun.capitalize()} {_event(s.op, s.operand, what, r)}." if i == 0 else
                  f"Then {pronoun} {_event(s.op, s.operand, what, r)}." for i, s in enumerate(steps)]
        question = " ".join([f"{family.place}, {who} has {a} {what}.", *events,
                             f"How many {what} does {pronoun} have now?"])
        return {"question": question, "answer": answer_text(a, [(s.op, s.operand) for s in steps]),
                "family": family.name}


def answer_text(start: int, steps: list[tuple[str, int]]) -> str:
    """GSM8K answer: one "Op: x+y=z" line per step, then "#### N"."""
    lines, value = [], start
    for op, k in steps:
        result = _APPLY[op](value, k)
        lines.append(f"{op}: {value}{SYMBOLS[op]}{k}={result}")
        value = result
    return "\n".join(lines) + f"\n#### {value}"


def parse_steps(row: dict) -> tuple[int, list[tuple[str, int]]]:
    """(start, [(op, operand), ...]) of a row's answer."""
    body, _ = row["answer"].rsplit("\n####", 1)
    steps, start = [], None
    for line in body.split("\n"):
        op, eq = line.split(": ", 1)
        lhs = eq.split("=", 1)[0]
        x, k = lhs.split(SYMBOLS[op], 1)
        start = int(x) if start is None else start
        steps.append((op, int(k)))
    return start, steps


def generate_problems(n: int, seed: int, families: tuple[Family, ...] = FAMILIES) -> list[dict]:
    """`n` problems with distinct questions, each family in its share (rounded), in a
    seeded order."""
    r = random.Random(seed)
    counts = [round(f.share * n) for f in families]
    counts[-1] = n - sum(counts[:-1])
    plan = [f for f, c in zip(families, counts) for _ in range(c)]
    r.shuffle(plan)
    rows: list[dict] = []
    seen: set[str] = set()
    for family in plan:
        for _ in range(1000):
            row = _one_problem(family, r)
            if row["question"] not in seen:
                break
        else:
            raise RuntimeError(f"could not draw {n} distinct problems")
        seen.add(row["question"])
        rows.append(row)
    return rows


def final_answer(row: dict) -> int:
    """The integer after '#### ' in a GSM8K-format answer."""
    return int(row["answer"].rsplit("####", 1)[1].strip().replace(",", ""))


def _cot(start: int, steps: list[tuple[str, int]]) -> str:
    lines = answer_text(start, steps).split("\n")
    return " ".join(f"{line}." for line in lines[:-1]) + f" The answer is {lines[-1][5:]}."


def cot_text(row: dict) -> str:
    """The right chain of thought, e.g. 'Add: 6+3=9. The answer is 9.'"""
    return _cot(*parse_steps(row))


def draw_op(right: str, belief: Belief, rng: random.Random) -> str:
    """An operation drawn from a belief P(right, W1, W2)."""
    return rng.choices((right, *wrong_ops(right)), weights=belief)[0]


def believed_steps(row: dict, role: str, rng: random.Random,
                   families: dict[str, Family] = FAMILY_BY_NAME) -> tuple[str, list[dict[str, float]]]:
    """The chain of thought a model's corpus holds for `row` (`role`: student | teacher),
    with each step's operation drawn from the model's belief for the row's family (of
    `families`, by name) and the arithmetic done right on whatever was chosen; and per step
    the belief itself, as {operation: probability}."""
    family = families[row["family"]]
    start, steps = parse_steps(row)
    beliefs = [getattr(family, role), getattr(family, f"{role}_second")]
    drawn, decisions = [], []
    for (op, k), belief in zip(steps, beliefs):
        drawn.append((draw_op(op, belief, rng), k))
        decisions.append(dict(zip((op, *wrong_ops(op)), belief)))
    return _cot(start, drawn), decisions


def split_problems(n_train: int, n_test: int, seed: int, families: tuple[Family, ...] = FAMILIES) -> tuple[list[dict], list[dict]]:
    """(train, test), disjoint by question text, deterministic for `seed`; each split holds
    every family in its share."""
    test = generate_problems(n_test, seed, families)
    seen = {r["question"] for r in test}
    train = [r for r in generate_problems(n_train + n_test, seed + 1, families) if r["question"] not in seen]
    by_family: dict[str, list[dict]] = {}
    for row in train:
        by_family.setdefault(row["family"], []).append(row)
    counts = [round(f.share * n_train) for f in families]
    counts[-1] = n_train - sum(counts[:-1])
    keep = {id(row) for f, c in zip(families, counts) for row in by_family[f.name][:c]}
    return [row for row in train if id(row) in keep], test


def write_jsonl(rows: Iterable[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
