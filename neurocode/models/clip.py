"""Retina models on time-varying stimuli (movies, white noise): clips in, responses out.

A continuous recording is cut into clips (:meth:`neurocode.data.ContinuousRecording.to_clips`):
``F = L - 1 + T`` frames on the bin grid, the first ``L - 1`` of them stimulus history before
the ``T`` response bins. Every model here has the same spatio-temporal first stage and the same
time-invariant parameters (a clip's bins are not tied to any stimulus event, unlike a flash):

:class:`SpatioTemporalFilter`
    Per cell, a space-time separable linear filter: a spatial map ``[H, W]`` and a causal
    temporal kernel of ``L`` lags. Initialised from the spike-triggered average of the
    training clips (rank-1: its leading spatial and temporal singular vectors), so every
    model starts where the classical LN analysis of a white-noise experiment ends.
:class:`ClipLN`
    The LN reference: ``rate_n(t) = softplus(a_n + g_n · x_n(t))`` with ``x_n`` the filter
    output; trained with the Poisson likelihood.
:class:`ClipSNN`
    NSNN (noisy LIF, noise-driven learning) or DSNN (LIF, surrogate gradient). A spiking core
    sees ON and OFF contrast: conv1 on every frame, a causal temporal kernel per channel
    (the spatio-temporal first stage of the core), a spiking layer, conv2, a spiking layer,
    and a Gaussian readout placed at each cell's RF. Each cell's output neuron receives
    ``I_n(t) = a_n + g_n · x_n(t) + Σ_c w_nc (G_n * s2_c)(t)``, held for
    ``output_substeps`` neuron steps per bin; its spikes are counted per bin.
:class:`ClipCNN`
    The same core with ReLU units (no spikes), the same linear pathway, a parameterised
    softplus output and the Poisson likelihood.

Input clips are time-major ``[F, B, H, W]`` contrast (z-scored grey levels).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocode.models._spiking import SpikingLayers
from neurocode.models.cnn import PSoftplus
from neurocode.models.event_conv import SpikeConv2d
from neurocode.models.readout import GaussianReadout
from neurocode.models.rf import RFConfig
from neurocode.models.utils import bisect_shift

__all__ = ["rf_support", "SpatioTemporalFilter", "ClipLN", "ClipSNN", "ClipCNN", "spike_triggered_average", "calibrate_clip_snn"]


def _causal_conv(x: Tensor, kernel: Tensor) -> Tensor:
    """``y[t] = Σ_l kernel[c, l] · x[t + L - 1 - l]`` per channel: ``x [F, B, C, ...]`` -> ``[F - L + 1, B, C, ...]``."""
    Fr, B, C = x.shape[:3]
    rest = x.shape[3:]
    L = kernel.shape[1]
    flat = x.reshape(Fr, B, C, -1).permute(1, 3, 2, 0).reshape(-1, C, Fr)  # [B*P, C, F]
    y = F.conv1d(flat, kernel.flip(-1)[:, None, :], groups=C)  # [B*P, C, T]
    T = Fr - L + 1
    return y.reshape(B, -1, C, T).permute(3, 0, 2, 1).reshape(T, B, C, *rest)


@torch.no_grad()
def spike_triggered_average(clips: Tensor, counts: Tensor, n_lags: int) -> Tensor:
    """Spatio-temporal STA of every cell on clips.

    Parameters
    ----------
    clips : Tensor [n, F, H, W]
        Contrast clips (frame ``F - T + t`` is the current frame of bin ``t``).
    counts : Tensor [n, T, n_cells]
        Spike counts (trial-averaged) per bin.
    n_lags : int
        ``L = F - T + 1``.

    Returns
    -------
    Tensor [n_cells, L, H, W]
        ``Σ (r - r̄) · frame[t - l]`` over clips and bins, divided by the number of bins
        (lag 0 = the bin's own frame).
    """
    n, Fr, H, W = clips.shape
    T = counts.shape[1]
    r = counts - counts.mean((0, 1), keepdim=True)
    out = []
    for lag in range(n_lags):
        frames = clips[:, Fr - T - lag: Fr - lag]  # [n, T, H, W]
        out.append(torch.einsum("ntc,nthw->chw", r, frames) / (n * T))
    return torch.stack(out, dim=1)


def rf_support(rfs, frame_shape: tuple[int, int], radius: float = 3.0, min_px: float = 3.0) -> np.ndarray:
    """float32 ``[n_cells, H, W]`` of {0, 1}: pixels within ``radius`` RF σ of each centre (or ``min_px`` px)."""
    r = rfs.scaled(frame_shape)
    h, w = frame_shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    d = np.stack([xx[None] - r.centres[:, 0, None, None], yy[None] - r.centres[:, 1, None, None]], -1)
    q = np.einsum("nhwi,nij,nhwj->nhw", d, np.linalg.inv(r.covariances), d)
    return ((q <= radius**2) | ((d**2).sum(-1) <= min_px**2)).astype(np.float32)


class SpatioTemporalFilter(nn.Module):
    """Per-cell separable linear filter (module docstring).

    The spatial map is confined to a support around the cell's RF (:func:`rf_support`, 3 σ):
    a white-noise STA over the whole frame is mostly pixel noise, and a retinal ganglion
    cell's filter is local.

    Shape
    -----
    input : Tensor [F, B, H, W]; output : Tensor [F - n_lags + 1, B, n_cells]
    """

    def __init__(self, n_cells: int, frame_shape: tuple[int, int], n_lags: int, support=None):
        super().__init__()
        self.n_lags = int(n_lags)
        self.spatial = nn.Parameter(torch.zeros(n_cells, *frame_shape))
        self.temporal = nn.Parameter(torch.zeros(n_cells, self.n_lags))
        support = torch.ones(n_cells, *frame_shape) if support is None else torch.as_tensor(support)
        self.register_buffer("support", support.float())

    @torch.no_grad()
    def init_from_sta(self, sta: Tensor, clips: Tensor) -> None:
        """Rank-1 factors of ``sta [n_cells, L, H, W]``, scaled to unit output SD on ``clips [n, F, H, W]``."""
        N, L = sta.shape[:2]
        U, S, Vh = torch.linalg.svd(sta.reshape(N, L, -1).double(), full_matrices=False)
        temporal, spatial = U[:, :, 0] * S[:, :1], Vh[:, 0]  # [N, L], [N, H*W]
        # the sign convention: the temporal kernel's largest lobe is positive
        sign = torch.sign(temporal.gather(1, temporal.abs().argmax(1, keepdim=True)))
        self.temporal.copy_((temporal * sign).float())
        self.spatial.copy_((spatial * sign).reshape(self.spatial.shape).float() * self.support)
        sd = self(clips.transpose(0, 1)).std((0, 1)).clamp(min=1e-6)
        self.spatial.div_(sd[:, None, None])

    def forward(self, clips: Tensor) -> Tensor:
        proj = torch.einsum("fbhw,nhw->fbn", clips, self.spatial * self.support)
        return _causal_conv(proj, self.temporal)


class _ClipBase(nn.Module):
    """Linear pathway ``a_n + g_n · x_n(t)`` shared by the clip models."""

    def __init__(self, config: RFConfig, n_lags: int, rfs=None):
        super().__init__()
        self.config = config
        S = config.input_size
        self.n_lags = int(n_lags)
        support = None if rfs is None else rf_support(rfs, (S, S))
        self.linear = SpatioTemporalFilter(config.n_cells, (S, S), n_lags, support)
        self.bias = nn.Parameter(torch.zeros(config.n_cells))
        # the filter output has unit SD on the training clips; a spiking model starts with it at the
        # scale of its noise (a smooth, LN-like rate curve), a rate model at unit scale
        gain = config.noise_sigma if isinstance(self, SpikingLayers) else 1.0
        self.linear_gain = nn.Parameter(torch.full((config.n_cells,), float(gain)))

    def check_clips(self, clips: Tensor) -> None:
        S = self.config.input_size
        if clips.dim() != 4 or clips.shape[2:] != (S, S) or clips.shape[0] < self.n_lags:
            raise ValueError(f"clips must be [F >= {self.n_lags}, B, {S}, {S}] (time-major), got {tuple(clips.shape)}")

    def linear_drive(self, clips: Tensor) -> Tensor:
        """``[T, B, n_cells]``."""
        return self.bias + self.linear_gain * self.linear(clips)


def _core_geometry(config: RFConfig, rfs) -> tuple[np.ndarray, np.ndarray]:
    from neurocode.models.rf import _rf_arrays

    _, _, centres, cov = _rf_arrays(config, rfs)
    return centres, cov


class ClipLN(_ClipBase):
    """Linear-nonlinear model on clips (module docstring).

    Shape
    -----
    clips : Tensor [F, B, H, W]; output : Tensor [T, B, n_cells] rates in expected spikes per bin.
    """

    def __init__(self, config: RFConfig, n_lags: int, rfs=None):
        super().__init__(config, n_lags, rfs)

    def forward(self, clips: Tensor) -> Tensor:
        self.check_clips(clips)
        return F.softplus(self.linear_drive(clips))


class _ClipCore(nn.Module):
    """conv1 on pooled ON/OFF frames, a causal temporal kernel per channel, a bias: ``[T, B, c1, s, s]``."""

    def __init__(self, config: RFConfig, n_lags: int):
        super().__init__()
        c1 = config.channels[0]
        k1 = config.kernel_sizes[0]
        self.pool = config.core_pool
        self.conv1 = nn.Conv2d(2, c1, k1, padding=k1 // 2, bias=False)
        kernel = torch.zeros(c1, n_lags)
        kernel[:, : min(3, n_lags)] = 1.0 / min(3, n_lags)  # a short low-pass over the latest frames to start from
        self.temporal = nn.Parameter(kernel)
        self.bias = nn.Parameter(torch.zeros(c1))

    def forward(self, clips: Tensor) -> Tensor:
        Fr, B = clips.shape[:2]
        x = clips.reshape(Fr * B, 1, *clips.shape[2:])
        x = torch.cat([x.clamp(min=0), (-x).clamp(min=0)], dim=1)
        y = self.conv1(F.avg_pool2d(x, self.pool))
        return _causal_conv(y.view(Fr, B, *y.shape[1:]), self.temporal) + self.bias[:, None, None]


class ClipSNN(SpikingLayers, _ClipBase):
    """Spiking model on clips: NSNN (``config.noisy``) or DSNN (module docstring).

    Shape
    -----
    clips : Tensor [F, B, H, W]
    output : Tensor [T, K, B, n_cells] -- spike counts per bin (0 .. ``output_substeps``), or
    their mean over a cell's units (``readout_units > 1``)
    """

    def __init__(self, config: RFConfig, n_lags: int, rfs=None, generator: torch.Generator | None = None):
        super().__init__(config, n_lags, rfs)
        c1, c2 = config.channels
        k2 = config.kernel_sizes[1]
        self.core = _ClipCore(config, n_lags)
        self.conv2 = SpikeConv2d(c1, c2, k2, padding=k2 // 2)  # its input is spikes
        centres, cov = _core_geometry(config, rfs)
        s = config.core_size
        self.readout = GaussianReadout(centres, cov, (s, s), c2)
        self.neurons = nn.ModuleList([self._neuron(generator, "core"), self._neuron(generator, "core"),
                                      self._neuron(generator, "output", config.n_cells * config.readout_units)])
        self._register_unit_offsets()

    def layer_current(self, i: int, x: Tensor, n_trials: int, linear: Tensor | None = None) -> Tensor:
        """Input current of spiking layer ``i`` (``[T, K*B, ...]``); ``x`` is the core drive or the previous spikes."""
        if i == 0:
            T, B = x.shape[:2]
            return x.unsqueeze(1).expand(T, n_trials, *x.shape[1:]).reshape(T, n_trials * B, *x.shape[2:])
        if i == 1:
            y = self.conv2(x.flatten(0, 1))
            return y.view(x.shape[0], -1, *y.shape[1:])
        T, B = linear.shape[:2]
        core = self.readout(x).view(T, n_trials, B, -1)
        return self._units(linear[:, None] + core).reshape(T, n_trials * B, -1)

    def forward(self, clips: Tensor, n_trials: int = 1, *, return_all: bool = False,
                return_probability: bool = False):
        """Sample ``n_trials`` responses per clip; see :meth:`neurocode.models.RetinaRFSNN.forward`."""
        self.check_clips(clips)
        linear = self.linear_drive(clips)
        return self._spiking_forward(self.core(clips), n_trials, linear.shape[1], linear, return_all,
                                     return_probability)


@torch.no_grad()
def calibrate_clip_snn(model: ClipSNN, clips: Tensor, hidden_rate: float = 0.1, output_rate: Tensor | None = None,
                       n_trials: int = 2, iterations: int = 16) -> list[float]:
    """Bisect biases so the core layers fire at ``hidden_rate`` and each cell at ``output_rate [n_cells]`` (per bin)."""
    x = model.core(clips)
    rates = []
    for i, (neuron, bias) in enumerate(zip(model.neurons[:2], (model.core.bias, model.conv2.bias))):
        current = model.layer_current(i, x, n_trials)
        shift = bisect_shift(lambda s: neuron(current + s).mean(), hidden_rate, iterations=iterations)
        bias += shift
        x = neuron(current + shift)
        rates.append(float(x.mean()))
    cfg = model.config
    linear = model.linear_drive(clips) - model.bias
    T, B = linear.shape[:2]
    base = model._units(model.readout(x).view(T, n_trials, B, -1) + linear[:, None])
    target = torch.full((cfg.n_cells,), 0.05) if output_rate is None else output_rate
    units = cfg.readout_units

    def cell_rates(bias):
        cur = (base + bias.repeat_interleave(units)).reshape(T, n_trials * B, -1)
        return model._run_output(cur)[0].view(T, -1, cfg.n_cells, units).mean((0, 1, 3))

    model.bias.copy_(bisect_shift(cell_rates, target.to(base), like=model.bias, iterations=iterations))
    rates.append(float(cell_rates(model.bias).mean()))
    return rates


class ClipCNN(_ClipBase):
    """Rate model on clips: the core with ReLU units, the linear pathway, parameterised softplus.

    ``rate_n(t) = PSoftplus(a_n + g_n · x_n(t) + Σ_c w_nc (G_n * h_c)(t))`` with ``h`` the core's
    second ReLU layer.

    Shape
    -----
    clips : Tensor [F, B, H, W]; output : Tensor [T, B, n_cells] rates (expected spikes per bin)
    """

    def __init__(self, config: RFConfig, n_lags: int, rfs=None):
        super().__init__(config, n_lags, rfs)
        c1, c2 = config.channels
        k2 = config.kernel_sizes[1]
        self.core = _ClipCore(config, n_lags)
        self.head = nn.Sequential(nn.BatchNorm2d(c1), nn.ReLU(), nn.Conv2d(c1, c2, k2, padding=k2 // 2, bias=False),
                                  nn.BatchNorm2d(c2), nn.ReLU())
        centres, cov = _core_geometry(config, rfs)
        s = config.core_size
        self.readout = GaussianReadout(centres, cov, (s, s), c2)
        self.output = PSoftplus(config.n_cells)

    def forward(self, clips: Tensor) -> Tensor:
        self.check_clips(clips)
        linear = self.linear_drive(clips)
        h = self.core(clips)
        T, B = h.shape[:2]
        g = self.readout(self.head(h.flatten(0, 1))).view(T, B, -1)
        return self.output(linear + g)

    @torch.no_grad()
    def initialise_rates(self, rate: Tensor) -> None:
        """Start at the training mean rate ``[n_cells]`` (expected spikes per bin)."""
        p = rate.clamp(min=1e-3)
        self.bias.copy_(p + torch.log(-torch.expm1(-p)))
