"""Deterministic generator of small GSM-style multi-step arithmetic word problems.

Every problem is built from a template (2-4 operations), random names, items and
small operands, drawn from `random.Random(seed)`, so the same seed always gives the
same rows.  Rows use the GSM8K format: ``{"question": str, "answer": str}`` where
``answer`` is one equation per line followed by ``"\\n#### N"``.  The model's target
text is the terse chain of thought produced by :func:`cot_text`, e.g.
``"5*3=15. 7+15=22. 22-4=18. The answer is 18."``.

The first equation of every chain of thought is the *plan*: which two quantities
are combined first, and how.  It depends on the template, so a model has to read
the question to get it right; once it is written down, the rest is bookkeeping.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Iterable

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

# A template returns (question, steps) where steps is a list of (a, op, b) tuples in
# which a / b may be the string "r<i>" (the result of step i).  `None` = reject draw.
Step = tuple  # (int | str, str, int | str)


def _t_buy_then_give(r, n, p, m, it):
    a, b, c, d = r.randint(2, 20), r.randint(2, 6), r.randint(2, 9), r.randint(1, 15)
    q = (f"{n} has {a} {it}. {p} buys {b} bags of {c} {it}. {p} gives away {d}. "
         f"How many {it} does {n} have?")
    return q, [(b, "*", c), (a, "+", "r0"), ("r1", "-", d)]


def _t_give_then_buy(r, n, p, m, it):
    a, b, c, d = r.randint(5, 20), r.randint(2, 6), r.randint(2, 9), r.randint(1, 15)
    q = (f"{n} has {a} {it}. {p} gives away {d}. {p} buys {b} bags of {c} {it}. "
         f"How many {it} does {n} have?")
    return q, [(a, "-", d), (b, "*", c), ("r0", "+", "r1")]


def _t_more_together(r, n, p, m, it):
    a, b = r.randint(2, 30), r.randint(2, 20)
    q = f"{n} has {a} {it}. {m} has {b} more. How many {it} do they have together?"
    return q, [(a, "+", b), (a, "+", "r0")]


def _t_fewer_together(r, n, p, m, it):
    a, b = r.randint(5, 30), r.randint(1, 20)
    q = f"{n} has {a} {it}. {m} has {b} fewer. How many {it} do they have together?"
    return q, [(a, "-", b), (a, "+", "r0")]


def _t_times_together(r, n, p, m, it):
    a, b = r.randint(2, 12), r.randint(2, 6)
    q = f"{n} has {a} {it}. {m} has {b} times as many. How many {it} do they have together?"
    return q, [(a, "*", b), (a, "+", "r0")]


def _t_times_give(r, n, p, m, it):
    a, b, c = r.randint(2, 12), r.randint(2, 6), r.randint(1, 15)
    q = f"{n} has {a} {it}. {m} has {b} times as many. {m} gives away {c}. How many {it} does {m} have?"
    return q, [(a, "*", b), ("r0", "-", c)]


def _t_more_give(r, n, p, m, it):
    a, b, c = r.randint(2, 30), r.randint(2, 20), r.randint(1, 15)
    q = f"{n} has {a} {it}. {m} has {b} more. {m} gives away {c}. How many {it} does {m} have?"
    return q, [(a, "+", b), ("r0", "-", c)]


def _t_bags_eat(r, n, p, m, it):
    a, b, c = r.randint(2, 9), r.randint(2, 9), r.randint(1, 15)
    q = f"{n} buys {a} bags of {b} {it}. {p} loses {c}. How many {it} are left?"
    return q, [(a, "*", b), ("r0", "-", c)]


def _t_share(r, n, p, m, it):
    c, y = r.randint(2, 6), r.randint(2, 9)
    total = c * y
    divs = [a for a in range(2, 10) if total % a == 0 and 2 <= total // a <= 9]
    if not divs:
        return None
    a = r.choice(divs)
    b = total // a
    q = f"{n} has {a} bags of {b} {it}. {p} shares them among {c} friends. How many {it} does each friend get?"
    return q, [(a, "*", b), ("r0", "/", c)]


def _t_two_bags(r, n, p, m, it):
    a, b, c, d, e = (r.randint(2, 15), r.randint(2, 5), r.randint(2, 9),
                     r.randint(2, 5), r.randint(2, 9))
    q = (f"{n} has {a} {it}. {p} buys {b} bags of {c} {it} and {d} bags of {e} {it}. "
         f"How many {it} does {n} have?")
    return q, [(b, "*", c), (d, "*", e), ("r0", "+", "r1"), (a, "+", "r2")]


def _t_each_buy(r, n, p, m, it):
    a, b, c = r.randint(2, 25), r.randint(2, 25), r.randint(2, 15)
    q = f"{n} has {a} {it} and {m} has {b} {it}. They each buy {c} more. How many {it} do they have?"
    return q, [(a, "+", c), (b, "+", c), ("r0", "+", "r1")]


def _t_lose_then_more(r, n, p, m, it):
    a, b, c = r.randint(5, 30), r.randint(1, 15), r.randint(2, 20)
    q = f"{n} has {a} {it}. {p} loses {b}. {m} has {c} more than {n} now. How many {it} does {m} have?"
    return q, [(a, "-", b), ("r0", "+", c)]


TEMPLATES: list[Callable] = [
    _t_buy_then_give, _t_give_then_buy, _t_more_together, _t_fewer_together,
    _t_times_together, _t_times_give, _t_more_give, _t_bags_eat, _t_share,
    _t_two_bags, _t_each_buy, _t_lose_then_more,
]

_OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
        "/": lambda x, y: x // y if y and x % y == 0 else None}


def _solve(steps: list[Step]) -> list[tuple[int, str, int, int]] | None:
    results: list[int] = []
    out = []
    for a, op, b in steps:
        x = results[int(a[1:])] if isinstance(a, str) else a
        y = results[int(b[1:])] if isinstance(b, str) else b
        v = _OPS[op](x, y)
        if v is None or v <= 0 or v > MAX_RESULT:
            return None
        results.append(v)
        out.append((x, op, y, v))
    return out


def _one_problem(r: random.Random) -> dict:
    while True:
        tmpl = r.choice(TEMPLATES)
        (n, p), (m, _) = r.sample(NAMES, 2)
        it = r.choice(ITEMS)
        drawn = tmpl(r, n, p, m, it)
        if drawn is None:
            continue
        question, steps = drawn
        solved = _solve(steps)
        if solved is None:
            continue
        lines = [f"{x}{op}{y}={v}" for x, op, y, v in solved]
        answer = "\n".join(lines) + f"\n#### {solved[-1][3]}"
        return {"question": question, "answer": answer}


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

