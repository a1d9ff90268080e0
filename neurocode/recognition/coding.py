"""The paper's Fig. 4 on a classifier: the neural code of its final spiking layer across noisy trials.

* :func:`classifier_coding_analysis` -- Fig. 4B: each test sample is presented ``n_trials``
  times (fresh membrane noise each time); per sample, the mean Fano factor of the final
  spiking layer's spike counts across trials, and the mean pairwise cosine similarity of the
  trials' prediction vectors (softmax of the time-averaged scores); then their Pearson r and
  p-value across samples. Built on :func:`neurocode.analysis.model_coding_analysis`.
* :func:`two_trials` / :func:`plot_two_trials` -- Fig. 4A: the prediction distributions, spike
  counts and rasters of the final spiking layer in two trials of one input.

A DSNN is deterministic: its trials are identical (FF = 0 where a neuron fires), so the
analysis is meaningful for NSNNs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from neurocode.recognition.layers import noise_source

__all__ = ["classifier_coding_analysis", "two_trials", "plot_two_trials", "stack_inputs"]


def stack_inputs(dataset: Dataset, n_samples: int, static: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_samples`` items of ``dataset`` as one batch: ``x`` (model input layout) and labels."""
    n = min(int(n_samples), len(dataset))
    if n < 1:
        raise ValueError("n_samples must be >= 1 and the dataset non-empty")
    xs, ys = zip(*(dataset[i] for i in range(n)))
    x = torch.stack(xs)
    return (x if static else x.transpose(0, 1)), torch.as_tensor(ys)


def _softmax_prediction(out: torch.Tensor) -> torch.Tensor:
    return out.mean(0).softmax(-1)


def classifier_coding_analysis(model: nn.Module, dataset: Dataset, n_samples: int = 500, n_trials: int = 10, *,
                               static: bool = True, seed: int = 0, batch_size: int = 100, device="cpu",
                               progress: bool = False):
    """Fig. 4B on a classifier.

    Parameters
    ----------
    model : SpikingClassifier
        Its ``code_layer`` (final spiking layer) is the neural code; evaluated in eval mode.
    dataset : Dataset
        Test samples; the first ``n_samples`` are used (paper: 500; 200 for DVS-Gesture).
    n_trials : int
        Repeated noisy presentations per sample.
    seed : int
        Seeds the membrane noise (same seed, same result).

    Returns
    -------
    neurocode.analysis.CodingResult
        ``mean_fano [n]``, ``cosine [n]``, ``r``, ``p``, ``slope``, ``intercept``.
    """
    from neurocode.analysis import model_coding_analysis

    if n_trials < 2:
        raise ValueError(f"n_trials must be >= 2 (variability across trials), got {n_trials!r}")
    x, _ = stack_inputs(dataset, n_samples, static)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        with noise_source(model, torch.Generator(device=device).manual_seed(seed)):
            return model_coding_analysis(model, x.to(device), n_trials=n_trials, code_layer=model.code_layer,
                                         prediction_fn=_softmax_prediction, batch_size=batch_size,
                                         batch_axis=0 if static else 1, time_axis=0, progress=progress)
    finally:
        model.train(was_training)


@torch.no_grad()
def two_trials(model: nn.Module, x: torch.Tensor, seed: int = 0) -> dict:
    """Two noisy trials of one input (Fig. 4A).

    Parameters
    ----------
    x : Tensor
        One input in model layout with batch 1 (``[1, C, H, W]`` or ``[T, 1, C, H, W]``).

    Returns
    -------
    dict
        ``spikes`` ``[2, T, units]`` of the final spiking layer, ``predictions`` ``[2, n_classes]``
        (softmax of the time-averaged scores).
    """
    captured = {}
    handle = model.code_layer.register_forward_hook(lambda m, i, o: captured.__setitem__("code", o))
    was_training = model.training
    model.eval()
    spikes, preds = [], []
    try:
        with noise_source(model, torch.Generator(device=x.device).manual_seed(seed)):
            for _ in range(2):
                out = model(x)
                code = captured["code"]
                spikes.append(code[:, 0].reshape(code.shape[0], -1).cpu().numpy())
                preds.append(_softmax_prediction(out)[0].cpu().numpy())
    finally:
        handle.remove()
        model.train(was_training)
    return {"spikes": np.stack(spikes), "predictions": np.stack(preds)}


def plot_two_trials(trials: dict, class_names=None, max_units: int = 64, path=None, title: str | None = None):
    """Fig. 4A: per trial, the prediction distribution, the final layer's spike counts and its raster.

    Parameters
    ----------
    trials : dict
        :func:`two_trials`'s output.
    max_units : int
        Units shown in the rasters (the most active ones over the two trials).
    """
    from matplotlib.figure import Figure

    from neurocode.plotting import raster, save_figure

    spikes, preds = trials["spikes"], trials["predictions"]
    counts = spikes.sum(1)  # [2, units]
    order = np.argsort(-counts.sum(0), kind="stable")[:max_units]
    fig = Figure(figsize=(9.0, 5.5), layout="constrained")
    axes = fig.subplots(2, 3, gridspec_kw={"width_ratios": [1.0, 1.6, 1.6]})
    K = preds.shape[1]
    names = list(class_names) if class_names is not None else [str(k) for k in range(K)]
    for k in range(2):
        ax = axes[k, 0]
        ax.bar(np.arange(K), preds[k], color=f"C{k}")
        ax.set_xticks(np.arange(K), names, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"trial {k + 1}\nprediction")
        ax = axes[k, 1]
        ax.bar(np.arange(len(order)), counts[k, order], color=f"C{k}")
        ax.set_ylabel("spike count")
        ax.set_xlabel("unit (by activity)")
        raster(axes[k, 2], spikes[k][:, order], dt=1.0, color=f"C{k}")
        axes[k, 2].set_xlabel("time step")
        axes[k, 2].set_ylabel("unit")
    cos = float(preds[0] @ preds[1] / (np.linalg.norm(preds[0]) * np.linalg.norm(preds[1])))
    fig.suptitle(title or f"two trials of one input: prediction cosine similarity {cos:.3f}, "
                          f"{int((spikes[0] != spikes[1]).sum())} spikes differ")
    if path is not None:
        save_figure(fig, path)
    return fig
