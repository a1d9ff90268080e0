"""Figures of the recognition experiments (matplotlib ``Figure`` objects, no pyplot state).

* :func:`plot_learning_curves` -- Fig. 8: validation accuracy and training loss per epoch, NSNN vs DSNN.
* :func:`plot_robustness` -- Fig. 3 / Tables 2-3: accuracy and loss against perturbation strength.
* :func:`plot_noise_level` -- Fig. 9B: accuracy against the membrane-noise SD.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_learning_curves", "plot_robustness", "plot_noise_level"]

_XLABEL = {"flip": "spike-flip probability β", "fgsm": "FGSM ε", "do": "DO ‖Δx‖₂ = γ", "event_drop": "EventDrop ρ"}


def _epochs(history: list) -> list:
    return [h for h in history if "epoch" in h]


def plot_learning_curves(histories: Mapping[str, object], path=None) -> Figure:
    """Fig. 8: per model, validation accuracy and training loss per epoch.

    ``histories`` maps a label to one history (list of epoch records) or to several (seeds:
    mean ± SD drawn).
    """
    fig = Figure(figsize=(8.0, 3.2), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    for i, (label, hist) in enumerate(histories.items()):
        runs = hist if hist and isinstance(hist[0], list) else [hist]
        runs = [_epochs(h) for h in runs]
        n = min(len(r) for r in runs)
        if n == 0:
            continue
        ep = np.arange(1, n + 1)
        for ax, key in ((ax_acc, "val_accuracy"), (ax_loss, "loss")):
            if key not in runs[0][0]:
                continue
            v = np.array([[r[j][key] for j in range(n)] for r in runs])
            m = v.mean(0)
            ax.plot(ep, m, color=f"C{i}", label=label)
            if len(runs) > 1:
                s = v.std(0, ddof=1)
                ax.fill_between(ep, m - s, m + s, color=f"C{i}", alpha=0.2)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_acc.legend()
    if path is not None:
        from neurocode.plotting import save_figure

        save_figure(fig, path)
    return fig


def plot_robustness(results: Mapping[str, dict], path=None) -> Figure:
    """Accuracy (top) and loss (bottom) against each perturbation's strength, one line per model.

    ``results`` maps a label (e.g. "NSNN") to a :func:`~neurocode.recognition.robustness_curves`
    dict; error bars are the SDs over repeats (or seeds).
    """
    kinds = [k for k in ("flip", "fgsm", "do", "event_drop") if any(k in r for r in results.values())]
    fig = Figure(figsize=(3.2 * max(len(kinds), 1), 5.0), layout="constrained")
    axes = np.asarray(fig.subplots(2, max(len(kinds), 1), squeeze=False))
    for j, kind in enumerate(kinds):
        for i, (label, res) in enumerate(results.items()):
            if kind not in res:
                continue
            c = res[kind]
            for row, key in ((0, "accuracy"), (1, "loss")):
                axes[row, j].errorbar(c["level"], c[f"{key}_mean"], yerr=c[f"{key}_sd"], marker="o", ms=3,
                                      capsize=2, color=f"C{i}", label=label)
        axes[1, j].set_xlabel(_XLABEL[kind])
        axes[0, j].set_ylabel("accuracy")
        axes[1, j].set_ylabel("loss")
    if kinds:
        axes[0, 0].legend()
    if path is not None:
        from neurocode.plotting import save_figure

        save_figure(fig, path)
    return fig


def plot_noise_level(sigmas, acc_mean, acc_sd=None, path=None) -> Figure:
    """Fig. 9B: test accuracy against the NSNN's membrane-noise SD."""
    fig = Figure(figsize=(4.0, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.errorbar(sigmas, acc_mean, yerr=acc_sd, marker="o", capsize=3)
    ax.set_xlabel("noise SD σ")
    ax.set_ylabel("test accuracy")
    if path is not None:
        from neurocode.plotting import save_figure

        save_figure(fig, path)
    return fig
