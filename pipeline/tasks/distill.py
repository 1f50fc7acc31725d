"""Distillation training data from results joined with signals (`score_signals` output).

Weight rule (configurable, section `export` of the run config):
  weight = 1
  × 0 when the target was produced with the teacher (strategy teacher, switch, fixed_alpha, ...)
      and the TA's mean token log-probability of the teacher's output is below `min_ta_mean_logprob`
  × 0 when `drop_incorrect` and the target's answer is wrong
  × max(`uncertainty_floor`, 1 − sc_agreement) when `weight_by_student_uncertainty`
      (emphasise questions the student is unsure about)
"""
from __future__ import annotations

import pyarrow as pa

from pipeline.config import ExportSettings
from pipeline.errors import UserError


def weight(row: dict, settings: ExportSettings) -> float:
    w = 1.0
    used_teacher = any(row["teacher_token_mask"] or [])
    ta = row.get("ta_teacher_mean_logprob")
    if used_teacher and settings.min_ta_mean_logprob is not None and ta is not None and ta < settings.min_ta_mean_logprob:
        w = 0.0
    if settings.drop_incorrect and not row["correct"]:
        w = 0.0
    if settings.weight_by_student_uncertainty:
        w *= max(settings.uncertainty_floor, 1.0 - (row.get("sc_agreement") or 0.0))
    return w


def distill_rows(table: pa.Table, settings: ExportSettings) -> list[dict]:
    needed = {"strategy_name", "generated_text", "teacher_token_mask", "prompt", "sc_agreement"}
    missing = sorted(needed - set(table.column_names))
    if missing:
        raise UserError(f"input lacks {missing}: give the with_signals dataset written by jobs.score_signals")
    rows = []
    for row in table.to_pylist():
        if row["strategy_name"] not in settings.sources:
            continue
        mask = row["teacher_token_mask"] or []
        rows.append({
            "example_id": row["example_id"],
            "prompt": row["prompt"],
            "completion": row["generated_text"],
            "completion_token_ids": row["generated_token_ids"],
            "source": row["strategy_name"],
            "strategy": row["strategy"],
            "origin_mask": mask,
            "teacher_token_share": sum(mask) / len(mask) if mask else 0.0,
            "correct": row["correct"],
            "sc_agreement": row["sc_agreement"],
            "ta_teacher_mean_logprob": row.get("ta_teacher_mean_logprob"),
            "ta_student_mean_logprob": row.get("ta_student_mean_logprob"),
            "weight": weight(row, settings),
        })
    if not rows:
        raise UserError(f"no rows of strategies {list(settings.sources)} in the input")
    return rows
