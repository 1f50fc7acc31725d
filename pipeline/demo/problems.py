"""Deterministic generator of small GSM-style multi-step arithmetic word problems.

Every problem asks about one of three items a person owns, then gives 2-4 events,
with random names, items and small operands drawn from `random.Random(seed)`, so the
same seed always gives the same rows.  Rows use the GSM8K format: ``{"question": str, "answer": str}`` where
``answer`` is one equation per line followed by ``"\\n#### N"``; the first line names
the asked item before its equation.  The model's target text is the terse chain of
thought produced by :func:`cot_text`, e.g.
``"marbles 5+3=8. 8*2=16. 16-4=12. The answer is 12."``.

The first number of every chain of thought is the *plan*: which of the three
quantities the question is about.  Once it is written down, the rest is bookkeeping.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterable

NAMES = [
    ("Tom", "He"), ("Sam", "He"), ("Ben", "He"), ("Max", "He"), ("Leo", "He"),
    ("Jack", "He"), ("Paul", "He"), ("Luke", "He"), ("Omar", "He"), ("Ivan", "He"),
    ("Ann", "She"), ("Mia", "She"), ("Eva", "She"), ("Lily", "She"), ("Rose", "She"),
    ("Kate", "She"), ("Zoe", "She"), ("Nina", "She"), ("Sara", "She"), ("Emma", "She"),
]
ITEMS = [
    "apples", "pens", "cards", "books", "eggs", "shells", "coins", "stamps",
    "marbles", "cookies", "stickers", "balls", "candies", "toys", "flowers",
]

MAX_RESULT = 99

# Every problem asks about one of three items a person owns, then lists the inventory
# ("stamps 7, candies 6 and marbles 5") and 2-4 events that change the asked item. The
# chain of thought names the asked item, then starts from its count ("marbles 5+3=8.
# ..."), so its second token carries the one hard decision: which of the three numbers
# to start from. Finding it is an induction step (the count that followed this item in
# the inventory): two composed attention layers, which a one-layer student lacks and
# a deeper teacher learns (with the recall drill, pipeline/demo/drill.py). The item
# comes right before its count in both places because the lookup is only learnable
# when key and value are adjacent. Everything after is easy bookkeeping: the events
# come in order and name their amounts. So a few injected teacher tokens fix exactly
# what the student gets wrong.
EVENTS = [
    ("{who} buys {k} more {what}.", "+"),
    ("{who} finds {k} more {what}.", "+"),
    ("{who} gets {k} {what} as a gift.", "+"),
    ("{who} gives away {k} {what}.", "-"),
    ("{who} loses {k} {what}.", "-"),
    ("{who} sells {k} {what}.", "-"),
    ("{who} doubles the {what}.", "*"),
]


def inventory_sentence(who: str, items: list[str], counts: dict[str, int]) -> str:
    """'Tom has stamps 7, candies 6 and marbles 5.': each item right before its count."""
    a, b, c = items
    return f"{who} has {a} {counts[a]}, {b} {counts[b]} and {c} {counts[c]}."


def _one_problem(r: random.Random) -> dict:
    while True:
        who, _ = r.choice(NAMES)
        items = r.sample(ITEMS, 3)
        counts = {it: r.randint(1, 9) for it in items}
        what = r.choice(items)
        sentences = [
            f"How many {what} does {who} have now?",
            inventory_sentence(who, items, counts),
        ]
        steps, value = [], counts[what]
        for i in range(r.choice((2, 2, 3, 3, 4))):
            text, op = r.choice(EVENTS)
            k = 2 if op == "*" else r.randint(1, 9)
            sentences.append(text.format(who=who, k=k, what=what))
            steps.append(("r" + str(i - 1) if i else value, op, k))
        question = " ".join(sentences)
        solved = _solve(steps)
        if solved is None:
            continue
        lines = [f"{x}{op}{y}={v}" for x, op, y, v in solved]
        lines[0] = f"{what} {lines[0]}"
        answer = "\n".join(lines) + f"\n#### {solved[-1][3]}"
        return {"question": question, "answer": answer}


_OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}


def _solve(steps: list[tuple[int | str, str, int]]) -> list[tuple[int, str, int, int]] | None:
    results: list[int] = []
    out = []
    for a, op, b in steps:
        x = results[int(a[1:])] if isinstance(a, str) else a
        y = results[int(b[1:])] if isinstance(b, str) else b
        v = _OPS[op](x, y)
        if v <= 0 or v > MAX_RESULT:
            return None
        results.append(v)
        out.append((x, op, y, v))
    return out


def generate_problems(n: int, seed: int) -> list[dict]:
    """`n` problems (distinct question texts) drawn deterministically from `seed`."""
    r = random.Random(seed)
    rows: list[dict] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct problems")
        row = _one_problem(r)
        if row["question"] in seen:
            continue
        seen.add(row["question"])
        rows.append(row)
    return rows


def final_answer(row: dict) -> int:
    """The integer after '#### ' in a GSM8K-format answer."""
    return int(row["answer"].rsplit("####", 1)[1].strip().replace(",", ""))


def cot_text(row: dict) -> str:
    """The model's target: terse equations ending exactly 'The answer is N.'"""
    body, _ = row["answer"].rsplit("\n####", 1)
    eqs = [line.strip() for line in body.split("\n") if line.strip()]
    return " ".join(f"{e}." for e in eqs) + f" The answer is {final_answer(row)}."


def split_problems(n_train: int, n_test: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, test), disjoint by question text, deterministic for `seed`."""
    rows = generate_problems(n_train + n_test, seed)
    return rows[n_test:], rows[:n_test]


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

