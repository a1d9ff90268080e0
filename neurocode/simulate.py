"""In-silico recordings: stimuli, a ground-truth LNP model, Poisson spikes, recordings.

For model-recovery checks and experiment design: simulate a population whose true response
is known, fit a model to it, and compare. Everything is numpy/scipy (no torch).

Stimuli (all uint8 ``[n, H, W]`` on the grey-level scale 0..255, grey = 127.5):

* :func:`white_noise` -- binary checkerboard (0 or 255, p = 1/2 per pixel and frame);
* :func:`gratings` -- drifting sinusoidal gratings;
* :func:`natural_movie` -- Gaussian noise smoothed in space and time;
* :func:`flashes` -- spatially smoothed noise images, to be flashed.

Ground truth: :class:`LNPoisson`, a linear-nonlinear-Poisson cascade per cell with a
difference-of-Gaussians spatial filter (from a :class:`~neurocode.data.ReceptiveFields`), a
biphasic temporal filter and a softplus nonlinearity. The stimulus enters as contrast
``z = (x - 127.5) / 127.5`` in ``[-1, 1]``.

Recordings:

* :func:`simulate_flashes` -- a :class:`~neurocode.data.Recording` of flashed images;
* :func:`simulate_continuous` / :func:`white_noise_experiment` -- a
  :class:`~neurocode.data.ContinuousRecording` with a repeated segment, plus the exact
  expected rates (:class:`SimulationTruth`), and :func:`truth_rate_cc`, the ground-truth
  model's own correlation with the repeats' PSTH (the ceiling a fitted model can reach);
* :func:`simulate_from_rates` / :func:`recording_from_spikes` -- digital twins: a
  recording from any model's predicted rates or sampled spikes.

Time conventions. A simulation grid has bins of ``dt`` s; bin ``i`` covers
``[t0 + i·dt, t0 + (i+1)·dt)`` and rates are *expected spikes per bin* (``rate_Hz · dt``). The
linear stage is a continuous-time convolution of a piecewise-constant stimulus evaluated at
the bin centres, so rates do not depend on the grid beyond its sampling. Poisson spikes are
placed uniformly inside their bin (never within ``1e-6`` bins of an edge), so binning a
simulated recording with the simulation grid (:mod:`neurocode.data.binning`) gives back the
sampled counts exactly.

Examples
--------
>>> rec, truth, model = white_noise_experiment(n_cells=4, minutes=1.0, n_repeats=5)
>>> rec.n_cells, rec.n_repeats
(4, 5)
>>> cc = truth_rate_cc(rec, truth, bin_size=truth.dt)  # per-cell Pearson r, ~0.7-0.95
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from neurocode.data.binning import n_bins
from neurocode.data.continuous import ContinuousRecording
from neurocode.data.receptive_fields import ReceptiveFields
from neurocode.data.recording import Recording

__all__ = [
    "white_noise",
    "gratings",
    "natural_movie",
    "flashes",
    "LNPoisson",
    "SimulationTruth",
    "poisson_spike_times",
    "simulate_flashes",
    "simulate_continuous",
    "white_noise_experiment",
    "truth_rate_cc",
    "simulate_from_rates",
    "recording_from_spikes",
]

#: Spikes are placed in ``[EDGE, 1 - EDGE]`` of their bin so that re-binning is exact.
_EDGE = 1e-6
#: Resolution (s) of the grid on which the continuous temporal kernel is integrated.
_FINE_DT = 1e-4
#: Frames projected onto the spatial filters per chunk (bounds memory).
_CHUNK = 4096


# ====================================================================== stimuli
def _shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W) positive integers, got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"shape must be (H, W) positive integers, got {shape!r}")
    return h, w


def _count(n: Any, what: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or int(n) != n or int(n) < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _to_uint8(z: np.ndarray) -> np.ndarray:
    """Standardised values (mean 0, std 1) -> uint8, ±3 SD mapped to 0..255 (clipped)."""
    out = np.multiply(z, 127.5 / 3.0, dtype=np.float32)
    out += 127.5
    np.clip(out, 0.0, 255.0, out=out)
    return np.rint(out, out=out).astype(np.uint8)


def white_noise(n_frames: int, shape: Sequence[int] = (40, 40), seed: int = 0) -> np.ndarray:
    """Binary white-noise checkerboard.

    Parameters
    ----------
    n_frames : int
    shape : (H, W)
        Pixels (checks) per frame.
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    frames : np.ndarray
        uint8 ``[n_frames, H, W]``: every pixel 0 or 255 with probability 1/2, independently
        per pixel and frame (contrast ``z = ±1``).
    """
    n_frames = _count(n_frames, "n_frames")
    h, w = _shape(shape)
    frames = np.random.default_rng(seed).integers(0, 2, size=(n_frames, h, w), dtype=np.uint8)
    frames *= 255
    return frames


def gratings(n_frames: int, shape: Sequence[int] = (600, 600), period_px: float = 100.0,
             frame_rate: float = 30.0, speed_hz: float = 2.0,
             orientation_deg: float | Sequence[float] = 0.0, contrast: float = 1.0,
             block_seconds: float = 2.0) -> np.ndarray:
    """Drifting sinusoidal grating(s).

    Frame ``i`` (time ``t = i / frame_rate``) at pixel centre ``(x, y) = (j + 0.5, i + 0.5)``
    is ``127.5 · (1 + contrast · sin(2π (u / period_px - speed_hz · t)))`` rounded to uint8,
    with ``u = x cos θ + y sin θ``: the bars drift along the direction ``θ`` (0° = rightwards,
    90° = downwards, since rows grow downwards) at ``speed_hz`` cycles per second.

    Parameters
    ----------
    n_frames : int
    shape : (H, W)
    period_px : float
        Spatial period in px.
    frame_rate : float
        Frames per s.
    speed_hz : float
        Temporal frequency in cycles/s (negative: drifts the other way).
    orientation_deg : float or sequence of float
        Drift direction θ in degrees; a sequence cycles through the directions in blocks of
        ``block_seconds`` (the phase restarts at 0 with each block).
    contrast : float
        Michelson contrast in ``[0, 1]``.
    block_seconds : float
        Duration of one orientation block in s (only with several orientations).

    Returns
    -------
    frames : np.ndarray
        uint8 ``[n_frames, H, W]``.
    """
    n_frames = _count(n_frames, "n_frames")
    h, w = _shape(shape)
    if not 0.0 <= float(contrast) <= 1.0:
        raise ValueError(f"contrast must be in [0, 1], got {contrast}")
    if not (float(period_px) > 0 and float(frame_rate) > 0):
        raise ValueError("period_px and frame_rate must be positive")
    oris = np.atleast_1d(np.asarray(orientation_deg, dtype=np.float64))
    if oris.ndim != 1 or oris.size == 0:
        raise ValueError(f"orientation_deg must be a number or a non-empty sequence, got {orientation_deg!r}")
    block = max(1, int(round(float(block_seconds) * float(frame_rate)))) if oris.size > 1 else n_frames
    x = (np.arange(w) + 0.5)[None, :]
    y = (np.arange(h) + 0.5)[:, None]
    out = np.empty((n_frames, h, w), dtype=np.uint8)
    for i in range(n_frames):
        theta = math.radians(oris[(i // block) % oris.size])
        t = (i % block) / float(frame_rate) if oris.size > 1 else i / float(frame_rate)
        u = x * math.cos(theta) + y * math.sin(theta)
        v = 127.5 * (1.0 + float(contrast) * np.sin(2.0 * np.pi * (u / float(period_px) - float(speed_hz) * t)))
        out[i] = np.clip(np.rint(v), 0, 255)
    return out


def natural_movie(n_frames: int, shape: Sequence[int] = (90, 90), seed: int = 0,
                  correlation_px: float = 6.0, correlation_frames: float = 5.0) -> np.ndarray:
    """A naturalistic movie: Gaussian white noise smoothed in space and time.

    The noise is filtered with :func:`scipy.ndimage.gaussian_filter` (σ = ``correlation_frames``
    frames in time, ``correlation_px`` px in space), standardised over the whole movie and
    mapped to grey levels with ±3 SD → 0..255 (RMS contrast ≈ 1/3; values beyond 3 SD are
    clipped).

    Parameters
    ----------
    n_frames : int
    shape : (H, W)
    seed : int
    correlation_px, correlation_frames : float
        Gaussian smoothing σ in px and frames (0: no smoothing along those axes).

    Returns
    -------
    frames : np.ndarray
        uint8 ``[n_frames, H, W]``.
    """
    from scipy.ndimage import gaussian_filter

    n_frames = _count(n_frames, "n_frames")
    h, w = _shape(shape)
    noise = np.random.default_rng(seed).standard_normal((n_frames, h, w), dtype=np.float32)
    sm = gaussian_filter(noise, sigma=(float(correlation_frames), float(correlation_px), float(correlation_px)),
                         mode=("reflect", "wrap", "wrap"))
    del noise
    return _to_uint8(_standardised(sm, axis=None))


def flashes(n_images: int, shape: Sequence[int] = (64, 64), seed: int = 0,
            correlation_px: float = 4.0) -> np.ndarray:
    """Images for flashing: spatially smoothed Gaussian noise, one independent image each.

    Each image is white noise smoothed with a Gaussian of σ = ``correlation_px`` px,
    standardised on its own and mapped to grey levels with ±3 SD → 0..255 (RMS contrast ≈ 1/3).

    Parameters
    ----------
    n_images : int
    shape : (H, W)
    seed : int
    correlation_px : float
        Smoothing σ in px.

    Returns
    -------
    images : np.ndarray
        uint8 ``[n_images, H, W]``.
    """
    from scipy.ndimage import gaussian_filter

    n_images = _count(n_images, "n_images")
    h, w = _shape(shape)
    noise = np.random.default_rng(seed).standard_normal((n_images, h, w))
    sm = gaussian_filter(noise, sigma=(0.0, float(correlation_px), float(correlation_px)), mode="wrap")
    return _to_uint8(_standardised(sm, axis=(1, 2)))


def _standardised(x: np.ndarray, axis) -> np.ndarray:
    """``x`` z-scored in place over ``axis`` (None: all of it); a constant stays 0."""
    x -= x.mean(axis=axis, keepdims=True, dtype=np.float64).astype(x.dtype)
    sd = x.std(axis=axis, keepdims=True, dtype=np.float64)
    x /= np.where(sd > 0, sd, 1.0).astype(x.dtype)
    return x


def _contrast(frames: np.ndarray) -> np.ndarray:
    """Grey levels (uint8 or float on 0..255) -> float64 contrast ``(x - 127.5) / 127.5``."""
    return (np.asarray(frames, dtype=np.float64) - 127.5) / 127.5


# ====================================================================== model
def _softplus(u: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, u)


def _cell_array(value: Any, n: int, name: str, positive: bool = False) -> np.ndarray:
    arr = np.array(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be a finite number or float [n_cells={n}], got shape {arr.shape}")
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be positive, got {arr.tolist()}")
    arr.setflags(write=False)
    return arr


@dataclass(eq=False)
class LNPoisson:
    """Linear-nonlinear-Poisson ground-truth model, one independent cascade per cell.

    For stimulus contrast ``z(t, y, x) = (grey level - 127.5) / 127.5``, cell ``c`` fires as an
    inhomogeneous Poisson process with rate (Hz)::

        r_c(t) = gain_c · softplus(slope_c · g_c(t) + offset_c),
        g_c(t) = ∫ k_c(τ) Σ_px S_c(px) z(t - τ, px) dτ

    * Spatial filter ``S_c`` (:meth:`spatial_filters`): polarity_c × (centre Gaussian −
      ``surround_weight`` × Gaussian ``surround_scale`` times wider), the Gaussians being the
      normalised :meth:`ReceptiveFields.masks`; scaled to unit L2 norm on ``rfs.image_shape``
      (on another grid, scaled so that the same picture at another resolution gives the same
      drive). Under binary white noise, ``Σ S z`` then has unit variance per frame.
    * Temporal filter ``k_c`` (s⁻¹): ``k(t) = G(t - latency; τ₁) − biphasic · G(t - latency; τ₂)``
      with ``G(t; τ) = (t/τ)³ exp(-3 (t/τ - 1))`` (peak 1 at ``t = τ``), zero for ``t <
      latency`` and cut at ``filter_duration``; scaled so that ``∫ k² dt = 1 / ref_dt``, i.e. the
      per-bin weights on a ``ref_dt`` grid have (almost exactly) unit L2 norm. The positive
      lobe peaks around 60-100 ms, the negative one later.
    * Nonlinearity: softplus with per-cell ``gain`` (Hz), ``slope`` and ``offset``; the
      defaults of :meth:`random` give ~10 Hz mean rate under 40×40 binary white noise at
      30 Hz (~6 Hz at grey), the rate spanning ~0.5-30 Hz (5-95 %); the positive temporal lobe
      peaks at ~75 ms, the negative one (40 % as high) at ~140 ms.

    Parameters
    ----------
    rfs : ReceptiveFields
        Centre Gaussians (px of ``rfs.image_shape``); ``n_cells = rfs.n_cells``.
    polarity : np.ndarray
        float64 ``[n_cells]``: +1 ON, -1 OFF.
    tau1, tau2 : np.ndarray
        float64 ``[n_cells]``: peak times (s, after ``latency``) of the positive and negative
        temporal lobes.
    biphasic : np.ndarray
        float64 ``[n_cells]``: amplitude of the negative lobe relative to the positive one.
    gain : np.ndarray
        float64 ``[n_cells]``: rate scale in Hz.
    slope, offset : np.ndarray
        float64 ``[n_cells]``: the softplus acts on ``slope · g + offset``.
    surround_weight : float
        Weight of the (normalised) surround Gaussian relative to the centre's.
    surround_scale : float
        Surround radius / centre radius.
    latency : float
        Pure delay of the temporal filter in s.
    filter_duration : float
        Support of the temporal filter in s.
    ref_dt : float
        Time step (s) on which the temporal weights have unit L2 norm (default 1/30 s).

    Scalars are broadcast to ``[n_cells]``; arrays are made read-only.
    """

    rfs: ReceptiveFields
    polarity: np.ndarray
    tau1: np.ndarray
    tau2: np.ndarray
    biphasic: np.ndarray
    gain: np.ndarray
    slope: np.ndarray
    offset: np.ndarray
    surround_weight: float = 0.5
    surround_scale: float = 2.0
    latency: float = 0.02
    filter_duration: float = 0.5
    ref_dt: float = 1.0 / 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.rfs, ReceptiveFields):
            raise TypeError(f"rfs must be a ReceptiveFields, got {type(self.rfs).__name__}")
        n = self.rfs.n_cells
        self.polarity = _cell_array(self.polarity, n, "polarity")
        if not np.all(np.isin(self.polarity, (-1.0, 1.0))):
            raise ValueError(f"polarity must be +1 (ON) or -1 (OFF), got {self.polarity.tolist()}")
        for name in ("tau1", "tau2", "gain", "slope"):
            setattr(self, name, _cell_array(getattr(self, name), n, name, positive=True))
        self.biphasic = _cell_array(self.biphasic, n, "biphasic")
        self.offset = _cell_array(self.offset, n, "offset")
        for name in ("surround_scale", "filter_duration", "ref_dt"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v}")
            setattr(self, name, v)
        for name in ("surround_weight", "latency"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {v}")
            setattr(self, name, v)
        if self.latency >= self.filter_duration:
            raise ValueError(f"latency ({self.latency} s) must be shorter than filter_duration "
                             f"({self.filter_duration} s)")

    # ------------------------------------------------------------------ construction
    @classmethod
    def random(cls, n_cells: int, shape: Sequence[int] = (40, 40), seed: int = 0, rf_sigma_px: float = 2.5,
               *, on_fraction: float = 0.5, jitter: float = 0.1, surround_weight: float = 0.5,
               surround_scale: float = 2.0, gain_hz: float = 20.0, slope: float = 1.5, offset: float = -1.0,
               tau1: float = 0.06, tau2: float = 0.12, biphasic: float = 0.4, latency: float = 0.02,
               filter_duration: float = 0.5) -> "LNPoisson":
        """A random population of ``n_cells`` cells on images of ``shape``.

        RF centres are uniform over the image at least ``min(3·rf_sigma_px, min(H, W)/4)`` px
        from the borders; RFs are slightly elliptic (each radius ``rf_sigma_px · (1 + jitter
        · N(0, 1))``, random orientation); polarity is ON with probability ``on_fraction``.
        The temporal and nonlinearity parameters are the given values times ``(1 + jitter ·
        N(0, 1))`` per cell (the offset: plus ``jitter · N(0, 1)``), clipped to stay positive.

        Parameters
        ----------
        n_cells : int
        shape : (H, W)
            Image grid the RFs refer to (px).
        seed : int
            Seed of :func:`numpy.random.default_rng`.
        rf_sigma_px : float
            Centre Gaussian's 1-σ radius in px.
        on_fraction, jitter, surround_weight, surround_scale, gain_hz, slope, offset, tau1, tau2,
        biphasic, latency, filter_duration
            See the class description (times in s, gain in Hz).

        Returns
        -------
        LNPoisson
        """
        n_cells = _count(n_cells, "n_cells")
        h, w = _shape(shape)
        rng = np.random.default_rng(seed)
        margin = min(3.0 * float(rf_sigma_px), min(h, w) / 4.0)
        cx = rng.uniform(margin, w - margin, n_cells)
        cy = rng.uniform(margin, h - margin, n_cells)
        radii = float(rf_sigma_px) * np.clip(1.0 + jitter * rng.standard_normal((n_cells, 2)), 0.5, 1.5)
        angle = rng.uniform(0.0, np.pi, n_cells)
        rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)],
                       -2)  # [n, 2, 2]
        cov = rot @ (radii[:, :, None] ** 2 * np.eye(2)) @ np.swapaxes(rot, 1, 2)
        cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
        polarity = np.where(rng.random(n_cells) < float(on_fraction), 1.0, -1.0)
        rfs = ReceptiveFields(np.stack([cx, cy], 1), cov, (h, w), source="estimated",
                              method=f"simulated: LNPoisson.random(seed={seed}, rf_sigma_px={rf_sigma_px})",
                              polarity=polarity)

        def jit(v):
            return float(v) * np.clip(1.0 + jitter * rng.standard_normal(n_cells), 0.3, 3.0)

        t1 = jit(tau1)
        t2 = np.maximum(jit(tau2), 1.2 * t1)
        return cls(rfs=rfs, polarity=polarity, tau1=t1, tau2=t2, biphasic=jit(biphasic), gain=jit(gain_hz),
                   slope=jit(slope), offset=float(offset) + jitter * rng.standard_normal(n_cells),
                   surround_weight=surround_weight, surround_scale=surround_scale, latency=latency,
                   filter_duration=filter_duration)

    # ------------------------------------------------------------------ filters
    @property
    def n_cells(self) -> int:
        return self.rfs.n_cells

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the model's native image grid (``rfs.image_shape``)."""
        return self.rfs.image_shape

    def spatial_filters(self, shape: Sequence[int] | None = None) -> np.ndarray:
        """Difference-of-Gaussians spatial filters with polarity.

        Parameters
        ----------
        shape : (H, W), optional
            Grid to evaluate on; default the native :attr:`shape`. On another grid the RFs are
            rescaled (:meth:`ReceptiveFields.scaled`) and the filters have L2 norm
            ``sqrt(H₀W₀ / (HW))`` (``(H₀, W₀)`` the native grid), so an image and its resampled
            copy give the same drive.

        Returns
        -------
        np.ndarray
            float64 ``[n_cells, H, W]`` (per unit contrast).
        """
        shape = self.shape if shape is None else _shape(shape)
        centre = self.rfs.masks(shape).astype(np.float64)
        dog = centre
        if self.surround_weight > 0:
            dog = centre - self.surround_weight * self.rfs.masks(shape, scale=self.surround_scale).astype(np.float64)
        norm = np.sqrt((dog**2).sum(axis=(1, 2), keepdims=True))
        h0, w0 = self.shape
        scale = math.sqrt(h0 * w0 / (shape[0] * shape[1]))
        return dog / norm * scale * self.polarity[:, None, None]

    def kernel(self, t: np.ndarray) -> np.ndarray:
        """The continuous temporal filter ``k_c(t)`` in s⁻¹.

        Parameters
        ----------
        t : np.ndarray
            float ``[n_t]`` times after the stimulus in s.

        Returns
        -------
        np.ndarray
            float64 ``[n_cells, n_t]`` (0 before ``latency`` and from ``filter_duration`` on).
        """
        return self._raw_kernel(np.asarray(t, dtype=np.float64)) * self._norm()[:, None]

    def _raw_kernel(self, t: np.ndarray) -> np.ndarray:
        s = np.clip(t - self.latency, 0.0, None)[None, :]

        def g(tau):
            u = s / tau[:, None]
            return u**3 * np.exp(-3.0 * (u - 1.0))

        k = g(self.tau1) - self.biphasic[:, None] * g(self.tau2)
        return np.where((t[None, :] >= self.latency) & (t[None, :] < self.filter_duration), k, 0.0)

    def _norm(self) -> np.ndarray:
        tf = np.arange(0.0, self.filter_duration, _FINE_DT) + 0.5 * _FINE_DT
        k = self._raw_kernel(tf)
        return 1.0 / np.sqrt((k**2).sum(axis=1) * _FINE_DT * self.ref_dt)

    def step_response(self, t: np.ndarray) -> np.ndarray:
        """``K_c(t) = ∫₀ᵗ k_c(τ) dτ``: the drive after a unit contrast step at ``t = 0``.

        Parameters
        ----------
        t : np.ndarray
            float ``[n_t]`` times in s (``K = 0`` for ``t <= 0``, constant from
            ``filter_duration`` on).

        Returns
        -------
        np.ndarray
            float64 ``[n_cells, n_t]`` (dimensionless).
        """
        grid = np.arange(0.0, self.filter_duration + _FINE_DT, _FINE_DT)
        k = self.kernel(grid)
        cum = np.concatenate([np.zeros((self.n_cells, 1)), np.cumsum(0.5 * (k[:, 1:] + k[:, :-1]), axis=1)],
                             axis=1) * _FINE_DT
        t = np.clip(np.asarray(t, dtype=np.float64), 0.0, grid[-1])
        return np.stack([np.interp(t, grid, cum[c]) for c in range(self.n_cells)])

    def n_lags(self, dt: float) -> int:
        """Bins of ``dt`` s covering the temporal filter: ``ceil(filter_duration / dt) + 1``."""
        return int(math.ceil(self.filter_duration / float(dt) - 1e-9)) + 1

    def temporal_weights(self, n_lags: int, dt: float) -> np.ndarray:
        """Per-bin weights of the temporal filter on a grid of ``dt`` s (the model's own scale).

        ``w[c, l] = K_c((l + ½)·dt) − K_c(max(0, (l − ½)·dt))``: the drive at the centre of bin
        ``i`` is ``Σ_l w[c, l] · s[i − l]`` for a stimulus constant within bins; lag 0 is the
        current bin. On a ``ref_dt`` grid ``‖w_c‖ ≈ 1``; in general ``‖w_c‖ ≈ sqrt(dt / ref_dt)``.

        Returns
        -------
        np.ndarray
            float64 ``[n_cells, n_lags]``.
        """
        n_lags = _count(n_lags, "n_lags")
        dt = float(dt)
        lag = np.arange(n_lags)
        hi = self.step_response((lag + 0.5) * dt)
        lo = self.step_response(np.maximum(0.0, (lag - 0.5) * dt))
        return hi - lo

    def temporal_filter(self, n_lags: int, dt: float) -> np.ndarray:
        """The temporal filters' shape on a grid of ``dt`` s, unit L2 norm per cell.

        Parameters
        ----------
        n_lags : int
            Lags (bins); lag 0 is the current bin. :meth:`n_lags` covers the whole filter.
        dt : float
            Bin width in s.

        Returns
        -------
        np.ndarray
            float64 ``[n_cells, n_lags]``: :meth:`temporal_weights` divided by their L2 norm
            (what a spike-triggered average recovers, up to scale). The spatiotemporal
            filter of cell ``c`` is ``spatial_filters()[c] ⊗ temporal_filter[c]``.
        """
        w = self.temporal_weights(n_lags, dt)
        norm = np.sqrt((w**2).sum(axis=1, keepdims=True))
        return w / np.where(norm > 0, norm, 1.0)

    def peak_time(self) -> np.ndarray:
        """float64 ``[n_cells]``: time (s) of the temporal filter's positive peak."""
        t = np.arange(0.0, self.filter_duration, _FINE_DT)
        return t[np.argmax(self.kernel(t), axis=1)]

    # ------------------------------------------------------------------ rates
    def nonlinearity(self, drive: np.ndarray) -> np.ndarray:
        """Rate in Hz from the linear drive ``[..., n_cells]`` (softplus, per-cell parameters)."""
        return self.gain * _softplus(self.slope * drive + self.offset)

    def project(self, frames: np.ndarray, contrast: bool = False) -> np.ndarray:
        """Spatial stage: ``Σ_px S_c(px) z(px)`` for every frame.

        Parameters
        ----------
        frames : np.ndarray
            ``[n, H, W]``: grey levels 0..255 (uint8 or float), or contrast if ``contrast``.
            ``(H, W)`` may differ from the native grid (see :meth:`spatial_filters`).
        contrast : bool
            Whether ``frames`` already are contrast ``z``.

        Returns
        -------
        np.ndarray
            float64 ``[n, n_cells]``.
        """
        frames = np.asarray(frames)
        if frames.ndim != 3:
            raise ValueError(f"frames must be [n, H, W], got shape {frames.shape}")
        filt = self.spatial_filters(frames.shape[1:]).reshape(self.n_cells, -1).T  # [HW, n]
        out = np.empty((frames.shape[0], self.n_cells))
        for a in range(0, frames.shape[0], _CHUNK):
            out[a: a + _CHUNK] = frames[a: a + _CHUNK].reshape(-1, filt.shape[0]).astype(np.float64) @ filt
        if not contrast:
            out = (out - 127.5 * filt.sum(axis=0)) / 127.5
        return out

    def _temporal(self, proj: np.ndarray, dt: float) -> np.ndarray:
        """Causal convolution of ``proj [T, n_cells]`` with the temporal weights (zero history)."""
        from scipy.signal import fftconvolve

        T = proj.shape[0]
        w = self.temporal_weights(min(self.n_lags(dt), T), dt)  # [n, L]
        if w.shape[1] <= 32:
            out = np.zeros_like(proj)
            for lag in range(w.shape[1]):
                out[lag:] += w[:, lag] * proj[: T - lag]
            return out
        return fftconvolve(proj, w.T, mode="full", axes=0)[:T]

    def rates_from_projection(self, proj: np.ndarray, dt: float) -> np.ndarray:
        """Expected spikes per bin from the spatial projections ``proj [T, n_cells]`` (grid ``dt``)."""
        return self.nonlinearity(self._temporal(np.asarray(proj, dtype=np.float64), dt)) * float(dt)

    def rates_for_clip(self, frames_z: np.ndarray, dt: float) -> np.ndarray:
        """Expected spike counts for a clip of frames on a grid of ``dt`` s.

        Parameters
        ----------
        frames_z : np.ndarray
            float ``[T, H, W]``: stimulus contrast ``z = (x - 127.5) / 127.5`` in each bin
            (frame ``i`` on screen during bin ``i``). Before frame 0 the screen is grey
            (``z = 0``): prepend frames to give history.
        dt : float
            Bin width in s.

        Returns
        -------
        np.ndarray
            float64 ``[T, n_cells]``: expected spikes per bin (``rate_Hz · dt``) at the bin
            centres.
        """
        return self.rates_from_projection(self.project(frames_z, contrast=True), dt)

    def rates_for_flashes(self, images: np.ndarray, window: tuple[float, float] = (0.0, 0.3),
                          dt: float = 0.01) -> np.ndarray:
        """Expected spike counts after flashing images from grey at ``t = 0``.

        The contrast steps from 0 (grey) to the image at ``t = 0`` and stays, so the drive of
        cell ``c`` at time ``t`` is ``(S_c · z) · K_c(t)`` (:meth:`step_response`, which
        includes the latency), evaluated at bin centres.

        Parameters
        ----------
        images : np.ndarray
            ``[n, H, W]`` grey levels (uint8, or float on the 0..255 scale).
        window : (float, float)
            Response window in s relative to the flash (may start before 0: grey there).
        dt : float
            Bin width in s; ``T = floor((t_stop - t_start) / dt)`` bins.

        Returns
        -------
        np.ndarray
            float64 ``[n, T, n_cells]``: expected spikes per bin.
        """
        t0, t1 = (float(v) for v in window)
        T = n_bins(t1 - t0, dt)
        proj = self.project(images)  # [n, c]
        K = self.step_response(t0 + (np.arange(T) + 0.5) * float(dt))  # [c, T]
        drive = proj[:, None, :] * K.T[None, :, :]
        return self.nonlinearity(drive) * float(dt)

    # ------------------------------------------------------------------ misc
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters (for provenance)."""
        d: dict[str, Any] = {"model": "LNPoisson", "receptive_fields": self.rfs.to_dict()}
        for name in ("polarity", "tau1", "tau2", "biphasic", "gain", "slope", "offset"):
            d[name] = np.round(getattr(self, name), 6).tolist()
        for name in ("surround_weight", "surround_scale", "latency", "filter_duration", "ref_dt"):
            d[name] = float(getattr(self, name))
        d["units"] = "times s, gain Hz, RF px of receptive_fields.image_shape; rate = gain*softplus(slope*g + offset)"
        return d

    def __repr__(self) -> str:
        on = int((self.polarity > 0).sum())
        return (f"LNPoisson(n_cells={self.n_cells}, shape={self.shape}, {on} ON / {self.n_cells - on} OFF, "
                f"peak {1e3 * float(np.median(self.peak_time())):.0f} ms, gain {float(np.median(self.gain)):.3g} Hz)")


# ====================================================================== spikes
def _poisson_times(rng: np.random.Generator, lam: np.ndarray, dt: float, t0: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts for ``lam [n_trains, T]`` -> (times sorted within trains, offsets)."""
    counts = rng.poisson(lam)
    return _times_from_counts(rng, counts, dt, t0)


