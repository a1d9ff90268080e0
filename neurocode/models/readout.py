"""Receptive-field-aware building blocks shared by the retina models.

A retina lab's first reference is a linear-nonlinear (LN) model built on where each cell
looks. These blocks put that knowledge into every model:

:class:`RFFeatures`
    Per cell, six contrast features under the cell's receptive field (RF): the ON
    (positive) and OFF (negative) rectified contrast weighted by the RF centre Gaussian
    and by a wider surround Gaussian, and the two rectified halves of the centre-weighted
    contrast. Fixed (non-learnable) masks from the RF estimate; z-scored with statistics
    of the training images.
:class:`GaussianReadout`
    A per-cell spatial readout of a core's feature maps (Lurz et al. 2021): a Gaussian
    pooling window per cell whose centre and size are learnable and *initialised at the
    cell's RF*, followed by per-cell feature weights.

Images enter as the normalised grey levels ``[B, 1, H, W]`` the fit pipeline prepares
(z-scored with training-image statistics), i.e. as contrast: ON = max(z, 0),
OFF = max(-z, 0).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["RF_FEATURE_NAMES", "RFFeatures", "GaussianReadout", "on_off"]

#: The per-cell features of :class:`RFFeatures`, in order.
RF_FEATURE_NAMES = ("centre_on", "centre_off", "surround_on", "surround_off", "centre_linear_on",
                    "centre_linear_off")


def on_off(images: Tensor) -> Tensor:
    """Split contrast into ON and OFF channels.

    Parameters
    ----------
    images : Tensor [B, 1, H, W]
        Normalised images (contrast, zero mean over the training images).

    Returns
    -------
    Tensor [B, 2, H, W]
        ``max(z, 0)`` and ``max(-z, 0)``.
    """
    return torch.cat([images.clamp(min=0), (-images).clamp(min=0)], dim=1)


class RFFeatures(nn.Module):
    """Six RF-weighted contrast features per cell (see the module docstring).

    Parameters
    ----------
    centre_masks, surround_masks : array [n_cells, H, W]
        Normalised Gaussian weight maps (e.g. ``ReceptiveFields.masks(shape)`` and
        ``.masks(shape, scale=surround_scale)``), H×W the model's input size.

    Shape
    -----
    input : Tensor [B, 1, H, W]; output : Tensor [B, n_cells, 6], z-scored once
    :meth:`fit_normalization` has been called (identity scaling before).
    """

    def __init__(self, centre_masks, surround_masks):
        super().__init__()
        c = torch.as_tensor(np.asarray(centre_masks), dtype=torch.float32)
        s = torch.as_tensor(np.asarray(surround_masks), dtype=torch.float32)
        if c.dim() != 3 or c.shape != s.shape:
            raise ValueError(f"centre_masks and surround_masks must both be [n_cells, H, W], got "
                             f"{tuple(c.shape)} and {tuple(s.shape)}")
        self.register_buffer("centre", c)
        self.register_buffer("surround", s)
        n = c.shape[0]
        self.register_buffer("mean", torch.zeros(n, len(RF_FEATURE_NAMES)))
        self.register_buffer("std", torch.ones(n, len(RF_FEATURE_NAMES)))

    @property
    def n_cells(self) -> int:
        return self.centre.shape[0]

    def raw(self, images: Tensor) -> Tensor:
        """Un-normalised features ``[B, n_cells, 6]``."""
        if images.dim() != 4 or images.shape[1] != 1 or images.shape[2:] != self.centre.shape[1:]:
            raise ValueError(f"images must be [B, 1, {self.centre.shape[1]}, {self.centre.shape[2]}], "
                             f"got {tuple(images.shape)}")
        x = on_off(images)  # [B, 2, H, W]
        centre = torch.einsum("bkhw,nhw->bnk", x, self.centre)
        surround = torch.einsum("bkhw,nhw->bnk", x, self.surround)
        linear = torch.einsum("bhw,nhw->bn", images[:, 0], self.centre)
        return torch.stack([centre[..., 0], centre[..., 1], surround[..., 0], surround[..., 1],
                            linear.clamp(min=0), (-linear).clamp(min=0)], dim=-1)

    @torch.no_grad()
    def fit_normalization(self, images: Tensor) -> None:
        """Set the z-scoring statistics from training images ``[B, 1, H, W]``."""
        f = self.raw(images)
        self.mean.copy_(f.mean(0))
        self.std.copy_(f.std(0).clamp(min=1e-6) if f.shape[0] > 1 else torch.ones_like(self.std))

    def forward(self, images: Tensor) -> Tensor:
        return (self.raw(images) - self.mean) / self.std


class GaussianReadout(nn.Module):
    """Per-cell Gaussian readout of a feature map, initialised at each cell's RF.

    Cell n pools channel c of the map with a normalised Gaussian window
    ``w_n(p) ∝ exp(-½ (p - μ_n)ᵀ (s_n² Σ_n)⁻¹ (p - μ_n))`` and sums the channels with its
    own weights: ``y_n = Σ_c a_nc Σ_p w_n(p) x_c(p)``. ``μ_n`` (map pixels) and ``log s_n``
    are learnable, initialised at the RF centre and at ``s_n = 1`` with ``Σ_n`` the RF
    covariance on the map's grid (plus the pixel-area term 1/12). The feature weights start
    at zero, so an untrained readout adds nothing and the model starts from its RF features.

    Parameters
    ----------
    centres : array [n_cells, 2]
        RF centres (x = column, y = row) in pixels of the feature map.
    covariances : array [n_cells, 2, 2]
        RF covariances in map px².
    map_size : (H, W)
        Feature-map size.
    channels : int
        Channels C of the feature map.
    units_per_cell : int
        Output units per cell (each with its own feature weights; the window is the cell's).

    Shape
    -----
    input : Tensor [..., C, H, W]; output : Tensor [..., n_cells * units_per_cell]
    """

    def __init__(self, centres, covariances, map_size, channels: int, units_per_cell: int = 1):
        super().__init__()
        centres = torch.tensor(np.array(centres), dtype=torch.float32)
        cov = torch.tensor(np.array(covariances), dtype=torch.float32) + torch.eye(2) / 12.0
        self.map_size = tuple(int(v) for v in map_size)
        self.units_per_cell = int(units_per_cell)
        self.mu = nn.Parameter(centres.clone())
        self.log_scale = nn.Parameter(torch.zeros(centres.shape[0]))
        self.register_buffer("precision", torch.linalg.inv(cov))
        h, w = self.map_size
        self.register_buffer("grid_x", torch.arange(w, dtype=torch.float32) + 0.5)
        self.register_buffer("grid_y", torch.arange(h, dtype=torch.float32) + 0.5)
        self.weight = nn.Parameter(torch.zeros(centres.shape[0] * self.units_per_cell, int(channels)))

    def windows(self) -> Tensor:
        """The normalised pooling windows ``[n_cells, H, W]``."""
        dx = self.grid_x[None, None, :] - self.mu[:, 0, None, None]
        dy = self.grid_y[None, :, None] - self.mu[:, 1, None, None]
        p = self.precision / torch.exp(2 * self.log_scale)[:, None, None]
        q = p[:, 0, 0, None, None] * dx**2 + 2 * p[:, 0, 1, None, None] * dx * dy + p[:, 1, 1, None, None] * dy**2
        w = torch.softmax(-0.5 * q.flatten(1), dim=1).view(-1, *self.map_size)
        # a window's far tail underflows to subnormal weights, which run the pooling's matrix products
        # ~9x slower on CPU threads that do not flush them; below the smallest normal float they add
        # nothing to a pooled value of any normal size (nor to its gradient)
        return w.masked_fill(w < torch.finfo(w.dtype).tiny, 0.0)

    def pooled(self, x: Tensor) -> Tensor:
        """Each cell's window applied to every channel: ``[..., n_cells, C]``."""
        return torch.einsum("...chw,nhw->...nc", x, self.windows())

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pooled(x)
        if self.units_per_cell > 1:
            pooled = pooled.repeat_interleave(self.units_per_cell, dim=-2)
        return (pooled * self.weight).sum(-1)

    def extra_repr(self) -> str:
        return (f"n_cells={self.mu.shape[0]}, map_size={self.map_size}, channels={self.weight.shape[1]}, "
                f"units_per_cell={self.units_per_cell}")

