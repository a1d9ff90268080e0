"""Training methods: STBP, tdBN and TET -- a loss on the per-step outputs and a normalisation.

* **STBP** (Wu et al. 2018): backpropagation through time and space of the whole unrolled
  network; cross-entropy of the time-averaged output ("rate" loss). Normalisation: batch
  norm over time and batch.
* **tdBN** (STBP-tdBN, Zheng et al. 2021): STBP with threshold-dependent batch norm
  (:class:`~neurocode.recognition.layers.TdBN`).
* **TET** (Deng et al. 2022): the temporal efficient training loss
  ``(1 - lambda) * mean_t CE(O_t, y) + lambda * mean((O - phi)^2)`` on the per-step outputs ``O_t``
  (the authors' code: ``lambda = 1e-3``, ``phi = 1``); batch norm as STBP.

The NSNN/DSNN switch is the neuron's (noise-driven learning or surrogate gradient); every
method works with both. Gradients flow through time in all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Method", "METHODS", "rate_loss", "tet_loss", "get_method"]


def _check(outputs: Tensor, target: Tensor) -> None:
    if outputs.dim() != 3:
        raise ValueError(f"outputs must be per-step class scores [T, B, n_classes], got shape {tuple(outputs.shape)}")
    if target.shape != outputs.shape[1:2]:
        raise ValueError(f"target must be [B] = [{outputs.shape[1]}] class indices, got shape {tuple(target.shape)}")


def rate_loss(outputs: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """STBP / tdBN loss: cross-entropy of the time-averaged scores.

    Parameters
    ----------
    outputs : Tensor [T, B, n_classes]
    target : Tensor [B] (int64 class indices)
    reduction : {"mean", "sum", "none"}
    """
    _check(outputs, target)
    return F.cross_entropy(outputs.mean(0), target, reduction=reduction)


def tet_loss(outputs: Tensor, target: Tensor, lamb: float = 1e-3, phi: float = 1.0, reduction: str = "mean") -> Tensor:
    """TET loss (Deng et al. 2022, Eq. 10-11): per-step cross-entropy averaged over time, plus an MSE pull
    of every score towards ``phi`` weighted ``lamb``.

    Parameters
    ----------
    outputs : Tensor [T, B, n_classes]
    target : Tensor [B]
    lamb : float in [0, 1]
        Weight of the MSE regulariser (0: mean over t of CE only).
    phi : float
        Its target value.
    reduction : {"mean", "sum", "none"}
        Over the batch ("none": per-sample [B]).
    """
    _check(outputs, target)
    if not 0.0 <= lamb <= 1.0:
        raise ValueError(f"lamb must be in [0, 1], got {lamb!r}")
    T, B, K = outputs.shape
    ce = F.cross_entropy(outputs.reshape(T * B, K), target.repeat(T), reduction="none").view(T, B).mean(0)  # [B]
    per_sample = (1 - lamb) * ce
    if lamb:
        per_sample = per_sample + lamb * (outputs - phi).square().mean((0, 2))
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


@dataclass(frozen=True)
class Method:
    """A training method: its normalisation and its loss.

    Attributes
    ----------
    name : str
    norm : {"bn", "tdbn"}
    loss : {"rate", "tet"}
    tet_lambda : float
        TET's MSE weight (used when ``loss == "tet"``).
    """

    name: str
    norm: str
    loss: str
    tet_lambda: float = 1e-3

    def loss_fn(self, outputs: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
        """The training loss of per-step scores ``[T, B, K]`` and labels ``[B]``."""
        if self.loss == "tet":
            return tet_loss(outputs, target, self.tet_lambda, reduction=reduction)
        return rate_loss(outputs, target, reduction=reduction)


METHODS: dict[str, Method] = {
    "stbp": Method("stbp", "bn", "rate"),
    "tdbn": Method("tdbn", "tdbn", "rate"),
    "tet": Method("tet", "bn", "tet"),
}


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name`` (ValueError naming the choices)."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {name!r}")
    return METHODS[name]


@torch.no_grad()
def evaluation_loss(outputs: Tensor, target: Tensor) -> Tensor:
    """Per-sample test loss ``[B]``: cross-entropy of the time-averaged scores (every method alike)."""
    return rate_loss(outputs, target, reduction="none")
