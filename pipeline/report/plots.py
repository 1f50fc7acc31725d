"""The report's figures, drawn with matplotlib (headless) from the DataFrames of `tables`."""
from __future__ import annotations

import io

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # reports are built on clusters and CI machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HELPED, HURT = "#2a9d8f", "#e76f51"
FIXABLE = "#a7c957"
BAND_COLORS = ["#264653", "#e9c46a", "#8d99ae", "#6a4c93"]
STUDENT = "#8d99ae"
ALPHA_LABEL = "α  (p_s + α·(p_t − p_s) on the first N tokens)"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def accuracy_vs_alpha(acc: pd.DataFrame, reference: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (run, source, n), line in acc.groupby(["run", "source", "n_tokens"], sort=True):
        drawn, = ax.plot(line["alpha"], line["accuracy"], marker="o", label=f"{run} · {source} · N={int(n)}")
        ax.fill_between(line["alpha"], line["accuracy_lo"], line["accuracy_hi"], color=drawn.get_color(), alpha=0.12, linewidth=0)
    styles = {"student": ":", "teacher": "--"}
    for _, ref in reference.iterrows():
        ax.axhline(ref["accuracy"], linestyle=styles[ref["model"]], color="grey" if ref["model"] == "student" else "black",
                   linewidth=1, label=f"{ref['run']} · {ref['model']} ({ref['accuracy']:.3f})")
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="-.", label="α = 0: the student alone")
    ax.set_xlabel(ALPHA_LABEL)
    ax.set_ylabel("accuracy (shaded: 95 % interval)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def helped_hurt(hh: pd.DataFrame, bands: pd.DataFrame) -> bytes:
    runs = list(dict.fromkeys(hh["run"]))
    fig, axes = plt.subplots(len(runs), 1, figsize=(7, 2.8 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        rows = hh[hh["run"] == run]
        width = (rows["bin_hi"] - rows["bin_lo"]).to_numpy()
        ax.bar(rows["bin_lo"], rows["helped"], width=width, align="edge", color=HELPED, label="helped (injection right, student wrong)")
        ax.bar(rows["bin_lo"], -rows["hurt"], width=width, align="edge", color=HURT, label="hurt (student right, injection wrong)")
        lo_x, hi_x = rows["bin_lo"].min(), rows["bin_hi"].max()
        for (_, band), color in zip(bands.iterrows(), BAND_COLORS):
            # clipped to the data: a configured band may reach far past any entropy seen
            ax.axvspan(max(band["lo"], lo_x), min(band["hi"], hi_x), color=color, alpha=0.15,
                       label=f"{band['source']} band [{band['lo']:.2f}, {band['hi']:.2f}], α={band['alpha']:g} ({band['run']})")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(f"{run}: {rows['injection'].iloc[0]}", fontsize=9)
        ax.set_ylabel("examples")
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1, 0].set_xlabel("student first-token entropy (nats)")
    fig.tight_layout()
    return _png(fig)


def predictor_comparison(comp: pd.DataFrame, names: dict[str, str] | None = None) -> bytes:
    """Held-out accuracy per policy, one bar per artifact (`names`: run -> legend entry)."""
    runs = list(dict.fromkeys(comp["run"]))
    names = names or {}
    policies = list(dict.fromkeys(comp["policy"]))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        rows = comp[comp["run"] == run].set_index("policy").reindex(policies)
        acc = rows["accuracy"]
        xs = [j + i * width for j in range(len(policies))]
        err = [(acc - rows["accuracy_lo"]).to_numpy(), (rows["accuracy_hi"] - acc).to_numpy()]
        bars = ax.bar(xs, acc, width=width, label=names.get(run, run), yerr=err, capsize=2, error_kw={"linewidth": 0.8})
        ax.bar_label(bars, fmt="%.3f", fontsize=7 if len(runs) <= 2 else 6, rotation=0 if len(runs) <= 2 else 90, padding=2)
    ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(policies))],
                  [p.replace(" (", "\n(") for p in policies], fontsize=8)
    ax.set_ylabel("held-out accuracy (bars: 95 % interval)")
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def _clusters(points: np.ndarray, radius: float) -> list[list[int]]:
    """Indices of points grouped when within `radius` (display pixels) of a group's first point."""
    groups: list[list[int]] = []
    for i, p in enumerate(points):
        for g in groups:
            if np.hypot(*(points[g[0]] - p)) <= radius:
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


