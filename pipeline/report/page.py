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
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import UserError
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
    missing: str | None = None  # why the section has no data: shown on the page instead of plot and table
    max_rows: int = 25  # rows shown on the page; all of them are in data/<key>.csv


def _missing(key: str, title: str, why: str, columns: pd.DataFrame) -> Section:
    return Section(key, title, "", columns.iloc[0:0], missing=why)


NO_EVAL = "no evaluation run given: pass a jobs.evaluate output directory (results/, summary.json)"
NO_LABELS = "no label run given: pass a jobs.label_alpha output directory (labels/, label_summary.json)"
NO_ARTIFACT = "no α-predictor artifact given: pass a jobs.train_predictor output directory (metadata.json, heldout.parquet)"
NO_SIGNALS = ("no signals run given: run python -m jobs.score_signals --results RUN/results --config CONFIG --out RUN "
              "and pass that directory (signals_summary.json, signals/)")
NO_GROUPS = ("no groups: no given run's rows name a group (evaluate or label with "
             "--set dataset.group_field=FIELD, e.g. the demo's family)")


def _section(key: str, title: str, data: pd.DataFrame, text: str, missing: str, plot=None, extra=None,
             shown: bool | None = None, max_rows: int = 25) -> Section:
    """The section when it has data (`plot` and `extra` are called only then), else one that
    says what is missing."""
    if not (len(data) > 0 if shown is None else shown):
        return _missing(key, title, missing, data)
    extra_tables = {name: df for name, df in (extra() if extra else {}).items() if len(df)}
    return Section(key, title, text, data, plot() if plot else None, extra_tables, max_rows=max_rows)


NO_ALPHA_ROWS = f"{NO_LABELS}; no evaluation with fixed_alpha strategies either"


