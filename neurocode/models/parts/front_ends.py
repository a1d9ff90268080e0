"""Front-end parts: how a stimulus type enters a retina model.

A front end gives the core its input (``drive``) and every cell its linear-nonlinear pathway
(``linear``, ``[T, B, n_cells]``, the LN reference's drive and the other models' start), and
owns the bias that sets each cell's mean rate (``output_bias``) and the one that sets the first
core layer's (``drive_bias``). Registered in :data:`FRONT_ENDS`:

``flash``
    A static image ``[B, 1, S, S]``: ON/OFF contrast, area-pooled by ``core_pool``, conv1
    (optionally BatchNorm), and a learnt temporal profile per channel (``gain[t, c] x + offset[t, c]``;
    space-time separable, as a flash has no time axis of its own) for a time-resolved core,
    ``[T, B, c1, s, s]``; without it the drive is static, ``[B, c1, s, s]``. The linear pathway:
    six RF features per cell (:class:`~neurocode.models.readout.RFFeatures`) with temporal profiles
    and a time bias, ``a_n(t) + sum_k b_nk(t) f_nk``. The paper's networks take the grey levels
    (``on_off=False``) through a 'valid' strided conv1 and have no RF pathway (``rf_features=False``).
``clips``
    Clips on the bin grid ``[F, B, S, S]`` (time-major, the first ``n_lags - 1`` frames history):
    conv1 on every pooled ON/OFF frame, a causal temporal kernel of ``n_lags`` per channel and a
    bias, ``[T, B, c1, s, s]``. The linear pathway: per cell a space-time separable filter
    (:class:`SpatioTemporalFilter`), ``a_n + g_n x_n(t)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocode.models.readout import RF_FEATURE_NAMES, RFFeatures, on_off

__all__ = ["FlashFrontEnd", "ClipFrontEnd", "SpatioTemporalFilter", "spike_triggered_average", "rf_support",
           "rf_geometry", "FRONT_ENDS"]

N_FEATURES = len(RF_FEATURE_NAMES)


def rf_geometry(rfs, n_cells: int, input_size: int, core_size: int, surround_scale: float):
    """Centre and surround masks ``[n_cells, S, S]`` on the input grid, and RF centres ``[n_cells, 2]`` and
    covariances ``[n_cells, 2, 2]`` on the core's ``core_size`` grid.

    ``rfs`` None gives placeholders (one broad window at the centre) for a model whose buffers and
    parameters are then loaded from a checkpoint.
    """
    S = input_size
    if rfs is None:
        from neurocode.data.receptive_fields import ReceptiveFields

        rfs = ReceptiveFields(centres=np.full((n_cells, 2), S / 2.0),
                              covariances=np.tile(np.eye(2) * (S / 4.0) ** 2, (n_cells, 1, 1)), image_shape=(S, S),
                              source="fallback", method="placeholder (weights from a checkpoint)")
    if rfs.n_cells != n_cells:
        raise ValueError(f"receptive fields are given for {rfs.n_cells} cells, the model has n_cells={n_cells}")
    core = rfs.scaled((core_size, core_size))
    return rfs.masks((S, S)), rfs.masks((S, S), scale=surround_scale), core.centres, core.covariances


def _causal_conv(x: Tensor, kernel: Tensor) -> Tensor:
    """``y[t] = sum_l kernel[c, l] x[t + L - 1 - l]`` per channel: ``x [F, B, C, ...]`` -> ``[F - L + 1, B, C, ...]``."""
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
        ``sum (r - mean r) frame[t - l]`` over clips and bins, divided by the number of bins
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
    """float32 ``[n_cells, H, W]`` of {0, 1}: pixels within ``radius`` RF sigma of each centre (or ``min_px`` px)."""
    r = rfs.scaled(frame_shape)
    h, w = frame_shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    d = np.stack([xx[None] - r.centres[:, 0, None, None], yy[None] - r.centres[:, 1, None, None]], -1)
    q = np.einsum("nhwi,nij,nhwj->nhw", d, np.linalg.inv(r.covariances), d)
    return ((q <= radius**2) | ((d**2).sum(-1) <= min_px**2)).astype(np.float32)


class SpatioTemporalFilter(nn.Module):
    """Per-cell space-time separable linear filter: a spatial map ``[H, W]`` and a causal temporal
    kernel of ``L`` lags, initialised from the spike-triggered average (rank 1).

    The spatial map is confined to a support around the cell's RF (:func:`rf_support`, 3 sigma):
    a white-noise STA over the whole frame is mostly pixel noise, and a ganglion cell's filter is local.

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