def _times_from_counts(rng: np.random.Generator | None, counts: np.ndarray, dt: float, t0: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``counts [n_trains, T]`` -> spike times (uniform in the bin, or the bin centre if rng is None)."""
    counts = np.asarray(counts, dtype=np.int64)
    n_tr, T = counts.shape
    per_train = counts.sum(axis=1)
    flat = counts.ravel()
    flat_bin = np.repeat(np.arange(flat.size, dtype=np.int64), flat)  # (train, bin) of each spike, ascending
    b = flat_bin % T
    if rng is None:
        u = np.full(b.size, 0.5)
    else:
        u = rng.uniform(_EDGE, 1.0 - _EDGE, b.size)
        u = u[np.argsort(flat_bin + u, kind="stable")]  # sort within bins; bins are already in order
    times = t0 + (b + u) * float(dt)
    off = np.concatenate([[0], np.cumsum(per_train)]).astype(np.int64)
    return times, off


def poisson_spike_times(rates: np.ndarray, dt: float, t_start: float = 0.0, seed: int = 0) -> list[np.ndarray]:
    """Inhomogeneous Poisson spike trains from expected counts per bin.

    Parameters
    ----------
    rates : np.ndarray
        float ``[T, n_cells]``: expected spikes per bin of ``dt`` s (≥ 0).
    dt : float
        Bin width in s.
    t_start : float
        Time of bin 0's left edge in s.
    seed : int or numpy.random.Generator

    Returns
    -------
    list of np.ndarray
        Per cell, float64 spike times in s, sorted; each spike uniform within its bin.
    """
    rates = _check_rates(rates, 2)
    rng = np.random.default_rng(seed)
    times, off = _poisson_times(rng, rates.T, dt, t_start)
    return [times[off[c]: off[c + 1]] for c in range(rates.shape[1])]


def _check_rates(rates: Any, ndim: int) -> np.ndarray:
    r = np.asarray(rates, dtype=np.float64)
    if r.ndim != ndim:
        raise ValueError(f"rates must have {ndim} dimensions, got shape {r.shape}")
    if not np.isfinite(r).all() or (r < 0).any():
        raise ValueError("rates must be finite and >= 0 (expected spikes per bin)")
    return r


# ====================================================================== trial recordings
def _trial_counts(n_trials: Any, trial_counts: Any, n_stim: int) -> np.ndarray:
    if trial_counts is None:
        tc = np.asarray(n_trials)
        if tc.ndim == 0:
            tc = np.full(n_stim, _count(int(tc), "n_trials"))
    else:
        tc = np.asarray(trial_counts)
    if tc.shape != (n_stim,) or not np.issubdtype(tc.dtype, np.integer) or tc.min() < 1:
        raise ValueError(f"trial counts must be integers >= 1 of shape [{n_stim}], got {tc.dtype} {tc.shape}")
    return tc.astype(np.int64)


def _trains_from_rates(rates: np.ndarray, counts: np.ndarray, rng: np.random.Generator, dt: float, t0: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Spike times and offsets in Recording order (stimulus, cell, trial) from ``rates [n, T, c]``."""
    n, T, c = rates.shape
    s_idx = np.repeat(np.arange(n), counts * c)
    c_idx = np.concatenate([np.repeat(np.arange(c), k) for k in counts])
    return _poisson_times(rng, rates[s_idx, :, c_idx], dt, t0)


def simulate_from_rates(rates: np.ndarray, dt: float, n_trials: int | Sequence[int] = 20,
                        stimuli: np.ndarray | None = None, window: tuple[float, float] | None = None,
                        seed: int = 0, *, name: str = "simulated", provenance: dict | None = None,
                        frame_interval: float | None = None, stimulus_start: float | None = None,
                        test_stimuli: Sequence[int] | None = None) -> Recording:
    """A recording of Poisson spikes from any model's predicted rates (a digital twin).

    Parameters
    ----------
    rates : np.ndarray
        float ``[n_stimuli, T, n_cells]``: expected spikes per bin of ``dt`` s (≥ 0), bin 0
        starting at ``window[0]``.
    dt : float
        Bin width in s.
    n_trials : int or sequence of int
        Trials per stimulus (a sequence ``[n_stimuli]`` gives a ragged recording).
    stimuli : np.ndarray, optional
        Frames ``[n_stimuli, H, W]`` or clips ``[n_stimuli, F, H, W]`` (see
        :class:`~neurocode.data.Recording`).
    window : (float, float), optional
        Response window in s; default ``(0, T·dt)``; must hold the ``T`` bins.
    seed : int
        Seed of :func:`numpy.random.default_rng`.
    name, provenance, frame_interval, stimulus_start, test_stimuli
        Passed to :class:`~neurocode.data.Recording`; ``provenance["simulated"]`` is added.

    Returns
    -------
    Recording
        ``shape = (n_stimuli, n_cells, max(n_trials))``; binning it with ``dt`` from
        ``window[0]`` gives counts whose trial mean estimates ``rates``.
    """
    rates = _check_rates(rates, 3)
    n, T, c = rates.shape
    dt = float(dt)
    if window is None:
        window = (0.0, T * dt)
    t0, t1 = (float(v) for v in window)
    if t0 + T * dt > t1 + 1e-9 * dt:
        raise ValueError(f"{T} bins of {dt:g} s do not fit in the window ({t0:g}, {t1:g}) s")
    counts = _trial_counts(n_trials, None, n)
    rng = np.random.default_rng(seed)
    times, off = _trains_from_rates(rates, counts, rng, dt, t0)
    prov = dict(provenance or {})
    prov.setdefault("simulated", {})
    prov["simulated"] = {**prov["simulated"], "method": prov["simulated"].get(
        "method", "Poisson spikes from given rates (simulate_from_rates)"), "dt": dt, "seed": int(seed),
        "trial_counts": counts.tolist()}
    return Recording(name=name, spike_times_flat=times, spike_offsets=off, shape=(n, c, int(counts.max())),
                     window=(t0, t1), stimuli=stimuli, provenance=prov, source="<simulated>",
                     trial_counts=None if np.all(counts == counts[0]) else counts, frame_interval=frame_interval,
                     stimulus_start=stimulus_start, test_stimuli=test_stimuli)


def simulate_flashes(model: LNPoisson, images: np.ndarray, n_trials: int = 20,
                     window: tuple[float, float] = (0.0, 0.3), dt: float = 0.01, seed: int = 0,
                     trial_counts: Sequence[int] | None = None, *, name: str = "simulated_flashes") -> Recording:
    """Simulate a flashed-image experiment with an :class:`LNPoisson` model.

    Parameters
    ----------
    model : LNPoisson
    images : np.ndarray
        ``[n_images, H, W]`` uint8 (or float on the 0..255 scale); each is flashed from grey at
        ``t = 0`` (:meth:`LNPoisson.rates_for_flashes`).
    n_trials : int
        Trials per image.
    window : (float, float)
        Response window in s.
    dt : float
        Simulation bin width in s (spikes uniform within bins).
    seed : int
    trial_counts : sequence of int, optional
        ``[n_images]`` trials per image (overrides ``n_trials``; a ragged recording).

    Returns
    -------
    Recording
        Stimuli ``images``; ``provenance["simulated"]`` holds the model parameters, ``dt``,
        ``seed`` and the trial counts.
    """
    images = np.asarray(images)
    rates = model.rates_for_flashes(images, window, dt)
    counts = _trial_counts(n_trials, trial_counts, images.shape[0])
    prov = {"simulated": {"method": "LNPoisson flashes (neurocode.simulate.simulate_flashes)",
                          "window": [float(v) for v in window], "model": model.to_dict()}}
    return simulate_from_rates(rates, dt, counts, stimuli=images, window=window, seed=seed, name=name,
                               provenance=prov)


def recording_from_spikes(spikes: np.ndarray, dt: float, stimuli: np.ndarray | None = None, t_start: float = 0.0,
                          *, name: str = "simulated", provenance: dict | None = None,
                          frame_interval: float | None = None, stimulus_start: float | None = None,
                          test_stimuli: Sequence[int] | None = None) -> Recording:
    """A recording from binned spikes of a spike-based model (e.g. sampled SNN output).

    Parameters
    ----------
    spikes : np.ndarray
        bool or non-negative integer ``[n_stimuli, T, n_trials, n_cells]`` (the layout of
        :meth:`Recording.binned`); a value ``m > 1`` gives ``m`` spikes at the same time.
    dt : float
        Bin width in s.
    stimuli : np.ndarray, optional
        See :class:`~neurocode.data.Recording`.
    t_start : float
        Left edge of bin 0 in s; the window is ``(t_start, t_start + T·dt)``.
    name, provenance, frame_interval, stimulus_start, test_stimuli
        Passed to :class:`~neurocode.data.Recording`.

    Returns
    -------
    Recording
        Every spike at its bin's centre, so ``rec.binned(dt)`` returns ``spikes``.
    """
    arr = np.asarray(spikes)
    if arr.ndim != 4:
        raise ValueError(f"spikes must be [n_stimuli, T, n_trials, n_cells], got shape {arr.shape}")
    if arr.dtype != bool and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.mod(arr, 1) == 0):
            raise ValueError(f"spikes must be bool or integer counts, got {arr.dtype}")
    if (arr < 0).any():
        raise ValueError("spikes must be >= 0")
    n, T, K, c = arr.shape
    counts = np.ascontiguousarray(np.transpose(arr, (0, 3, 2, 1))).reshape(n * c * K, T).astype(np.int64)
    times, off = _times_from_counts(None, counts, float(dt), float(t_start))
    prov = dict(provenance or {})
    prov.setdefault("simulated", {"method": "binned spikes at bin centres (recording_from_spikes)", "dt": float(dt)})
    return Recording(name=name, spike_times_flat=times, spike_offsets=off, shape=(n, c, K),
                     window=(float(t_start), float(t_start) + T * float(dt)), stimuli=stimuli, provenance=prov,
                     source="<simulated>", frame_interval=frame_interval, stimulus_start=stimulus_start,
                     test_stimuli=test_stimuli)