def build_sections(runs: list[Run]) -> list[Section]:
    comp, preds, points = tables.comparison(runs), tables.predictors(runs), tables.tradeoff(runs)
    acc, by_group, ca = tables.accuracy_vs_alpha(runs), tables.accuracy_vs_alpha_by_group(runs), tables.correct_alpha(runs)
    fixed, hh, bands = tables.fixed_vs_student(runs), tables.helped_hurt(runs), tables.entropy_bands(runs)
    held, auc = tables.predictor_comparison(runs), tables.signal_auc(runs)
    ref, ref_group = tables.reference_accuracy(runs), tables.reference_accuracy_by_group(runs)
    sections = [
        _section("comparison", "Comparison: accuracy and teacher tokens per example", comp,
                 "Student, teacher, best fixed α, predicted α, entropy gate and oracle. Evaluation rows are "
                 "decoded; label rows are read off the α-labels (teacher tokens: N per example that injects; "
                 "the calibrated gates of the given artifacts applied to the labelled examples); held-out rows "
                 "come from each artifact's cross-validated heldout.parquet. Every accuracy carries its 95 % "
                 "(Wilson) interval, and each policy its paired difference to the student on the same examples "
                 "(predicted α and the oracle: to the best fixed α), a bootstrap interval; a difference whose "
                 "interval holds 0 is not a result.",
                 f"{NO_EVAL}; {NO_LABELS}; {NO_ARTIFACT}", max_rows=100),
        _section("predictors", "α-predictors side by side", preds,
                 "Held-out accuracy (95 % interval) of each artifact's learned policy against the best fixed α "
                 "(paired difference on the same examples), the share of examples whose α-choice consults the "
                 "teacher at all (a two_model feature set reads the teacher's first-token statistics for every "
                 "example), and the policy the artifact decodes with: the learned one only where it beats the "
                 "best fixed α on held-out rows, else the best fixed α for every example.", NO_ARTIFACT,
                 extra=lambda: {"predictor_selection": tables.predictor_selection(runs)}),
        _section("tradeoff", "Trade-off: accuracy against the teacher's cost", points,
                 "One numbered point per strategy (evaluations), per policy of the label runs and the artifacts' "
                 "predicted α, and, for labels over an N grid, first-N fixed α at each N (its best α); points at the "
                 "same place share one label. Three costs per example, one panel each: teacher tokens decided, "
                 "tokens the teacher read (prompts, steps, catch-ups) and calls to it (SWITCH decides few tokens "
                 "but reads and calls at every step). Circled and joined: each panel's Pareto front (`pareto`, "
                 "`pareto_read`, `pareto_calls`), no point more accurate for less of that cost, taken over every "
                 "point shown with that cost known (label policies know only their decided tokens): give runs on "
                 "the same examples.",
                 f"{NO_EVAL}; {NO_LABELS}", lambda: plots.strategy_tradeoff(points)),
        _section("strategies", "Strategies: accuracy, teacher cost, throughput", tables.strategy_table(runs),
                 "Per strategy over the run's examples; throughput is examples per busy worker-second.", NO_EVAL),
        _section("accuracy_vs_alpha", "Accuracy vs α", acc,
                 "One line per run, source and number N of injected tokens; horizontal lines: "
                 "student and teacher alone; α = 0 is the student alone.", NO_ALPHA_ROWS,
                 lambda: plots.accuracy_vs_alpha(acc, ref), lambda: {"reference_accuracy": ref}),
        _section("accuracy_vs_alpha_by_group", "Accuracy vs α per group", by_group,
                 "One panel per group of the dataset; star: α = 0 (the student alone) on label lines; dotted: "
                 "the evaluation's student.", NO_GROUPS if len(by_group) else NO_ALPHA_ROWS,
                 lambda: plots.accuracy_vs_alpha_by_group(by_group, ref_group),
                 lambda: {"reference_accuracy_by_group": ref_group}, shown=len(by_group) > 0 and tables.has_groups(runs)),
        _section("correct_alpha", "Where each example is right: correct α intervals", ca,
                 "Per labelled example, the exact α intervals whose first N tokens lead to a correct answer; "
                 "the curve counts the examples right at each α (one line per group, 'all' in black).", NO_LABELS,
                 lambda: plots.correct_alpha(ca), lambda: {"correct_alpha_summary": tables.correct_alpha_summary(runs)}),
        _section("fixed_vs_student", "What injection fixes, by student first-token entropy", fixed,
                 "Per entropy bin of the labelled examples: right with the student alone (α = 0), fixed by "
                 "the grid's most accurate α ≠ 0 (wrong at α = 0, right there), and fixed at some α ≠ 0 "
                 "of the grid (what choosing α per example can reach).", NO_LABELS,
                 lambda: plots.fixed_vs_student(fixed, bands)),
        _section("helped_hurt", "Helped and hurt by injection, by student first-token entropy", hh,
                 "Examples the injection made right (up) or wrong (down) relative to the student alone; "
                 "shaded: entropy bands in which the gate injects.",
                 f"{NO_LABELS}; no evaluation with student and fixed_alpha either",
                 lambda: plots.helped_hurt(hh, bands), lambda: {"entropy_bands": bands}),
        _section("predictor", "α-predictor on held-out examples", held,
                 "Cross-validated by example: each example scored by the fold model that did not see it.", NO_ARTIFACT,
                 lambda: plots.predictor_comparison(held, {r.run: f"{r.run} ({r.model}, {r.features})"
                                                           for r in preds.itertuples()}),
                 lambda: {"predictor_savings": tables.predictor_savings(runs)}),
        _section("signals", "Teaching-assistant signals: AUC for correctness", auc,
                 "ROC AUC of each signal for the correctness of the answer it scores "
                 "(self-consistency agreement, the TA's mean and minimum log-probability), from "
                 "signals_summary.json.", NO_SIGNALS, lambda: plots.signal_auc(auc)),
    ]
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
    def cell(v) -> str:
        number = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        return f"<td class='num'>{html.escape(_fmt(v))}</td>" if number else f"<td>{html.escape(_fmt(v))}</td>"

    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in df.itertuples(index=False))
    # wide tables scroll sideways inside the page instead of overflowing it, at their natural
    # width: squeezed to the page, short words broke letter by letter
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _caption(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _more_rows(s: Section) -> str:
    return f"the first {s.max_rows} of {len(s.data)} rows; all of them: data/{s.key}.csv"


STYLE = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}td{max-width:26em;overflow-wrap:break-word}
th{background:#f3f3f3;white-space:nowrap}td.num{text-align:right;white-space:nowrap}td:first-child{white-space:nowrap}
.wide{overflow-x:auto;max-width:100%}.wide table{width:max-content}img{max-width:100%}.note{color:#555}
.missing{background:#fff4d6;border-left:4px solid #e9c46a;padding:.5em .8em;color:#5a4500}"""


def render_html(title: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts.append("<p class='note'>" + " · ".join(f"<a href='#{s.key}'>{html.escape(s.title)}</a>" for s in sections) + "</p>")
    for s in sections:
        if s.missing is not None:
            parts.append(f"<h2 id='{s.key}'>{html.escape(s.title)}</h2><p class='missing'>{html.escape(s.missing)}</p>")
            continue
        parts.append(f"<h2 id='{s.key}'>{html.escape(s.title)}</h2><p class='note'>{html.escape(s.text)}</p>")
        if s.png is not None:
            data = base64.b64encode(s.png).decode()
            parts.append(f"<img alt='{html.escape(s.title)}' src='data:image/png;base64,{data}'>")
        parts.append(html_table(s.data.head(s.max_rows)))
        if len(s.data) > s.max_rows:
            parts.append(f"<p class='note'>{_more_rows(s)}</p>")
        for name, df in s.extra_tables.items():
            parts.append(f"<h3>{html.escape(_caption(name))}</h3>{html_table(df)}")
    parts.append("</body></html>")
    return "".join(parts)


def render_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}"]
    for s in sections:
        if s.missing is not None:
            parts.append(f"## {s.title}\n\n**{s.missing}**")
            continue
        parts.append(f"## {s.title}\n\n{s.text}")
        if s.png is not None:
            parts.append(f"![{s.title}](plots/{s.key}.png)")
        parts.append(markdown_table(s.data.head(s.max_rows)))
        if len(s.data) > s.max_rows:
            parts.append(_more_rows(s))
        parts += [f"### {_caption(name)}\n\n{markdown_table(df)}" for name, df in s.extra_tables.items()]
    return "\n\n".join(parts) + "\n"


REPORT_MARKER = ".jobs-report"


def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir()}


def check_replaceable(out: Path) -> None:
    """A report goes into a new or empty directory, or replaces one it wrote itself, holding
    only the files it wrote (its marker lists them): never anything else (a run, an artifact,
    someone's folder, even one holding report.html, report.md, data/ and plots/ of their own,
    a note a user put beside the plots). The marker is read before anything is walked, so a
    folder that is not the report's (`--out /`, a home directory) is refused at once."""
    if out.is_symlink():
        raise UserError(f"report --out {out} is a symbolic link: give the directory it points to, or a new one")
    if out.resolve().parent == out.resolve():  # `/` (or a drive): never a report's, and never to be replaced
        raise UserError(f"report --out {out} is the filesystem root: name a new directory for the report, e.g. --out ./report")
    try:
        if not out.exists():
            return
        if not out.is_dir():
            raise UserError(f"report --out {out} is a file: choose a new directory")
        written = _listed_files(out)
        if written is None:
            if next(out.iterdir(), None) is not None:
                raise UserError(f"report --out {out} is not a report directory (it has no {REPORT_MARKER} marker listing "
                                "the report's files): choose a new or empty directory")
            return
        added = sorted(_files_under(out) - written - {REPORT_MARKER})
    except OSError as exc:  # a folder one may not read
        raise UserError(f"cannot read report --out {out}: {exc.strerror or exc}; choose a new directory") from None
    if added:
        raise UserError(f"report --out {out} holds files the report did not write ({', '.join(added[:3])}): "
                        "move them, or choose a new directory")


def _listed_files(out: Path) -> set[str] | None:
    """The files the report's marker lists; None when there is no marker listing them."""
    try:
        listed = json.loads((out / REPORT_MARKER).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return set(listed) if isinstance(listed, list) and all(isinstance(f, str) for f in listed) else None


def claim_report_dir(out: Path) -> None:
    """Refuse `out` unless the report may replace it (`check_replaceable`), and probe that it can
    be written: a temporary folder made and removed beside it (the report is built in one there
    and renamed into place) and, when `out` exists, inside it (its files are replaced). Run
    before the runs are read and the plots drawn, so an unwritable location costs nothing."""
    check_replaceable(out)
    beside = out.parent
    while not beside.exists() and beside != beside.parent:  # the parents the report would create
        beside = beside.parent
    try:
        for where in (beside, out) if out.exists() else (beside,):
            Path(tempfile.mkdtemp(prefix=f".{out.name}-probe-", dir=where)).rmdir()
    except OSError as exc:
        raise UserError(f"cannot write report --out {out}: {exc.strerror or exc}; choose a writable directory") from None


def write_report(runs: list[Run], out: str | Path) -> Path:
    """Write the report into `out`, replacing an older one only once the new one is complete."""
    out = Path(out)
    claim_report_dir(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    except OSError as exc:
        raise UserError(f"cannot write report --out {out}: {exc.strerror or exc}; choose a writable directory") from None
    try:
        title = "Run report: " + ", ".join(r.name for r in runs)
        sections = build_sections(runs)
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
        # the files a rerun may replace: the report's own, nothing added later
        (tmp / REPORT_MARKER).write_text(json.dumps({"written_by": "python -m jobs.report", "files": sorted(_files_under(tmp))}))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
