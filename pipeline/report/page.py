"""Assemble a report: sections of (plot, its data, tables) written as one self-contained
HTML page, a Markdown summary, the PNGs and each plot's data as CSV.

Output directory layout::

    report.html        PNGs embedded (base64): open it anywhere, mail it, attach it
    report.md          the same tables, linking plots/*.png
    plots/NAME.png
    data/NAME.csv      exactly the numbers each plot and table shows
"""
from __future__ import annotations

import base64
import html
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.report import plots, tables
from pipeline.report.runs import Run


@dataclass
class Section:
    key: str
    title: str
    text: str
    data: pd.DataFrame  # what the plot shows, saved as data/<key>.csv
    png: bytes | None = None
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # name -> table, saved as data/<name>.csv


def build_sections(runs: list[Run]) -> list[Section]:
    sections = []
    strategies = tables.strategy_table(runs)
    if len(strategies):
        sections.append(Section("strategies", "Strategies: accuracy, teacher cost, throughput",
                                "Per strategy over the run's examples; throughput is examples per busy worker-second.",
                                strategies, plots.strategy_tradeoff(strategies)))
    acc, ref = tables.accuracy_vs_alpha(runs), tables.reference_accuracy(runs)
    if len(acc):
        sections.append(Section("accuracy_vs_alpha", "Accuracy vs α",
                                "One line per run, source and number N of injected tokens; horizontal lines: "
                                "student and teacher alone.", acc, plots.accuracy_vs_alpha(acc, ref),
                                {"reference_accuracy": ref} if len(ref) else {}))
    hh, bands = tables.helped_hurt(runs), tables.entropy_bands(runs)
    if len(hh):
        sections.append(Section("helped_hurt", "Helped and hurt by injection, by student first-token entropy",
                                "Examples the injection made right (up) or wrong (down) relative to the student alone; "
                                "shaded: entropy bands in which the gate injects.", hh, plots.helped_hurt(hh, bands),
                                {"entropy_bands": bands} if len(bands) else {}))
    comp = tables.predictor_comparison(runs)
    if len(comp):
        sections.append(Section("predictor", "α-predictor on held-out examples",
                                "Cross-validated by example: each example scored by the fold model that did not see it.",
                                comp, plots.predictor_comparison(comp),
                                {"predictor_savings": tables.predictor_savings(runs)}))
    sections.append(Section("runs", "Runs", "From each job's manifest (and the predictor's metadata).",
                            tables.run_facts(runs)))
    return sections


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def markdown_table(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _caption(name: str) -> str:
    return name.replace("_", " ").capitalize()


# tables longer than this show in the page as their CSV file only
MAX_TABLE_ROWS = 25

STYLE = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2){text-align:left}img{max-width:100%}.note{color:#555}"""


def render_html(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2 id='{s.key}'>{html.escape(s.title)}</h2><p class='note'>{html.escape(s.text)}</p>")
        if s.png is not None:
            data = base64.b64encode(s.png).decode()
            parts.append(f"<img alt='{html.escape(s.title)}' src='data:image/png;base64,{data}'>")
        if len(s.data) <= MAX_TABLE_ROWS:
            parts.append(html_table(s.data))
        else:
            parts.append(f"<p class='note'>{len(s.data)} rows: data/{s.key}.csv</p>")
        for name, df in s.extra_tables.items():
            parts.append(f"<h3>{html.escape(_caption(name))}</h3>{html_table(df)}")
    parts.append("</body></html>")
    return "".join(parts)


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}"]
    for s in sections:
        parts.append(f"## {s.title}\n\n{s.text}")
        if s.png is not None:
            parts.append(f"![{s.title}](plots/{s.key}.png)")
        parts.append(markdown_table(s.data) if len(s.data) <= MAX_TABLE_ROWS else f"{len(s.data)} rows: `data/{s.key}.csv`")
        parts += [f"### {_caption(name)}\n\n{markdown_table(df)}" for name, df in s.extra_tables.items()]
    return "\n\n".join(parts) + "\n"


def write_report(runs: list[Run], out: str | Path) -> Path:
    """Write the report into `out`, replacing an older one only once the new one is complete."""
    out = Path(out)
    title = "Run report: " + ", ".join(r.name for r in runs)
    sections = build_sections(runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (tmp / "plots").mkdir()
        (tmp / "data").mkdir()
        for s in sections:
            s.data.to_csv(tmp / "data" / f"{s.key}.csv", index=False)
            for name, df in s.extra_tables.items():
                df.to_csv(tmp / "data" / f"{name}.csv", index=False)
            if s.png is not None:
                (tmp / "plots" / f"{s.key}.png").write_bytes(s.png)
        (tmp / "report.html").write_text(render_html(title, sections), encoding="utf-8")
        (tmp / "report.md").write_text(render_markdown(title, sections), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
