"""The report's figures, drawn with matplotlib (headless) from the DataFrames of `tables`."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # reports are built on clusters and CI machines without a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

HELPED, HURT = "#2a9d8f", "#e76f51"
BAND_COLORS = ["#264653", "#e9c46a", "#8d99ae", "#6a4c93"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def accuracy_vs_alpha(acc: pd.DataFrame, reference: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (run, source, n), line in acc.groupby(["run", "source", "n_tokens"], sort=True):
        ax.plot(line["alpha"], line["accuracy"], marker="o", label=f"{run} · {source} · N={int(n)}")
    styles = {"student": ":", "teacher": "--"}
    for _, ref in reference.iterrows():
        ax.axhline(ref["accuracy"], linestyle=styles[ref["model"]], color="grey" if ref["model"] == "student" else "black",
                   linewidth=1, label=f"{ref['run']} · {ref['model']} ({ref['accuracy']:.3f})")
    ax.set_xlabel("α  (p_s + α·(p_t − p_s) on the first N tokens)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
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


def predictor_comparison(comp: pd.DataFrame) -> bytes:
    runs = list(dict.fromkeys(comp["run"]))
    policies = list(dict.fromkeys(comp["policy"]))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / len(runs)
    for i, run in enumerate(runs):
        acc = comp[comp["run"] == run].set_index("policy")["accuracy"].reindex(policies)
        xs = [j + i * width for j in range(len(policies))]
        bars = ax.bar(xs, acc, width=width, label=run)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(policies))], policies, fontsize=8)
    ax.set_ylabel("held-out accuracy")
    ax.legend(fontsize=7)
    return _png(fig)


def strategy_tradeoff(table: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run, rows in table.groupby("run", sort=False):
        ax.scatter(rows["teacher_tokens_per_example"], rows["accuracy"], label=run)
        for _, r in rows.iterrows():
            ax.annotate(r["strategy"], (r["teacher_tokens_per_example"], r["accuracy"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("teacher tokens per example (cost)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)
