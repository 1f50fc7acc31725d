"""Per-strategy summary of a results dataset, as data and as a printed table."""
from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa

from pipeline.config import StrategySpec


def summarize(table: pa.Table, strategies: Sequence[StrategySpec]) -> list[dict]:
    """One entry per configured strategy, in config order."""
    df = table.select(["strategy", "correct", "teacher_tokens", "latency_s"]).to_pandas()
    out = []
    for spec in strategies:
        rows = df[df["strategy"] == spec.label]
        n = len(rows)
        busy = float(rows["latency_s"].sum())
        out.append(
            {
                "name": spec.name,
                "label": spec.label,
                "params": spec.params,
                "accuracy": float(rows["correct"].mean()) if n else 0.0,
                "n": n,
                "teacher_tokens_per_example": float(rows["teacher_tokens"].mean()) if n else 0.0,
                "examples_per_s": n / busy if busy > 0 else 0.0,
            }
        )
    return out


def format_table(summary: list[dict]) -> str:
    header = f"{'strategy':<52} {'accuracy':>8} {'n':>6} {'teacher tok/ex':>14} {'ex/s':>8}"
    lines = [header, "-" * len(header)]
    for s in summary:
        lines.append(
            f"{s['label']:<52} {s['accuracy']:>8.3f} {s['n']:>6d} {s['teacher_tokens_per_example']:>14.2f} {s['examples_per_s']:>8.2f}"
        )
    return "\n".join(lines)


def summary_json(summary: list[dict]) -> str:
    return json.dumps({"strategies": summary}, indent=2)
