"""The `--set dataset.fields...` lines that would map a copy's fields to a benchmark's roles,
guessed from the field names common copies use (SVAMP's input/target, MultiArith's
sQuestion/lSolutions, BIG-bench's input)."""
from __future__ import annotations

from collections.abc import Sequence

from pipeline.data.rows import RowReader

# per role, name parts in the order they are trusted
_NAME_CUES = {
    "question": ("question", "input", "query", "problem", "prompt", "body", "text"),
    "answer": ("answer", "target", "solution", "label", "output", "final", "gold"),
    "choices": ("choices", "options", "candidates"),
}


def mapping_hint(reader: RowReader, columns: Sequence[str], config_key: str = "dataset") -> str:
    """`--set` lines for each role whose fields the data lacks, with a likely field of `columns`
    (or <field> where none looks likely; an optional group field is dropped instead)."""
    taken = {f for fields in reader.roles().values() for f in fields if f in columns}
    lines = []
    for role, fields in reader.roles().items():
        if all(f in columns for f in fields):
            continue
        guess = _likely_field(role, [c for c in columns if c not in taken])
        taken.add(guess)
        if role == "group":  # optional: without a likely field, drop it
            lines.append(f"--set {config_key}.group_field={'null' if guess == '<field>' else guess}")
        else:
            lines.append(f"--set {config_key}.fields.{role}={guess}")
    return " ".join(lines)


def _likely_field(role: str, columns: Sequence[str]) -> str:
    for cue in _NAME_CUES.get(role, ()):
        match = next((c for c in columns if cue in c.lower()), None)
        if match is not None:
            return match
    return "<field>"
