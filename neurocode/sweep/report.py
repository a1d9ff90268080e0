"""A sweep's results: one row per fit, per-group means with the baseline and ceiling, the figures.

``results.csv`` / ``results.json`` hold a row per fit (:data:`RUN_COLUMNS` plus one column per
setting of the grid or the search); ``summary.csv`` the mean and SD per model (and setting) over
folds x seeds, then the stimulus-independent **baseline** and the split-half **ceiling** rows over
the distinct splits; ``comparison.png`` draws them (bars: mean +- SD, dots: fits, lines: baseline
and ceiling).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Iterable

import numpy as np

SCORES = ("rate_cc", "count_cc", "fano_corr")
#: Per fit, from its ``metrics.json`` (the setting columns go after ``seed``).
RUN_COLUMNS = ["model", "fold", "seed", "epochs", "best_epoch", "val_rate_cc", "rate_cc", "count_cc", "fano_corr",
               "ln_rate_cc", "ln_count_cc", "baseline_rate_cc", "ceiling_rate_cc", "model_ff", "recorded_ff",
               "parameter_count", "final_loss", "recording", "data", "run"]
SUMMARY_COLUMNS = ["model", "n_runs"] + [f"{k}_{s}" for k in SCORES for s in ("mean", "sd")] + ["parameter_count"]


def run_row(metrics: dict, settings: dict, run: str, recording: str | None, data: str | None) -> dict:
    """One fit's row: the model upper-case, its settings, its scores."""
    row = {c: metrics.get(c) for c in RUN_COLUMNS}
    row["model"] = str(metrics["model"]).upper()
    row["run"], row["data"] = run, data
    row["recording"] = recording if recording is not None else metrics.get("recording")
    for k, v in settings.items():
        row[k] = v
    return row