# ====================================================================== continuous recordings
@dataclass(eq=False)
class SimulationTruth:
    """The exact expected rates behind a :func:`simulate_continuous` recording.

    Attributes
    ----------
    rates : np.ndarray
        float64 ``[T, n_cells]``: expected spikes per bin of ``dt`` s over the whole session,
        bin 0 starting at ``t_start``.
    repeat_rates : np.ndarray or None
        float64 ``[T_rep, n_cells]``: expected spikes per ``dt`` bin during repeat 0 (bin 0
        starting at ``repeat_starts[0]``). Other repeats differ only within the temporal
        filter's length (``filter_duration``) after their start, where the history differs.
    repeat_starts : np.ndarray
        float64 ``[n_repeats]``: onsets of the repeats in s (``rec.repeats[:, 0]``).
    repeat_duration : float
        Duration of one repeat in s.
    spatial_filters : np.ndarray
        float64 ``[n_cells, H, W]`` (:meth:`LNPoisson.spatial_filters`).
    temporal_filters : np.ndarray
        float64 ``[n_cells, n_lags]`` on the ``dt`` grid, unit L2 norm
        (:meth:`LNPoisson.temporal_filter`).
    dt : float
        Simulation bin width in s.
    t_start : float
        Session start in s.
    frame_interval : float
        Seconds per frame.
    """

    rates: np.ndarray
    repeat_rates: np.ndarray | None
    repeat_starts: np.ndarray
    repeat_duration: float
    spatial_filters: np.ndarray
    temporal_filters: np.ndarray
    dt: float
    t_start: float
    frame_interval: float