# each trade-off panel: the cost on its x axis, its Pareto column, its label
TRADEOFF_PANELS = [("teacher_tokens_per_example", "pareto", "teacher tokens decided per example"),
                   ("teacher_tokens_processed_per_example", "pareto_read", "teacher tokens read per example"),
                   ("teacher_calls_per_example", "pareto_calls", "teacher calls per example")]


def strategy_tradeoff(points: pd.DataFrame) -> bytes:
    """Accuracy against the teacher's cost per example, one panel per cost (tokens it decided,
    tokens it read, calls), one numbered marker per strategy; points that coincide share one
    label ("3,4,5"), and the key beside the panels names each number."""
    panels = [panel for panel in TRADEOFF_PANELS if panel[0] in points and points[panel[0]].notna().any()]
    fig = plt.figure(figsize=(3.5 + 4.2 * len(panels), max(4.2, 0.17 * len(points) + 1.0)))
    sources = list(dict.fromkeys(zip(points["run"], points["source"])))
    colors = {key: f"C{i % 10}" for i, key in enumerate(sources)}
    width = 0.62 / len(panels)
    for i, (cost, front, label) in enumerate(panels):
        ax = fig.add_axes([0.05 + i * (width + 0.04), 0.12, width, 0.8])
        _tradeoff_panel(fig, ax, points[points[cost].notna()], cost, front, label, colors, legend=i == 0)
    key = fig.add_axes([0.05 + len(panels) * (width + 0.04), 0.12, 0.3, 0.8])
    key.axis("off")
    lines = [f"{r.marker:>2}  {r.run} · {_short(r.strategy, 46)}" for r in points.itertuples()]
    step = min(1.0 / max(len(lines), 1), 0.065)
    for i, (line, r) in enumerate(zip(lines, points.itertuples())):
        key.text(0.0, 1.0 - (i + 0.5) * step, line, fontsize=7, va="center", family="monospace",
                 color=colors[(r.run, r.source)])
    return _png(fig)


def _tradeoff_panel(fig, ax, points: pd.DataFrame, cost: str, front_column: str, label: str, colors: dict, legend: bool) -> None:
    """One cost's panel: each point with its interval, its numbered label, and the Pareto front."""
    for key, color in colors.items():
        rows = points[(points["run"] == key[0]) & (points["source"] == key[1])]
        ax.scatter(rows[cost], rows["accuracy"], color=color, s=28, zorder=3, label=f"{key[0]} · {key[1]}")
        ax.errorbar(rows[cost], rows["accuracy"], fmt="none", ecolor=color, elinewidth=0.8, alpha=0.5, zorder=2,
                    yerr=[(rows["accuracy"] - rows["accuracy_lo"]).to_numpy(dtype=float),
                          (rows["accuracy_hi"] - rows["accuracy"]).to_numpy(dtype=float)])
    ax.set_xscale("symlog", linthresh=1)
    right = float(points[cost].max()) * 1.6 + 0.5  # room for labels right of the costliest
    ax.set_xlim(-0.1, right)
    ax.set_xticks([t for t in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000) if t <= right])
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    lo, hi = points["accuracy_lo"].min(), points["accuracy_hi"].max()
    pad = max(0.02, 0.05 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.autoscale_view()
    xy = ax.transData.transform(points[[cost, "accuracy"]].to_numpy(dtype=float))
    # coincident points share one label; each label goes to the first spot near its point
    # that overlaps neither a placed label nor a point (greedy, in display pixels)
    placed: list[tuple[float, float, float, float]] = []
    frame = ax.get_window_extent()
    for group in sorted(_clusters(xy, 6.0), key=lambda g: (-xy[g[0]][1], xy[g[0]][0])):
        text = ",".join(str(points.iloc[i]["marker"]) for i in group)
        dx, dy = _place_label(xy[group[0]], text, 7, fig.dpi, placed, xy, frame)
        first = points.iloc[group[0]]
        shades = {colors[(points.iloc[i]["run"], points.iloc[i]["source"])] for i in group}
        ax.annotate(text, (first[cost], first["accuracy"]), xytext=(dx * 72 / fig.dpi, dy * 72 / fig.dpi),
                    textcoords="offset points", fontsize=7, ha="center", va="center",
                    color=shades.pop() if len(shades) == 1 else "black",
                    arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 3},
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    front = points[points[front_column].astype(bool)].sort_values(cost) if front_column in points else points[:0]
    if len(front):  # circled, joined by a step: no point is more accurate for less of this cost
        ax.step(front[cost], front["accuracy"], where="post", color="black", linestyle="--",
                linewidth=0.8, alpha=0.6, zorder=1, label="Pareto front")
        ax.scatter(front[cost], front["accuracy"], facecolors="none", edgecolors="black", s=90, linewidths=0.8, zorder=4)
    ax.set_xlabel(f"{label} (symlog)")
    ax.set_ylabel("accuracy (bars: 95 % interval)")
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="lower right")


