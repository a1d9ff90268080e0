"""The counter-based Gaussian stream of the noisy neurons, as torch operations.

Element ``i`` of step ``t`` is a pure function of ``(seeds[t], i)``: SplitMix64 hashes of
the element's pair index give two uniforms, and Box-Muller turns them into two independent
standard normals (elements ``2m`` and ``2m + 1`` take the cosine and the sine branch of
pair ``m``)::

    h      = mix64(seed + (m + 1) * GOLDEN)                     float32: one hash per pair
    u1     = ((h >> 40) + 1) * 2**-24        in (0, 1]
    u2     = ((h >> 8) & 0xFFFFFF) * 2**-24  in [0, 1)
    z[2m]  = sqrt(-2 log u1) * cos(2 pi u2),   z[2m + 1] = sqrt(-2 log u1) * sin(2 pi u2)

(float64: two hashes per pair, of ``2m + 1`` and ``2m + 2``, and 53-bit uniforms). The
fused C++ kernel (``csrc/lif.cpp``) draws the very same numbers in-register; this module is
the same stream for every other path (CUDA, half precision, machines without a compiler),
so a seed gives the same spikes everywhere, up to the last-ulp rounding of log/cos/sin
between libm implementations. int64 arithmetic in torch wraps modulo 2**64 like the
kernel's uint64; logical right shifts are arithmetic shifts with the sign bits masked off.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["counter_normal", "draw_seeds", "SeededGaussian"]

_U64 = 1 << 64
GOLDEN = 0x9E3779B97F4A7C15 - _U64  # the uint64 constants as int64 bit patterns
_M1 = 0xBF58476D1CE4E5B9 - _U64
_M2 = 0x94D049BB133111EB - _U64
_TWO_PI_F32 = 6.2831853071795865
_TWO_PI_F64 = 6.283185307179586
_PAIRS_PER_CHUNK = 1 << 21  # bounds the int64 temporaries (~16 MB each)


def _srl(h: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 bit patterns."""
    return (h >> k) & ((1 << (64 - k)) - 1)


def _mix64(z: Tensor) -> Tensor:
    z = (z ^ _srl(z, 30)) * _M1
    z = (z ^ _srl(z, 27)) * _M2
    return z ^ _srl(z, 31)


def _pairs(seed: Tensor, m: Tensor, float64: bool) -> tuple[Tensor, Tensor]:
    """(u1, 2 pi u2) of pairs ``m`` [P] under seeds ``seed`` [R, 1]: [R, P] each."""
    if float64:
        h1 = _mix64(seed + (2 * m + 1) * GOLDEN)
        h2 = _mix64(seed + (2 * m + 2) * GOLDEN)
        u1 = (_srl(h1, 11) + 1).to(torch.float64) * 2.0 ** -53
        return u1, (_srl(h2, 11).to(torch.float64) * 2.0 ** -53) * _TWO_PI_F64
    h = _mix64(seed + (m + 1) * GOLDEN)
    u1 = (_srl(h, 40) + 1).to(torch.float32) * 2.0 ** -24
    return u1, ((_srl(h, 8) & 0xFFFFFF).to(torch.float32) * 2.0 ** -24) * _TWO_PI_F32


def counter_normal(seeds: Tensor, n: int, loc: float = 0.0, sigma: float = 1.0, *,
                   dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """``loc + sigma * z`` with ``z`` the counter-based standard normals of the neurons.

    Parameters
    ----------
    seeds : Tensor [T] of int64
        One seed per time step.
    n : int
        Elements per step (all neurons of all batch items, flattened).
    loc, sigma : float
        Mean and standard deviation.
    dtype : torch.dtype
        float64 uses the 53-bit stream; every other dtype is computed on the float32
        stream and cast.
    device : torch.device, optional
        Where to compute; default the seeds' device.

    Returns
    -------
    Tensor [T, n]
    """
    if seeds.dim() != 1 or seeds.dtype != torch.int64:
        raise ValueError(f"seeds must be a 1-D int64 tensor, got {seeds.dtype} of shape {tuple(seeds.shape)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    device = seeds.device if device is None else torch.device(device)
    float64 = dtype == torch.float64
    work = torch.float64 if float64 else torch.float32
    T, n_pairs = seeds.shape[0], (n + 1) // 2
    out = torch.empty((T, 2 * n_pairs), dtype=work, device=device)
    seeds = seeds.to(device)
    rows = max(1, _PAIRS_PER_CHUNK // max(n_pairs, 1))
    cols = min(n_pairs, _PAIRS_PER_CHUNK) or 1
    for r0 in range(0, T, rows):
        seed = seeds[r0:r0 + rows, None]
        for c0 in range(0, n_pairs, cols):
            m = torch.arange(c0, min(n_pairs, c0 + cols), dtype=torch.int64, device=device)
            u1, angle = _pairs(seed, m, float64)
            radius = (u1.log_() * -2.0).sqrt_()
            pair = out[r0:r0 + rows, 2 * c0:2 * (c0 + m.numel())].view(seed.shape[0], m.numel(), 2)
            # loc + sigma * (r * cos a), in the kernel's order of operations
            torch.mul(radius, angle.cos(), out=pair[..., 0]).mul_(sigma).add_(loc)
            torch.mul(radius, angle.sin_(), out=pair[..., 1]).mul_(sigma).add_(loc)
    return out[:, :n].to(dtype).contiguous()


def draw_seeds(T: int, generator: torch.Generator | None = None) -> Tensor:
    """T step seeds [T] int64 from ``generator`` (default: torch's global CPU generator).

    The seeds are drawn on the generator's device and returned on CPU, so that a seeded
    generator fixes the noise whatever device the neurons run on.
    """
    device = generator.device if generator is not None else "cpu"
    return torch.randint(-2 ** 63, 2 ** 63 - 1, (T,), generator=generator, dtype=torch.int64, device=device).cpu()


class SeededGaussian:
    """Gaussian per-step values ``loc + sigma * z[t, n]`` given by seeds, not values.

    ``z`` is the counter-based stream of this module: the fused kernel draws it in-register
    inside the LIF loop, :meth:`materialize` writes the very same numbers to a tensor (with
    the kernel when it applies, with torch operations otherwise).

    Parameters
    ----------
    seeds : Tensor [T] of int64
    loc, sigma : float
    """

    def __init__(self, seeds: Tensor, loc: float, sigma: float):
        if seeds.dim() != 1 or seeds.dtype != torch.int64:
            raise ValueError(f"seeds must be a 1-D int64 tensor, got {seeds.dtype} of shape {tuple(seeds.shape)}")
        self.seeds, self.loc, self.sigma = seeds, float(loc), float(sigma)

    def materialize(self, shape, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        """The values as a tensor of ``shape`` [T, ...] (``T = len(seeds)``)."""
        shape = tuple(shape)
        if not shape or shape[0] != self.seeds.shape[0]:
            raise ValueError(f"shape must start with T = {self.seeds.shape[0]} steps, got {shape}")
        n = 1
        for s in shape[1:]:
            n *= int(s)
        device = torch.device("cpu") if device is None else torch.device(device)
        if device.type == "cpu" and dtype in (torch.float32, torch.float64):
            from neurocode.neurons import _kernels
            ops = _kernels.get_library()
            if ops is not None:
                return ops.gauss_fill(self.seeds.cpu(), n, self.loc, self.sigma, dtype).view(shape)
        return counter_normal(self.seeds, n, self.loc, self.sigma, dtype=dtype, device=device).view(shape)

    def __repr__(self) -> str:
        return f"SeededGaussian(T={self.seeds.shape[0]}, loc={self.loc}, sigma={self.sigma})"