def _interleave(n_unique: int, n_rep_frames: int, n_repeats: int, repeat_every: int | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Frame order and repeat start frames: ``[U_0 R U_1 R ... U_{n-1} R U_rest]``.

    Returns (source index into ``concat(unique, repeat)`` per shown frame, first shown frame of
    each repeat).
    """
    if n_repeats == 0:
        return np.arange(n_unique), np.zeros(0, dtype=np.int64)
    every = n_unique // n_repeats if repeat_every is None else _count(repeat_every, "repeat_every", 0)
    if every * n_repeats > n_unique:
        raise ValueError(f"repeat_every={every} unique frames before each of {n_repeats} repeats needs "
                         f"{every * n_repeats} unique frames, got {n_unique}")
    rep_src = n_unique + np.arange(n_rep_frames)
    order, starts, u = [], [], 0
    for _ in range(n_repeats):
        order.append(np.arange(u, u + every))
        u += every
        starts.append(sum(o.size for o in order))
        order.append(rep_src)
    order.append(np.arange(u, n_unique))
    return np.concatenate(order).astype(np.int64), np.asarray(starts, dtype=np.int64)


def simulate_continuous(model: LNPoisson, frames: np.ndarray, frame_rate: float = 30.0,
                        repeat_frames: np.ndarray | None = None, n_repeats: int = 0,
                        repeat_every: int | None = None, dt: float | None = None, seed: int = 0,
                        *, name: str = "simulated_continuous") -> tuple[ContinuousRecording, SimulationTruth]:
    """Simulate a continuous recording (e.g. white noise with a repeated test segment).

    The screen shows ``repeat_every`` unique frames, then the repeated segment, ``n_repeats``
    times, then the remaining unique frames: ``[U₀ R U₁ R … U_{n-1} R U_rest]`` (default
    ``repeat_every = n_unique // n_repeats``, so the session ends with a repeat). Frame ``i``
    is shown from ``i / frame_rate`` s; the session is ``(0, n_shown / frame_rate)``. The
    screen is grey before frame 0.

    Parameters
    ----------
    model : LNPoisson
    frames : np.ndarray
        uint8 ``[n_unique, H, W]`` (or float on the 0..255 scale): the non-repeated stimulus.
    frame_rate : float
        Frames per s.
    repeat_frames : np.ndarray, optional
        ``[n_rep_frames, H, W]``, same dtype and size: the repeated segment.
    n_repeats : int
        Presentations of ``repeat_frames`` (0: none).
    repeat_every : int, optional
        Unique frames before each repeat.
    dt : float, optional
        Simulation bin width in s; default ``1 / frame_rate`` (the frame grid). Must divide the
        frame interval (``1/frame_rate = m·dt`` for an integer ``m``).
    seed : int
        Seed of the Poisson spikes.

    Returns
    -------
    rec : ContinuousRecording
        Frames as shown (uint8 if the inputs are uint8), ``repeats`` ``[n_repeats, 2]``,
        ``provenance["simulated"]`` with the model's parameters.
    truth : SimulationTruth
        The exact expected rates (see :func:`truth_rate_cc`).

    Notes
    -----
    Memory is about the shown frames plus ``8·4096·H·W`` bytes and ``T·n_cells·8·3`` bytes for
    rates; the spatial stage works frame by frame, the temporal one on the ``dt`` grid.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must be [n_frames, H, W], got shape {frames.shape}")
    n_repeats = _count(n_repeats, "n_repeats", 0)
    fi = 1.0 / float(frame_rate)
    m = 1 if dt is None else fi / float(dt)
    if abs(m - round(m)) > 1e-6 or round(m) < 1:
        raise ValueError(f"dt={dt} s must divide the frame interval 1/frame_rate={fi:g} s")
    m = int(round(m))
    dt = fi / m
    if n_repeats > 0:
        if repeat_frames is None:
            raise ValueError("n_repeats > 0 needs repeat_frames")
        repeat_frames = np.asarray(repeat_frames)
        if repeat_frames.ndim != 3 or repeat_frames.shape[1:] != frames.shape[1:] or repeat_frames.shape[0] < 1:
            raise ValueError(f"repeat_frames must be [n, {frames.shape[1]}, {frames.shape[2]}], got "
                             f"{repeat_frames.shape}")
        pool = np.concatenate([frames, repeat_frames.astype(frames.dtype)])
        n_rep = repeat_frames.shape[0]
    else:
        pool, n_rep = frames, 0
    order, rep_start_frames = _interleave(frames.shape[0], n_rep, n_repeats, repeat_every)
    # spatial stage once per distinct frame, then expand to the shown order and the dt grid
    proj = model.project(pool)[order]  # [n_shown, c]
    proj = np.repeat(proj, m, axis=0) if m > 1 else proj
    rates = model.rates_from_projection(proj, dt)  # [T, c]
    del proj
    n_shown = order.size
    frame_times = np.arange(n_shown) * fi
    session = (0.0, n_shown * fi)
    rng = np.random.default_rng(seed)
    times, off = _poisson_times(rng, rates.T, dt, 0.0)
    trains = [times[off[c]: off[c + 1]] for c in range(model.n_cells)]
    shown = pool[order]
    repeats = None
    starts = frame_times[rep_start_frames]
    rep_rates = None
    if n_repeats > 0:
        repeats = np.stack([starts, starts + n_rep * fi], axis=1)
        b0 = int(rep_start_frames[0]) * m
        rep_rates = rates[b0: b0 + n_rep * m].copy()
    prov = {"simulated": {
        "method": "LNPoisson, Poisson spikes (neurocode.simulate.simulate_continuous)",
        "frame_rate": float(frame_rate), "dt": dt, "seed": int(seed), "n_unique_frames": int(frames.shape[0]),
        "n_repeat_frames": int(n_rep), "n_repeats": n_repeats,
        "repeat_start_frames": rep_start_frames.tolist(), "model": model.to_dict()}}
    rec = ContinuousRecording.from_spike_times(trains, shown, frame_times, session, repeats=repeats, name=name,
                                               provenance=prov, source="<simulated>")
    truth = SimulationTruth(rates=rates, repeat_rates=rep_rates, repeat_starts=starts,
                            repeat_duration=n_rep * fi, spatial_filters=model.spatial_filters(frames.shape[1:]),
                            temporal_filters=model.temporal_filter(model.n_lags(dt), dt), dt=dt, t_start=0.0,
                            frame_interval=fi)
    return rec, truth


def white_noise_experiment(n_cells: int = 20, minutes: float = 10.0, shape: Sequence[int] = (40, 40),
                           frame_rate: float = 30.0, repeat_seconds: float = 10.0, n_repeats: int = 20,
                           seed: int = 0) -> tuple[ContinuousRecording, SimulationTruth, LNPoisson]:
    """The standard in-silico white-noise experiment.

    ``minutes`` of binary checkerboard (:func:`white_noise`) at ``frame_rate`` plus a
    ``repeat_seconds`` segment of other white noise shown ``n_repeats`` times, interleaved
    (:func:`simulate_continuous`), recorded from ``n_cells`` cells of
    ``LNPoisson.random(n_cells, shape)`` (RF σ 2.5 px). The defaults (20 cells, 10 min of
    40×40 at 30 Hz = 18000 frames, a 10-s repeat × 20) run in a few seconds with well under
    1 GB of memory.

    Parameters
    ----------
    n_cells : int
    minutes : float
        Non-repeated stimulus duration in min.
    shape : (H, W)
    frame_rate : float
        Hz.
    repeat_seconds : float
        Duration of the repeated segment in s.
    n_repeats : int
    seed : int
        Seeds model, stimuli and spikes (independent streams via :class:`numpy.random.SeedSequence`).

    Returns
    -------
    rec : ContinuousRecording
    truth : SimulationTruth
    model : LNPoisson
    """
    s_model, s_unique, s_repeat, s_spikes = np.random.SeedSequence(seed).generate_state(4)
    n_unique = int(round(float(minutes) * 60.0 * float(frame_rate)))
    n_rep = int(round(float(repeat_seconds) * float(frame_rate)))
    model = LNPoisson.random(n_cells, shape, seed=int(s_model))
    frames = white_noise(n_unique, shape, seed=int(s_unique))
    rep = white_noise(n_rep, shape, seed=int(s_repeat)) if n_repeats > 0 else None
    rec, truth = simulate_continuous(model, frames, frame_rate, repeat_frames=rep, n_repeats=n_repeats,
                                     seed=int(s_spikes), name="simulated_white_noise")
    rec.provenance["simulated"]["experiment"] = {
        "function": "white_noise_experiment", "n_cells": int(n_cells), "minutes": float(minutes),
        "shape": list(_shape(shape)), "repeat_seconds": float(repeat_seconds), "seed": int(seed)}
    return rec, truth, model


def _resample_counts(rates: np.ndarray, dt: float, start: float, bin_size: float, T: int) -> np.ndarray:
    """Expected counts in bins ``[start + j·B, start + (j+1)·B)`` from per-``dt`` expected counts.

    The rate is piecewise constant within ``dt`` bins (bin 0 from time 0), so the expected
    count in any interval is the linear interpolation of the cumulative count.
    """
    cum = np.concatenate([np.zeros((1, rates.shape[1])), np.cumsum(rates, axis=0)])
    grid = np.arange(cum.shape[0]) * dt
    edges = start + np.arange(T + 1) * bin_size
    if edges[-1] > grid[-1] + 1e-9 * dt:
        raise ValueError("bins extend beyond the rates' time range")
    c_at = np.stack([np.interp(edges, grid, cum[:, c]) for c in range(rates.shape[1])], axis=1)
    return np.diff(c_at, axis=0)


def truth_rate_cc(rec: ContinuousRecording, truth: SimulationTruth, bin_size: float | None = None,
                  skip: float = 0.0) -> np.ndarray:
    """The ground-truth model's own rate correlation on the repeats (a fitted model's ceiling).

    The spikes of every repeat are binned from ``repeat start + skip`` in
    ``T = floor((repeat_duration - skip) / bin_size)`` bins of ``bin_size`` s
    (:meth:`ContinuousRecording.binned`) and averaged over repeats (the PSTH). The true rate
    is ``truth.repeat_rates`` (repeat 0, per ``dt`` bin) integrated over the same bins: the
    rate is piecewise constant within ``dt`` bins, so the expected count in a bin is the
    difference of the linearly interpolated cumulative count at its edges (exact for any
    ``bin_size``; with ``bin_size = dt`` it is ``repeat_rates`` itself).

    Parameters
    ----------
    rec : ContinuousRecording
        From :func:`simulate_continuous` (with repeats).
    truth : SimulationTruth
        Its companion.
    bin_size : float, optional
        Bin width in s; default ``truth.dt`` (the frame interval by default).
    skip : float
        Seconds at the start of each repeat to leave out (e.g. ``model.filter_duration``,
        where the response still depends on the different history before each repeat).

    Returns
    -------
    np.ndarray
        float64 ``[n_cells]``: Pearson r between PSTH and true rate per cell (NaN where either
        is constant).
    """
    if truth.repeat_rates is None or rec.repeats is None:
        raise ValueError("the recording has no repeats")
    B = truth.dt if bin_size is None else float(bin_size)
    T = n_bins(truth.repeat_duration - float(skip), B)
    psth = np.zeros((T, rec.n_cells))
    for s in truth.repeat_starts:
        a = float(s) + float(skip)
        psth += rec.binned(B, a, a + T * B)
    psth /= truth.repeat_starts.size
    true = _resample_counts(truth.repeat_rates, truth.dt, float(skip), B, T)
    x = psth - psth.mean(axis=0)
    y = true - true.mean(axis=0)
    den = np.sqrt((x**2).sum(axis=0) * (y**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(axis=0) / np.where(den > 0, den, 1.0), np.nan)