def _place_label(at, text: str, fontsize: float, dpi: float, placed: list, points, frame) -> tuple[float, float]:
    """Offset (pixels) of a label's centre from its point `at`: the first candidate, nearest
    first, whose box overlaps no placed label and no point and stays inside `frame`."""
    w = 0.62 * fontsize * len(text) * dpi / 72 + 4
    h = 1.25 * fontsize * dpi / 72 + 2
    for r in (1.0, 1.8, 2.6, 3.6, 5.0):
        for ux, uy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.4), (0, -1.4), (1.4, 0), (-1.4, 0)):
            dx, dy = ux * r * (w / 2 + 4), uy * r * (h / 2 + 2)
            cx, cy = at[0] + dx, at[1] + dy
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            if box[0] < frame.x0 or box[2] > frame.x1 or box[1] < frame.y0 or box[3] > frame.y1:
                continue
            if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                continue
            if any(box[0] - 3 < px < box[2] + 3 and box[1] - 3 < py < box[3] + 3 for px, py in points):
                continue
            own = np.hypot(dx, dy)  # a label nearer another point than its own would name the wrong one
            if any(np.hypot(cx - px, cy - py) < own - 0.5 for px, py in points):
                continue
            placed.append(box)
            return dx, dy
    placed.append((at[0] + 4, at[1] + 4, at[0] + 4 + w, at[1] + 4 + h))
    return 4 + w / 2, 4 + h / 2


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _panels(n: int, ncols: int, width: float = 9.5, height: float = 2.6):
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows + 0.6), squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def accuracy_vs_alpha_by_group(acc: pd.DataFrame, reference: pd.DataFrame) -> bytes:
    """One panel per group: a line per run, source and N; the student's level (α = 0) marked
    by a star on each label line and a dotted line from each evaluation's student."""
    groups = list(dict.fromkeys(sorted(acc["group"])))
    fig, axes = _panels(len(groups), 3)
    series = list(dict.fromkeys(zip(acc["run"], acc["source"], acc["n_tokens"])))
    colors = {key: f"C{i % 10}" for i, key in enumerate(series)}
    handles = {}
    for ax, group in zip(axes.flat, groups):
        rows = acc[acc["group"] == group]
        for key, line in rows.groupby(["run", "source", "n_tokens"], sort=True):
            label = f"{key[0]} · {key[1]} · N={int(key[2])}"
            handles[label], = ax.plot(line["alpha"], line["accuracy"], marker="o", markersize=3, color=colors[key])
            zero = line[line["alpha"] == 0.0]
            if len(zero):
                handles["α = 0 (student alone) on a label line"] = ax.scatter(
                    zero["alpha"], zero["accuracy"], marker="*", s=110, color="black", zorder=4)
        for _, ref in reference[(reference["group"] == group) & (reference["model"] == "student")].iterrows():
            handles[f"{ref['run']} · student (evaluation)"] = ax.axhline(ref["accuracy"], color=STUDENT,
                                                                         linestyle=":", linewidth=1.2)
        n = int(rows.loc[rows["source"] == "labels", "n"].max()) if (rows["source"] == "labels").any() else int(rows["n"].max())
        ax.set_title(f"{group} (n={n})", fontsize=9)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("α", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy", fontsize=8)
    fig.legend(handles.values(), handles.keys(), fontsize=7, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.03 + 0.025 * ((len(handles) + 2) // 3), 1, 1))
    return _png(fig)


def correct_alpha(ca: pd.DataFrame) -> bytes:
    """Per label run: how many examples are right at each α (exact leaf intervals), per group."""
    runs = list(dict.fromkeys(ca["run"]))
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 3.4 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        rows = ca[ca["run"] == run]
        for i, (group, both) in enumerate(rows.groupby("group", sort=False)):
            part, grid = both[both["at"] == "segment"], both[both["at"] == "grid α"]
            xs = np.append(part["alpha_lo"].to_numpy(), part["alpha_hi"].iloc[-1])
            ys = np.append(part["right"].to_numpy(), part["right"].iloc[-1])
            style = {"color": "black", "linewidth": 2.0} if group == "all" else {"color": f"C{i % 10}", "linewidth": 1.2}
            ax.step(xs, ys, where="post", label=f"{group} (n={part['n'].iloc[0]})", **style)
            # at a grid α itself: what the labels record (intervals may meet exactly there)
            ax.plot(grid["alpha_lo"], grid["right"], linestyle="none", marker="o", markersize=3, color=style["color"])
        ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="-.", label="α = 0: the student alone")
        ax.set_title(f"{run}: examples answered correctly at each α", fontsize=9)
        ax.set_xlabel(ALPHA_LABEL)
        ax.set_ylabel("examples right (dots: at grid α)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return _png(fig)


def fixed_vs_student(fs: pd.DataFrame, bands: pd.DataFrame) -> bytes:
    """Per label run and entropy bin: examples the student alone gets right beside the examples
    injection fixes (wrong at α = 0, right at the best α)."""
    runs = list(dict.fromkeys(fs["run"]))
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 3.2 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        rows = fs[fs["run"] == run]
        width = (rows["bin_hi"] - rows["bin_lo"]).to_numpy()
        ax.bar(rows["bin_lo"], rows["student_right"], width=width * 0.3, align="edge", color=STUDENT,
               label="student right (α = 0)")
        ax.bar(rows["bin_lo"] + width * 0.33, rows["fixed"], width=width * 0.3, align="edge", color=HELPED,
               label=f"fixed by the best fixed α ({rows['injection'].iloc[0]})")
        ax.bar(rows["bin_lo"] + width * 0.66, rows["fixed_at_some_alpha"], width=width * 0.3, align="edge",
               color=FIXABLE, label="fixed at some α ≠ 0 (per-example α)")
        lo_x, hi_x = rows["bin_lo"].min(), rows["bin_hi"].max()
        for (_, band), color in zip(bands.iterrows(), BAND_COLORS):
            if band["hi"] >= lo_x and band["lo"] <= hi_x:
                ax.axvspan(max(band["lo"], lo_x), min(band["hi"], hi_x), color=color, alpha=0.12,
                           label=f"{band['source']} band [{band['lo']:.2f}, {band['hi']:.2f}], α={band['alpha']:g} ({band['run']})")
        ax.set_title(f"{run}: {int(rows['n'].sum())} labelled examples", fontsize=9)
        ax.set_xlabel("student first-token entropy (nats)")
        ax.set_ylabel("examples")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return _png(fig)


def signal_auc(sa: pd.DataFrame) -> bytes:
    """ROC AUC of each teaching-assistant signal for correctness; 0.5 = no better than chance."""
    labels = [f"{r.run} · {r.signal} → {r.target}" for r in sa.itertuples()]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(sa) + 1.2))
    ys = np.arange(len(sa))[::-1]
    auc = sa["auc"].fillna(0.5).to_numpy()
    bars = ax.barh(ys, auc - 0.5, left=0.5, color=[HELPED if a >= 0.5 else HURT for a in auc], height=0.6)
    ax.bar_label(bars, labels=["n/a" if pd.isna(a) else f"{a:.3f}" for a in sa["auc"]], fontsize=7, padding=3)
    ax.axvline(0.5, color="black", linewidth=0.8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("ROC AUC for correctness (0.5: chance)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _png(fig)
