"""Figures for the neural-coding analyses (matplotlib).

No backend is forced at import; figures are created with :class:`matplotlib.figure.Figure`
(no pyplot state), so everything works headless. Every function returns the Figure and
saves it when ``path`` is given (format from the suffix: PNG, PDF, SVG...).

Raster rows are drawn with ``Axes.eventplot`` — one :class:`~matplotlib.collections.EventCollection`
per row (trial or cell).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from neurocode.analysis.conversion import to_numpy

__all__ = [
    "save_figure",
    "raster",
    "plot_cell_rasters",
    "plot_population_raster",
    "plot_cc_bars",
    "plot_ff_scatter",
    "plot_ff_panels",
    "plot_trial_comparison",
    "plot_coding_scatter",
    "plot_receptive_fields",
    "plot_training_curve",
    "plot_representative_cell",
]


def save_figure(fig: Figure, path, dpi: float | None = None) -> Path:
    """Write ``fig`` to ``path`` atomically (a reader sees the old file or the complete new one).

    The format follows the suffix (PNG without one). Every figure neurocode and its
    ``analyses/`` scripts write goes through here.
    """
    from neurocode._io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    return path


def _save(fig: Figure, path) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def _rows_to_times(data, dt: float | None, t_start: float = 0.0) -> list[np.ndarray]:
    """Rows of spike times (s) from counts ``[T, rows]`` (needs dt) or a list of time arrays."""
    if isinstance(data, (list, tuple)):
        out = []
        for v in data:
            if hasattr(v, "rescale"):
                v = v.rescale("s").magnitude
            out.append(np.asarray(v, float).ravel())
        return out
    x = to_numpy(data)
    if x.ndim != 2:
        raise ValueError(f"counts must be [T, rows], got {x.shape}")
    if dt is None:
        raise ValueError("dt (seconds) is required for count arrays")
    centres = t_start + (np.arange(x.shape[0]) + 0.5) * dt
    counts = np.rint(x).astype(int)
    return [np.repeat(centres, counts[:, r]) for r in range(x.shape[1])]


def raster(ax, data, dt: float | None = None, t_start: float = 0.0, color="k",
           linelengths: float = 0.8, linewidths: float = 1.0):
    """Draw a raster on ``ax``: one row per column of counts ``[T, rows]`` (or per list item).

    Returns the list of EventCollections (one per row; row 0 at the top).
    """
    rows = _rows_to_times(data, dt, t_start)
    n = len(rows)
    offsets = np.arange(n)[::-1]
    colls = ax.eventplot(rows, lineoffsets=offsets, linelengths=linelengths,
                         linewidths=linewidths, colors=color)
    ax.set_ylim(-0.5, n - 0.5)
    return colls


def plot_cell_rasters(responses: Mapping[str, object], dt: float, cell: int | None = None,
                      psth_bin: float | None = None, t_start: float = 0.0,
                      title: str | None = None, path=None) -> Figure:
    """Fig. 5C style: one cell's trials, recorded vs models side by side, with PSTHs.

    Parameters
    ----------
    responses : mapping name -> counts ``[T, trials]`` or ``[T, trials, cells]`` (then
        ``cell`` selects the cell), e.g. ``{"recorded": ..., "CNN": ..., "DSNN": ..., "NSNN": ...}``.
    dt : float
        Bin width of the counts (s).
    psth_bin : float, optional
        PSTH bin width (multiple of ``dt``; default ``dt``).

    Returns
    -------
    Figure with ``2 * len(responses)`` axes: rasters (top row) and PSTHs (bottom row,
    shared y axis, Hz).
    """
    from neurocode.analysis.statistics import psth

    n = len(responses)
    fig = Figure(figsize=(3.0 * n, 4.0), layout="constrained")
    axes = fig.subplots(2, n, squeeze=False, sharex=True, height_ratios=[2, 1])
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    psth_ax0 = None
    for j, (name, data) in enumerate(responses.items()):
        x = to_numpy(data)
        if x.ndim == 3:
            if cell is None:
                raise ValueError("cell is required for [T, trials, cells] input")
            x = x[:, :, cell]
        col = "k" if j == 0 else colors[(j - 1) % len(colors)]
        raster(axes[0, j], x, dt, t_start, color=col)
        axes[0, j].set_title(name)
        axes[0, j].set_yticks([])
        rate = psth(x[:, :, None], dt, bin_size=psth_bin)[:, 0]
        w = psth_bin or dt
        t = t_start + (np.arange(len(rate)) + 0.5) * w
        ax = axes[1, j]
        ax.plot(t, rate, color=col)
        if psth_ax0 is None:
            psth_ax0 = ax
            ax.set_ylabel("rate (Hz)")
        else:
            ax.sharey(psth_ax0)
        ax.set_xlabel("time (s)")
    axes[0, 0].set_ylabel("trial")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_population_raster(data, dt: float | None = None, t_start: float = 0.0,
                           title: str | None = None, path=None) -> Figure:
    """Population raster of one trial: counts ``[T, cells]`` or a list of per-cell time arrays."""
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    raster(ax, data, dt, t_start, linewidths=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("cell")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_cc_bars(cc: Mapping[str, object], per_cell: bool = False, ceiling=None,
                 ylabel: str = "rate CC (Pearson r)", path=None) -> Figure:
    """Fig. 5B style bars of per-cell correlation coefficients.

    Parameters
    ----------
    cc : mapping model name -> per-cell r ``[cells]`` (NaN ignored)
    per_cell : bool
        False: one bar per model (mean ± SEM over cells, cells as dots).
        True: grouped bars per cell.
    ceiling : array ``[cells]`` or float, optional
        Split-half reliability, drawn as a dashed line (mean) or markers (per cell).
    """
    fig = Figure(figsize=(max(4.0, 0.25 * (len(next(iter(cc.values()))) if per_cell else 1.2 * len(cc))), 3.5),
                 layout="constrained")
    ax = fig.subplots()
    names = list(cc)
    vals = [np.asarray(to_numpy(v), float).ravel() for v in cc.values()]
    if not per_cell:
        means = [np.nanmean(v) for v in vals]
        sems = [np.nanstd(v) / np.sqrt(max(np.isfinite(v).sum(), 1)) for v in vals]
        ax.bar(np.arange(len(names)), means, yerr=sems, capsize=3, color="0.7", edgecolor="k")
        for i, v in enumerate(vals):
            jitter = (np.random.default_rng(i).random(len(v)) - 0.5) * 0.3
            ax.scatter(i + jitter, v, s=6, color="k", zorder=3)
        ax.set_xticks(np.arange(len(names)), names)
        if ceiling is not None:
            ax.axhline(float(np.nanmean(ceiling)), ls="--", color="r", label="split-half ceiling")
            ax.legend(frameon=False)
    else:
        n_cells = len(vals[0])
        w = 0.8 / len(names)
        for i, (name, v) in enumerate(zip(names, vals)):
            ax.bar(np.arange(n_cells) + (i - (len(names) - 1) / 2) * w, v, width=w, label=name)
        if ceiling is not None:
            ax.scatter(np.arange(n_cells), np.broadcast_to(np.asarray(ceiling, float), (n_cells,)),
                       marker="_", color="r", s=60, zorder=3, label="ceiling")
        ax.set_xlabel("cell")
        ax.legend(frameon=False, ncols=min(len(names) + 1, 4))
    ax.set_ylabel(ylabel)
    return _save(fig, path)


def plot_ff_scatter(ff_recorded, ff_model: Mapping[str, object] | object, path=None,
                    title: str | None = None) -> Figure:
    """Recorded vs model Fano factor per cell (one scatter per model, identity line, r in legend)."""
    from neurocode.analysis.statistics import pearson

    if not isinstance(ff_model, Mapping):
        ff_model = {"model": ff_model}
    x = np.asarray(to_numpy(ff_recorded), float).ravel()
    fig = Figure(figsize=(4.0, 4.0), layout="constrained")
    ax = fig.subplots()
    hi = np.nanmax(x) if np.isfinite(x).any() else 1.0
    for name, y in ff_model.items():
        y = np.asarray(to_numpy(y), float).ravel()
        r, _ = pearson(x, y)
        ax.scatter(x, y, s=12, label=f"{name} (r={r:.2f})")
        if np.isfinite(y).any():
            hi = max(hi, np.nanmax(y))
    ax.plot([0, hi], [0, hi], ls=":", color="0.5")
    ax.set_xlabel("recorded Fano factor")
    ax.set_ylabel("model Fano factor")
    ax.legend(frameon=False)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_ff_panels(scores: Mapping[str, Mapping], colors: Mapping[str, str] | None = None,
                   title: str | None = None, path=None) -> Figure:
    """Per-cell Fano factor, model vs recorded, one panel per model (identity line, shared axes).

    Parameters
    ----------
    scores : mapping model name -> the dict of :func:`neurocode.analysis.distribution.fano_scores`
        Its ``recorded_ff_active`` and ``model_ff_active`` (``[cells]``, NaN for a cell without
        a counted stimulus/cell pair) are drawn; ``ff_abs_diff``, ``ff_corr`` and ``ff_n_cells``
        go into the panel's title as they are (``None``: n/a).
    colors : mapping model name -> matplotlib colour, optional
    title : str, optional

    Returns
    -------
    Figure with one axes per model; each holds one scatter of the cells where both Fano
    factors are finite (x: recorded, y: model; dimensionless).
    """
    names = list(scores)
    if not names:
        raise ValueError("scores is empty: no model to draw")
    fig = Figure(figsize=(2.8 * len(names), 3.1), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False, sharex=True, sharey=True)[0]
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    points = {}
    for name in names:
        x = np.asarray(to_numpy(scores[name]["recorded_ff_active"]), float).ravel()
        y = np.asarray(to_numpy(scores[name]["model_ff_active"]), float).ravel()
        ok = np.isfinite(x) & np.isfinite(y)
        points[name] = (x[ok], y[ok])
    finite = np.concatenate([np.r_[x, y] for x, y in points.values()])
    hi = 1.05 * float(max(finite.max(), 1.0)) if finite.size else 1.0

    def fmt(v):
        return "n/a" if v is None or not np.isfinite(v) else f"{v:.2f}"

    for j, (ax, name) in enumerate(zip(axes, names)):
        x, y = points[name]
        col = (colors or {}).get(name, cycle[j % len(cycle)])
        ax.scatter(x, y, s=12, color=col, edgecolor="none", alpha=0.8)
        ax.plot([0, hi], [0, hi], ls=":", color="0.5", lw=1)
        s = scores[name]
        ax.set_title(f"{name}\n|ΔFF| {fmt(s.get('ff_abs_diff'))}, r {fmt(s.get('ff_corr'))} "
                     f"({s.get('ff_n_cells', len(x))} cells)", fontsize=9)
        ax.set_xlim(-0.03 * hi, hi)  # a deterministic model's FF 0 stays visible
        ax.set_ylim(-0.03 * hi, hi)
        ax.set_aspect("equal")
        ax.set_xlabel("recorded Fano factor")
    axes[0].set_ylabel("model Fano factor")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _spread_times(counts: np.ndarray, dt: float, t_start: float) -> list[np.ndarray]:
    """Rows of spike times (s) from integer counts ``[T, rows]``, a bin's c spikes spread evenly
    over it (so that a burst of 3 in one bin shows as 3 ticks, not one)."""
    rows = []
    for r in range(counts.shape[1]):
        c = counts[:, r]
        bins = np.repeat(np.arange(c.size), c)
        rank = np.concatenate([np.arange(k) for k in c]) if c.sum() else np.zeros(0)
        rows.append(t_start + (bins + (rank + 0.5) / np.repeat(np.maximum(c, 1), c)) * dt)
    return rows


def plot_trial_comparison(recorded, models: Mapping[str, object], cells, stimuli, dt: float,
                          t_start: float = 0.0, max_trials: int | None = None,
                          stimulus_labels=None, colors: Mapping[str, str] | None = None,
                          title: str | None = None, path=None) -> Figure:
    """Recorded vs model single trials of the same cells and stimuli: rasters and PSTHs.

    One column per (cell, stimulus) pair, cells outermost. Rows: the recorded raster (every
    trial), one raster per model, then the PSTHs (spikes/s) of the recording (black) and of
    every model overlaid, each the mean over all its trials.

    Parameters
    ----------
    recorded : array ``[n_stimuli, T, R, cells]``
        Recorded counts per bin.
    models : mapping name -> array ``[n_stimuli, T, K, cells]``
        Each model's single trials (spike counts per bin). Trials that are not whole counts
        (a deterministic model's population fraction) are drawn as a grey image, 0 to 1.
    cells, stimuli : sequences of int
        Cell indices and stimulus indices (rows of the arrays) to draw.
    dt : float
        Bin width, seconds.
    t_start : float
        Time of the first bin's left edge, seconds.
    max_trials : int, optional
        Draw at most this many trials of a model in its raster (default: R, the recorded
        number, so the rasters are equally dense); the PSTH uses all of them.
    stimulus_labels : sequence of str, optional
        A name per entry of ``stimuli`` for the column titles (default ``stimulus <index>``).
    colors : mapping name -> matplotlib colour, optional
    title : str, optional

    Returns
    -------
    Figure with ``(len(models) + 2) * len(cells) * len(stimuli)`` axes, row by row: the
    recorded rasters, each model's rasters, the PSTHs; a raster row holds one
    EventCollection per trial.
    """
    rec = np.asarray(to_numpy(recorded), float)
    if rec.ndim != 4:
        raise ValueError(f"recorded must be [n_stimuli, T, trials, cells], got shape {rec.shape}")
    trials = {name: np.asarray(to_numpy(v), float) for name, v in models.items()}
    for name, v in trials.items():
        if v.ndim != 4 or (v.shape[0], v.shape[1], v.shape[3]) != (rec.shape[0], rec.shape[1], rec.shape[3]):
            raise ValueError(f"models[{name!r}] must be [n_stimuli, T, trials, cells] like recorded "
                             f"{rec.shape}, got shape {v.shape}")
    cells, stimuli = [int(c) for c in cells], [int(s) for s in stimuli]
    labels = list(stimulus_labels) if stimulus_labels is not None else [f"stimulus {s}" for s in stimuli]
    if len(labels) != len(stimuli):
        raise ValueError(f"stimulus_labels has {len(labels)} entries for {len(stimuli)} stimuli")
    n_show = int(max_trials) if max_trials is not None else rec.shape[2]
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {name: (colors or {}).get(name, cycle[j % len(cycle)]) for j, name in enumerate(trials)}
    columns = [(c, s, lab) for c in cells for s, lab in zip(stimuli, labels)]
    n_rows = len(trials) + 2
    fig = Figure(figsize=(2.3 * len(columns), 0.9 * (n_rows - 1) + 1.8), layout="constrained")
    axes = fig.subplots(n_rows, len(columns), squeeze=False, sharex=True,
                        height_ratios=[1.0] * (n_rows - 1) + [1.6])
    T = rec.shape[1]
    t = t_start + (np.arange(T) + 0.5) * dt
    for j, (c, s, lab) in enumerate(columns):
        sources = {"recorded": (rec[s, :, :, c], "k")}
        sources.update({name: (v[s, :, :n_show, c], colour[name]) for name, v in trials.items()})
        for i, (name, (x, col)) in enumerate(sources.items()):
            ax = axes[i, j]
            if np.array_equal(x, np.rint(x)):
                ax.eventplot(_spread_times(np.rint(x).astype(int), dt, t_start),
                             lineoffsets=np.arange(x.shape[1])[::-1], linelengths=0.8, linewidths=0.8,
                             colors=col)
                ax.set_ylim(-0.5, x.shape[1] - 0.5)
            else:
                ax.imshow(x.T, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
                          extent=(t_start, t_start + T * dt, x.shape[1] - 0.5, -0.5))
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
        axes[0, j].set_title(f"cell {c}, {lab}", fontsize=9)
        ax = axes[-1, j]
        ax.plot(t, rec[s, :, :, c].mean(axis=1) / dt, color="k", lw=1.5, label="recorded")
        for name, v in trials.items():
            ax.plot(t, v[s, :, :, c].mean(axis=1) / dt, color=colour[name], lw=1, label=name)
        ax.set_xlabel("time (s)")
        if j == 0:
            ax.set_ylabel("PSTH (spikes/s)")
    fig.legend(*axes[-1, 0].get_legend_handles_labels(), loc="outside lower center", ncols=len(trials) + 1,
               frameon=False, fontsize=8)
    axes[0, 0].set_xlim(t_start, t_start + T * dt)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_coding_scatter(result, path=None, title: str | None = None) -> Figure:
    """Fig. 4B: mean Fano factor vs prediction cosine similarity, dotted linear fit.

    ``result`` is a :class:`neurocode.analysis.CodingResult` (or any object with
    ``mean_fano``, ``cosine``, ``r``, ``p``).
    """
    x = np.asarray(result.mean_fano, float)
    y = np.asarray(result.cosine, float)
    fig = Figure(figsize=(4.0, 3.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(x, y, s=12, color="C0")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        s, i = np.polyfit(x[ok], y[ok], 1)
        xs = np.linspace(x[ok].min(), x[ok].max(), 50)
        ax.plot(xs, s * xs + i, ls=":", color="k")
    ax.set_xlabel("mean Fano factor")
    ax.set_ylabel("prediction cosine similarity")
    ax.set_title(title or f"r = {result.r:.3f}, p = {result.p:.2g}")
    return _save(fig, path)


def plot_receptive_fields(rfs, image=None, ax=None, path=None, n_sigma: float = 1.0,
                          label_cells: bool = False) -> Figure:
    """Receptive-field ellipses over an image.

    Parameters
    ----------
    rfs : neurocode.data.ReceptiveFields
        Centres and covariances in image px. If ``image`` has another shape, the RFs are
        drawn :meth:`~neurocode.data.ReceptiveFields.scaled` to it.
    image : array ``[H, W]``, optional
        Greyscale background, drawn with ``extent=(0, W, H, 0)`` so that pixel ``(i, j)``
        covers ``[j, j+1) x [i, i+1)`` as in the RF coordinates.
    ax : matplotlib Axes, optional
        Draw into this axes (its figure is returned); default a new Figure.
    n_sigma : float
        Draw the ``n_sigma`` contour (1: the 1-σ ellipse).
    label_cells : bool
        Write the cell index at each centre.

    Returns
    -------
    Figure with one :class:`~matplotlib.patches.Ellipse` per cell on the axes; ON cells red,
    OFF cells blue, unknown polarity orange.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    if image is not None:
        image = np.asarray(to_numpy(image), float)
        if image.ndim != 2:
            raise ValueError(f"image must be [H, W], got shape {image.shape}")
        if tuple(image.shape) != tuple(rfs.image_shape):
            rfs = rfs.scaled(image.shape)
    h, w = rfs.image_shape
    if ax is None:
        fig = Figure(figsize=(4.5, 4.5 * h / w + 0.4), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    if image is not None:
        ax.imshow(image, cmap="gray", extent=(0, w, h, 0), interpolation="nearest")
    colours = {1.0: "tab:red", -1.0: "tab:blue", None: "tab:orange"}
    evals, evecs = np.linalg.eigh(rfs.covariances)  # ascending: minor, major
    for c in range(rfs.n_cells):
        major = evecs[c, :, 1]
        angle = float(np.degrees(np.arctan2(major[1], major[0])))
        col = colours[None if rfs.polarity is None else float(rfs.polarity[c])]
        ax.add_patch(Ellipse(tuple(rfs.centres[c]), width=2 * n_sigma * np.sqrt(evals[c, 1]),
                             height=2 * n_sigma * np.sqrt(evals[c, 0]), angle=angle, fill=False,
                             edgecolor=col, linewidth=1.0))
        if label_cells:
            ax.text(rfs.centres[c, 0], rfs.centres[c, 1], str(c), color=col, fontsize=6,
                    ha="center", va="center")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    if rfs.polarity is not None:
        n_on = int((rfs.polarity > 0).sum())
        handles = [Line2D([], [], color=colours[1.0], label=f"ON ({n_on})"),
                   Line2D([], [], color=colours[-1.0], label=f"OFF ({rfs.n_cells - n_on})")]
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.7)
    ax.set_title(f"{rfs.source} RFs ({n_sigma:g}-σ)", fontsize=9)
    return _save(fig, path)


def plot_training_curve(history: list, loss: str = "loss", title: str | None = None) -> Figure:
    """Training loss per epoch and, where recorded, the validation rate CC (twin axis).

    Parameters
    ----------
    history : list of dict
        A run's ``history.json``: records with ``epoch`` and ``loss`` (and ``val_rate_cc``),
        and a final record with ``best_epoch`` (marked by a dotted line).
    loss : str
        Name of the training loss, for the axis label.
    title : str, optional
    """
    rec = [h for h in history if "loss" in h]
    val = [h for h in rec if "val_rate_cc" in h]
    best = [h for h in history if "best_epoch" in h]
    fig = Figure(figsize=(5.0, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.plot([h["epoch"] for h in rec], [h["loss"] for h in rec], marker="o", ms=3, color="C0")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"training loss ({loss})", color="C0")
    if val:
        ax2 = ax.twinx()
        ax2.plot([h["epoch"] for h in val], [h["val_rate_cc"] for h in val], marker="s", ms=3, color="C1")
        ax2.set_ylabel("validation rate CC", color="C1")
        if best:
            ax2.axvline(best[-1]["best_epoch"], color="C1", ls=":", lw=1)
    if title:
        ax.set_title(title)
    return fig


def plot_representative_cell(recorded, predicted, rates, rate_cc, dt: float, name: str = "model",
                             rates_only: bool = False) -> Figure:
    """Rasters and PSTHs of the cell whose rate CC is the median over cells, test stimuli in a row.

    Parameters
    ----------
    recorded : array [n_stimuli, T, trials, n_cells] of counts
    predicted : array [n_stimuli, T, model_trials, n_cells]
        The model's sampled spikes (ignored when ``rates_only``).
    rates : array [n_stimuli, T, n_cells]
        The model's expected count per bin (drawn as a rate when ``rates_only``).
    rate_cc : array [n_cells]
        Per-cell scores; the cell nearest their median is shown.
    dt : float
        Bin width in seconds.
    name : str
        The model's name in the legend.
    rates_only : bool
        The model predicts rates, not spikes (a CNN, an LN model).
    """
    import warnings

    recorded, rate_cc = np.asarray(recorded), np.asarray(rate_cc, dtype=float)
    finite = np.flatnonzero(np.isfinite(rate_cc))
    if finite.size:
        med = float(np.median(rate_cc[finite]))
        cell = int(finite[np.argmin(np.abs(rate_cc[finite] - med))])
        what = f"rate CC {rate_cc[cell]:.2f}, median over cells {med:.2f}"
    else:
        cell, what = 0, "rate CC undefined for every cell"
    n, T = recorded.shape[:2]
    rec = recorded[..., cell].reshape(n * T, -1)  # the test stimuli one after the other
    responses = {"recorded": rec}
    if not rates_only:
        responses[name] = np.asarray(predicted)[..., cell].reshape(n * T, -1)
    title = f"cell {cell} ({what}); {n} test stimuli, {T * dt:.1f} s each"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = plot_cell_rasters(responses, dt=dt, title=title)
    fig.set_size_inches(5.0 * len(responses), 4.0)  # the test stimuli side by side need width
    axes = fig.axes
    if rates_only:
        rate = np.asarray(rates)[..., cell].reshape(n * T) / dt
        t = (np.arange(n * T) + 0.5) * dt
        psth_ax = axes[len(responses):][0]
        psth_ax.plot(t, rate, color="C0", label=f"{name} rate")
        psth_ax.plot([], [], color="k", label="recorded")
        psth_ax.legend(frameon=False, fontsize="small")
    for ax in axes:
        for k in range(1, n):
            ax.axvline(k * T * dt, color="0.85", lw=0.5, zorder=0)
    return fig