def mean_sd(values: Iterable) -> tuple[float, float]:
    v = np.asarray([x for x in values if isinstance(x, (int, float)) and x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else 0.0)


def summarise(rows: list[dict], setting_keys: list[str]) -> list[dict]:
    """Mean/SD over fits per (model, grid setting), in the rows' order; then baseline and ceiling rows.

    The baseline and ceiling depend on the split (fold, seed) only, so they are averaged over the
    distinct splits of the sweep, whatever the models.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"],) + tuple(_key(r.get(k)) for k in setting_keys), []).append(r)
    out = []
    for key, rs in groups.items():
        row = {"model": key[0], "n_runs": len(rs)}
        for k, v in zip(setting_keys, key[1:]):
            row[k] = rs[0].get(k)
        for k in SCORES:
            row[f"{k}_mean"], row[f"{k}_sd"] = mean_sd(r.get(k) for r in rs)
        row["parameter_count"] = int(rs[0]["parameter_count"]) if rs[0].get("parameter_count") is not None else 0
        out.append(row)
    splits = {(r["fold"], r["seed"]): r for r in rows}
    for name, key in (("baseline", "baseline_rate_cc"), ("ceiling", "ceiling_rate_cc")):
        row = {"model": name, "n_runs": len(splits)}
        row["rate_cc_mean"], row["rate_cc_sd"] = mean_sd(r.get(key) for r in splits.values())
        for k in SCORES[1:]:
            row[f"{k}_mean"] = row[f"{k}_sd"] = float("nan")
        row["parameter_count"] = 0
        out.append(row)
    return out


def _key(v):
    return tuple(v) if isinstance(v, list) else v


def fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)  # every digit: the table reads back exactly
    if isinstance(v, (list, tuple)):
        return "x".join(fmt(x) for x in v)
    return str(v)


def to_csv(rows: list[dict], columns: list[str], formatter=fmt) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([formatter(r.get(c)) for c in columns])
    return buf.getvalue()


def group_label(row: dict, setting_keys: list[str]) -> str:
    tag = ", ".join(f"{k}={fmt(row.get(k))}" for k in setting_keys)
    return row["model"] + (f"\n{tag}" if tag else "")


def format_table(summary: list[dict], setting_keys: list[str] = ()) -> str:
    """The summary as a text table (mean ± SD)."""
    def ms(r, k):
        m, s = r.get(f"{k}_mean"), r.get(f"{k}_sd")
        return "n/a" if m is None or not math.isfinite(m) else f"{m:.3f} ± {s:.3f}"

    labels = [r["model"] + "".join(f" {k}={fmt(r.get(k))}" for k in setting_keys if k in r) for r in summary]
    width = max([9] + [len(x) + 2 for x in labels])
    lines = [f"{'model':<{width}}{'runs':>5}  {'rate_cc':<16}{'count_cc':<16}{'fano_corr':<16}{'parameters':>11}"]
    for label, r in zip(labels, summary):
        params = f"{r['parameter_count']:,}" if r.get("parameter_count") else "-"
        lines.append(f"{label:<{width}}{r['n_runs']:>5}  {ms(r, 'rate_cc'):<16}{ms(r, 'count_cc'):<16}"
                     f"{ms(r, 'fano_corr'):<16}{params:>11}")
    return "\n".join(lines)


COLORS = {"LN": "C7", "CNN": "C2", "DSNN": "C1", "NSNN": "C0"}


def plot_comparison(summary: list[dict], rows: list[dict], title: str, setting_keys: list[str] = ()):
    """Held-out rate CC per model (and setting): bars mean ± SD, dots the fits, baseline and ceiling lines."""
    from matplotlib.figure import Figure

    groups = [r for r in summary if r["model"] not in ("baseline", "ceiling")]
    lines = {r["model"]: r for r in summary if r["model"] in ("baseline", "ceiling")}
    fig = Figure(figsize=(1.3 * len(groups) + 2.6, 3.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(groups))
    ax.bar(x, [g["rate_cc_mean"] for g in groups], yerr=[g["rate_cc_sd"] for g in groups], capsize=4,
           color=[COLORS.get(g["model"], "0.7") for g in groups], edgecolor="k", alpha=0.8)
    for i, g in enumerate(groups):
        v = [r["rate_cc"] for r in rows if r["model"] == g["model"]
             and all(_key(r.get(k)) == _key(g.get(k)) for k in setting_keys)]
        jitter = (np.random.default_rng(i).random(len(v)) - 0.5) * 0.3
        ax.scatter(i + jitter, v, s=10, color="k", zorder=3)
    if "baseline" in lines and math.isfinite(lines["baseline"]["rate_cc_mean"]):
        ax.axhline(lines["baseline"]["rate_cc_mean"], ls=":", color="0.4",
                   label=f"baseline (mean PSTH) {lines['baseline']['rate_cc_mean']:.2f}")
    if "ceiling" in lines and math.isfinite(lines["ceiling"]["rate_cc_mean"]):
        ax.axhline(lines["ceiling"]["rate_cc_mean"], ls="--", color="r",
                   label=f"ceiling (split-half) {lines['ceiling']['rate_cc_mean']:.2f}")
    ax.set_xticks(x, [group_label(g, list(setting_keys)) + (f"\n{g['parameter_count']:,} par." if g["parameter_count"]
                                                             else "") for g in groups])
    ax.set_ylabel("held-out rate CC (Pearson r)")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.0)
    ax.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize="medium")
    return fig


def plot_validation_curves(curves: dict[str, list[dict]], chosen: str | None, title: str):
    """Validation rate CC vs epoch, one line per search trial (the chosen one bold; early-stopped ones end early)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, pts in curves.items():
        if not pts:
            continue
        e = [p["epoch"] for p in pts]
        v = [p["val_rate_cc"] for p in pts]
        if name == chosen:
            ax.plot(e, v, "-o", color="C3", lw=2.2, ms=4, zorder=3, label=f"chosen ({name})")
        else:
            ax.plot(e, v, "-o", color="0.55", lw=0.9, ms=2.5, alpha=0.8)
    ax.plot([], [], "-o", color="0.55", lw=0.9, ms=2.5, label="other settings (short: stopped early)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation rate CC")
    ax.set_title(title, fontsize="medium")
    ax.legend(frameon=False, fontsize="small")
    return fig
