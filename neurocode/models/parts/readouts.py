"""Readout parts: each cell's current from the core's feature maps and the front end's LN pathway.

A readout returns the current the output part turns into a response: ``[T, K, B, n_cells]`` for K
trials of a spiking output, ``[T, B, n_cells]`` for a rate output (``n_trials`` None).
Registered in :data:`READOUTS`:

``rf``
    The front end's LN pathway plus a Gaussian readout of the core placed at the cell's RF
    (:class:`~neurocode.models.readout.GaussianReadout`, weights starting at zero so that the
    model starts from its RF pathway). Options: ``time_weights`` (each cell weighs its core
    readout per bin, ``c_n(t)``, started at 1) and ``synapse`` (a current-based synapse
    ``y(t) = a y(t-1) + (1 - a) r(t)`` between a time-resolved core and the output, decay ``a``).
``linear``
    The LN pathway alone (no core): the LN reference.
``dense``
    The paper's fully connected readout of the whole (flattened) core: per bin, ``units`` outputs
    per cell plus a time bias ``[T, n_cells * units]`` (a time-resolved core); or, from a static core,
    the whole post-flash time course at once, ``n_cells * T`` outputs, optionally BatchNorm'd.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neurocode.models.parts.front_ends import rf_geometry
from neurocode.models.readout import GaussianReadout

__all__ = ["RFReadout", "LinearReadout", "DenseReadout", "READOUTS"]


class RFReadout(nn.Module):
    """LN pathway + Gaussian readout at each RF (module docstring).

    Parameters
    ----------
    n_cells, n_steps : int
    rfs : ReceptiveFields or None
        Places the windows (None: placeholders, for loading a checkpoint).
    input_size, core_size : int
        The image's and the core maps' sides.
    channels : int
        The core's channels c2.
    time_weights : bool
    synapse : float
        In [0, 1); 0: none.
    """

    def __init__(self, n_cells: int, n_steps: int, rfs, input_size: int, core_size: int, channels: int, *,
                 time_weights: bool = False, synapse: float = 0.0):
        super().__init__()
        if not 0 <= synapse < 1:
            raise ValueError(f"readout synapse must be in [0, 1), got {synapse!r}")
        _, _, centres, cov = rf_geometry(rfs, n_cells, input_size, core_size, 2.0)
        self.gaussian = GaussianReadout(centres, cov, (core_size, core_size), channels)
        self.time_weights = nn.Parameter(torch.ones(n_steps, n_cells)) if time_weights else None
        self.synapse = float(synapse)

    def core_current(self, features: Tensor, n_trials: int | None, batch: int) -> Tensor:
        """The core's part of the current: ``[T, K, B, N]`` from time-resolved features ``[T, K*B, c2, s, s]``
        (K = 1 for a deterministic core; ``[T, B, N]`` with ``n_trials`` None), or ``[T, B, N]`` from static
        ``[B, c2, s, s]``."""
        if features.dim() == 4:
            g = self.gaussian(features)  # [B, N]
            return self.time_weights[:, None] * g[None] if self.time_weights is not None else g[None]
        T, N = features.shape[0], self.gaussian.mu.shape[0]
        if n_trials is None:  # a rate output's one trial: pooled as one batch of maps (the clip CNN's sums)
            core = self.gaussian(features.flatten(0, 1)).view(T, batch, N)
        else:
            core = self.gaussian(features).view(T, -1, batch, N)
        a = self.synapse
        if a > 0:
            steps, y = [], torch.zeros_like(core[0])
            for r in core.unbind(0):
                y = a * y + (1 - a) * r
                steps.append(y)
            core = torch.stack(steps)
        if self.time_weights is None:
            return core
        return core * (self.time_weights[:, None] if n_trials is None else self.time_weights[:, None, None])

    def forward(self, linear: Tensor, features: Tensor, n_trials: int | None) -> Tensor:
        """``linear [T, B, N]`` and the core's features -> the current ``[T, K, B, N]`` (``[T, B, N]``: None)."""
        core = self.core_current(features, n_trials, linear.shape[1])
        if n_trials is None:
            return linear + core
        current = (linear + core)[:, None] if features.dim() == 4 else linear[:, None] + core
        # a deterministic core's one trial drives every output trial
        return current.expand(-1, n_trials, -1, -1) if current.shape[1] != n_trials else current


class LinearReadout(nn.Module):
    """The LN pathway alone: ``linear [T, B, N] -> [T, K, B, N]`` (itself with ``n_trials`` None)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, linear: Tensor, features: Tensor | None = None, n_trials: int | None = None) -> Tensor:
        return linear if n_trials is None else linear[:, None].expand(-1, n_trials, -1, -1)


class DenseReadout(nn.Module):
    """The paper's fully connected readout (module docstring).

    Parameters
    ----------
    n_cells, n_steps : int
    features : int
        The core's flattened output size.
    units : int
        Outputs per cell (per bin).
    per_bin : bool
        A static core: read out ``n_cells * n_steps`` values at once (no bias; ``norm``: BatchNorm1d).
    learn_time_bias : bool
        A time-resolved core: the time bias is trained (False: it stays at its calibrated value).
    """

    def __init__(self, n_cells: int, n_steps: int, rfs=None, input_size: int | None = None,
                 core_size: int | None = None, channels: int | None = None, *, features: int, units: int = 1,
                 per_bin: bool = False, norm: bool = False, learn_time_bias: bool = True):
        super().__init__()
        self.n_cells, self.n_steps, self.per_bin = int(n_cells), int(n_steps), bool(per_bin)
        if per_bin:
            self.linear = nn.Linear(features, n_cells * n_steps, bias=False)
            self.norm = nn.BatchNorm1d(n_cells * n_steps) if norm else nn.Identity()
        else:
            self.linear = nn.Linear(features, n_cells * units)
            self.time_bias = nn.Parameter(torch.zeros(n_steps, n_cells * units), requires_grad=learn_time_bias)

    def forward(self, linear: Tensor | None, features: Tensor, n_trials: int | None) -> Tensor:
        """The core's features (``[T, K*B, ...]``, or static ``[B, ...]`` with ``per_bin``) -> ``[T, K, B, n_cells * units]``
        (``[T, B, ...]`` with ``n_trials`` None)."""
        if self.per_bin:
            y = self.norm(self.linear(features.flatten(1)))  # [B, T * N]
            y = y.view(-1, self.n_steps, self.n_cells).transpose(0, 1)
            return y if n_trials is None else y[:, None].expand(-1, n_trials, -1, -1)
        y = self.linear(features.flatten(2)) + self.time_bias[:, None, :]
        return y if n_trials is None else y.view(y.shape[0], n_trials, -1, y.shape[-1])


#: Readouts by name.
READOUTS = {"rf": RFReadout, "linear": LinearReadout, "dense": DenseReadout}