class FlashFrontEnd(nn.Module):
    """A flashed image (module docstring).

    Parameters
    ----------
    n_cells, n_steps : int
        Cells and time bins T.
    input_size, core_pool : int
        Image side S; the core's maps are ``s = S // core_pool`` wide.
    rfs : ReceptiveFields or None
        The cells' RFs (None: placeholders, for loading a checkpoint).
    channels, kernel_size : int or None
        conv1's output channels and (odd) kernel side; None: no core (the LN reference).
    surround_scale : float
        Radius of the surround Gaussian in RF sigmas.
    conv_bias, norm, temporal_profile : bool
        conv1's bias, a BatchNorm after it, and the learnt temporal profile (a time-resolved core).
    learn_profile : bool
        The temporal profile is trained (False: it stays flat; calibration still sets its offset).
    on_off, rf_features : bool
        ON/OFF channels (else the grey levels) and the RF pathway (else none: ``linear`` is None).
    stride, same_padding : int, bool
        conv1's stride and padding ('same', else 'valid').
    """

    def __init__(self, n_cells: int, n_steps: int, input_size: int, core_pool: int, rfs=None, *,
                 channels: int | None = None, kernel_size: int | None = None, surround_scale: float = 2.0,
                 conv_bias: bool = True, norm: bool = False, temporal_profile: bool = True, learn_profile: bool = True,
                 on_off: bool = True, rf_features: bool = True, stride: int = 1, same_padding: bool = True):
        super().__init__()
        self.input_size, self.core_pool, self.on_off = int(input_size), int(core_pool), bool(on_off)
        if rf_features:
            centre, surround, _, _ = rf_geometry(rfs, n_cells, input_size, input_size // core_pool, surround_scale)
            self.features = RFFeatures(centre, surround)
            self.time_bias = nn.Parameter(torch.zeros(n_steps, n_cells))
            self.feature_weights = nn.Parameter(torch.zeros(n_steps, n_cells, N_FEATURES))
        if channels is not None:
            self.conv1 = nn.Conv2d(2 if on_off else 1, channels, kernel_size, stride=stride,
                                   padding=kernel_size // 2 if same_padding else 0, bias=conv_bias)
            self.norm = nn.BatchNorm2d(channels) if norm else nn.Identity()
            if temporal_profile:
                self.gain = nn.Parameter(torch.ones(n_steps, channels), requires_grad=learn_profile)
                self.offset = nn.Parameter(torch.zeros(n_steps, channels), requires_grad=learn_profile)

    def check(self, images: Tensor) -> None:
        S = self.input_size
        if images.dim() != 4 or images.shape[1] != 1 or images.shape[2:] != (S, S):
            raise ValueError(f"images must be [B, 1, {S}, {S}], got {tuple(images.shape)}")

    @staticmethod
    def check_stimuli(shape: tuple[int, ...], n_lags: int) -> None:
        """ValueError unless new stimuli of ``shape`` are flashed frames ``[n, H, W]``."""
        if len(shape) != 3 or min(shape, default=0) < 1:
            raise ValueError(f"stimuli must be flashed frames [n, H, W] for this model, got shape {shape}")

    @staticmethod
    def stored(frames: Tensor) -> Tensor:
        """Prepared frames ``[n, S, S]`` as a fit stores its stimuli, ``[n, 1, S, S]``."""
        return frames[:, None]

    @staticmethod
    def batch(stimuli: Tensor) -> Tensor:
        """Stored stimuli ``[B, 1, S, S]`` as the model's input (the same)."""
        return stimuli

    @property
    def output_bias(self) -> nn.Parameter:
        """Each cell's bias per bin ``a[t, n]``."""
        return self.time_bias

    @property
    def drive_bias(self) -> nn.Parameter:
        """The temporal profile's offset ``[T, c1]``: shifts the first core layer's current."""
        return self.offset

    def prepare(self, images: Tensor) -> None:
        """Fit the RF features' z-scoring to the training images ``[n, 1, S, S]``."""
        if hasattr(self, "features"):
            self.features.fit_normalization(images)

    def drive(self, images: Tensor) -> Tensor:
        """The core's input: ``[T, B, c1, s, s]`` with a temporal profile, else ``[B, c1, s, s]``."""
        x = on_off(images) if self.on_off else images
        x = self.norm(self.conv1(F.avg_pool2d(x, self.core_pool) if self.core_pool > 1 else x))
        if not hasattr(self, "gain"):
            return x
        return torch.addcmul(self.offset[:, None, :, None, None], self.gain[:, None, :, None, None], x[None])

    def linear(self, images: Tensor) -> Tensor | None:
        """The LN pathway ``[T, B, n_cells]`` (None without RF features)."""
        if not hasattr(self, "features"):
            return None
        f = self.features(images)  # [B, N, 6]
        return self.time_bias[:, None] + torch.einsum("tuk,buk->tbu", self.feature_weights, f)

    def base_current(self, core: Tensor, linear: Tensor) -> Tensor:
        """A cell's current ``[T, K, B, N]`` without its output bias (for calibrating that bias)."""
        return core + linear[:, None] - self.time_bias[:, None, None]

    @torch.no_grad()
    def fit_ridge(self, images: Tensor, psth: Tensor, ridge: float) -> None:
        """The LN pathway by least squares with an L2 penalty on the feature weights (not the time bias).

        Parameters
        ----------
        images : Tensor [n, 1, H, W]
            Training images (also set the feature normalisation).
        psth : Tensor [n, T, n_cells]
            Trial-averaged spike counts per bin.
        ridge : float
            Penalty lambda >= 0 on the z-scored features' weights.
        """
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {ridge!r}")
        self.features.fit_normalization(images)
        f = self.features(images).double()  # [n, N, 6]
        n = f.shape[0]
        X = torch.cat([torch.ones(f.shape[1], n, 1, dtype=f.dtype, device=f.device), f.transpose(0, 1)], dim=2)
        # the features are linearly dependent (ON - OFF = linear contrast): a tiny floor on the
        # penalty keeps the system solvable at ridge = 0 (minimum-norm-like solution)
        reg = torch.eye(N_FEATURES + 1, dtype=f.dtype, device=f.device) * max(ridge, 1e-8 * n)
        reg[0, 0] = 0
        A = X.transpose(1, 2) @ X + reg  # [N, 7, 7]
        Y = psth.to(f).permute(2, 0, 1)  # [N, n, T]
        W = torch.linalg.solve(A, X.transpose(1, 2) @ Y)  # [N, 7, T]
        self.time_bias.copy_(W[:, 0].T.float())
        self.feature_weights.copy_(W[:, 1:].permute(2, 0, 1).float())


class ClipFrontEnd(nn.Module):
    """Clips on the bin grid (module docstring).

    Parameters
    ----------
    n_cells, input_size, core_pool : int
    n_lags : int
        Frames of the temporal kernels (``F - T + 1``).
    rfs : ReceptiveFields or None
        Confine each cell's spatial filter to its RF (None: the whole frame).
    channels, kernel_size : int or None
        conv1; None: no core (the LN reference).
    filter_gain : float
        The linear filter's starting gain (it is scaled to unit SD on the training clips).
    """

    def __init__(self, n_cells: int, n_steps: int, input_size: int, core_pool: int, rfs=None, *, n_lags: int,
                 channels: int | None = None, kernel_size: int | None = None, filter_gain: float = 1.0):
        super().__init__()
        S = self.input_size = int(input_size)
        self.core_pool, self.n_lags = int(core_pool), int(n_lags)
        support = None if rfs is None else rf_support(rfs, (S, S))
        self.filter = SpatioTemporalFilter(n_cells, (S, S), n_lags, support)
        self.cell_bias = nn.Parameter(torch.zeros(n_cells))
        self.filter_gain = nn.Parameter(torch.full((n_cells,), float(filter_gain)))
        if channels is not None:
            self.conv1 = nn.Conv2d(2, channels, kernel_size, padding=kernel_size // 2, bias=False)
            kernel = torch.zeros(channels, n_lags)
            kernel[:, : min(3, n_lags)] = 1.0 / min(3, n_lags)  # a short low-pass over the latest frames to start from
            self.temporal = nn.Parameter(kernel)
            self.bias = nn.Parameter(torch.zeros(channels))

    def check(self, clips: Tensor) -> None:
        S = self.input_size
        if clips.dim() != 4 or clips.shape[2:] != (S, S) or clips.shape[0] < self.n_lags:
            raise ValueError(f"clips must be [F >= {self.n_lags}, B, {S}, {S}] (time-major), got {tuple(clips.shape)}")

    @staticmethod
    def check_stimuli(shape: tuple[int, ...], n_lags: int) -> None:
        """ValueError unless new stimuli of ``shape`` are clips ``[n, F >= n_lags, H, W]``."""
        if len(shape) != 4 or min(shape, default=0) < 1:
            raise ValueError(f"stimuli must be clips [n, F >= {n_lags}, H, W] for this model, got shape {shape}")
        if shape[1] < n_lags:
            raise ValueError(f"clips need at least {n_lags} frames (the temporal filter's length), got {shape[1]}")

    @staticmethod
    def stored(clips: Tensor) -> Tensor:
        """Prepared clips ``[n, F, S, S]`` as a fit stores its stimuli (the same)."""
        return clips

    @staticmethod
    def batch(stimuli: Tensor) -> Tensor:
        """Stored clips ``[B, F, S, S]`` as the model's time-major input ``[F, B, S, S]``."""
        return stimuli.transpose(0, 1)

    @property
    def output_bias(self) -> nn.Parameter:
        """Each cell's bias ``a[n]`` (every bin)."""
        return self.cell_bias

    @property
    def drive_bias(self) -> nn.Parameter:
        """The core input's bias ``[c1]``."""
        return self.bias

    def prepare(self, clips: Tensor) -> None:
        """Nothing to fit on the training stimuli before calibration (the filter starts from the LN reference)."""

    def drive(self, clips: Tensor) -> Tensor:
        """conv1 on pooled ON/OFF frames, the temporal kernel per channel, the bias: ``[T, B, c1, s, s]``."""
        Fr, B = clips.shape[:2]
        x = clips.reshape(Fr * B, 1, *clips.shape[2:])
        x = torch.cat([x.clamp(min=0), (-x).clamp(min=0)], dim=1)
        y = self.conv1(F.avg_pool2d(x, self.core_pool))
        return _causal_conv(y.view(Fr, B, *y.shape[1:]), self.temporal) + self.bias[:, None, None]

    def linear(self, clips: Tensor) -> Tensor:
        """The LN pathway ``[T, B, n_cells]``."""
        return self.cell_bias + self.filter_gain * self.filter(clips)

    def base_current(self, core: Tensor, linear: Tensor) -> Tensor:
        """A cell's current ``[T, K, B, N]`` without its output bias (for calibrating that bias)."""
        return core + (linear - self.cell_bias)[:, None]


#: Front ends by stimulus type.
FRONT_ENDS = {"flash": FlashFrontEnd, "clips": ClipFrontEnd}
