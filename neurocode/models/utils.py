"""Small helpers shared by the model definitions (parameter counts, layer geometry)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["parameter_count", "conv_output_size", "bisect_shift"]


def parameter_count(module: nn.Module) -> int:
    """Number of trainable scalars in ``module``.

    Parameters
    ----------
    module : nn.Module

    Returns
    -------
    int
        Sum of ``numel()`` over parameters with ``requires_grad=True``
        (BatchNorm running statistics are buffers and are not counted; frozen
        parameters are not counted). Shared parameters are counted once.
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def conv_output_size(size: int, kernel: int, stride: int = 1, pool: int = 1, name: str = "conv") -> int:
    """Side length of a square feature map after a 'valid' conv and optional max-pool.

    ``out = floor((size − kernel) / stride) + 1`` (no padding), then
    ``floor(out / pool)`` for a non-overlapping max-pool (``pool = 1``: none).

    Parameters
    ----------
    size : int
        Input side length in pixels (or feature-map units).
    kernel : int
        Convolution kernel side length.
    stride : int, default 1
        Convolution stride.
    pool : int, default 1
        Max-pool window = stride applied after the conv; 1 means no pooling.
    name : str, default "conv"
        Layer name used in error messages.

    Returns
    -------
    int
        Output side length (≥ 1).

    Raises
    ------
    ValueError
        If any argument is not a positive integer, or the configuration makes
        the feature map vanish (kernel larger than the input, or pooling
        larger than the conv output); the message names the layer.
    """
    for arg, val in (("size", size), ("kernel", kernel), ("stride", stride), ("pool", pool)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name}: {arg} must be a positive integer, got {val!r}")
    if kernel > size:
        raise ValueError(
            f"{name}: kernel size {kernel} is larger than its {size}x{size} input; "
            "the feature map would vanish (use a smaller kernel or a larger input_size)"
        )
    out = (size - kernel) // stride + 1
    if pool > out:
        raise ValueError(
            f"{name}: max-pool {pool} is larger than the {out}x{out} conv output; "
            "the feature map would vanish"
        )
    return out // pool


def bisect_shift(rate_of: Callable[[Tensor], Tensor], target: Tensor | float, like: Tensor | None = None,
                 iterations: int = 16, bound: float = 4.0) -> Tensor:
    """The additive current shift at which a layer fires at ``target``, by bisection.

    Parameters
    ----------
    rate_of : callable
        ``rate_of(shift)`` -> firing rate(s) with the shift applied; non-decreasing in it.
    target : Tensor or float
        Target rate(s), broadcastable against ``rate_of``'s output.
    like : Tensor, optional
        Shape of an element-wise shift (e.g. a ``[T, n_cells]`` time bias); None: one scalar.
    iterations, bound : int, float
        Bisection steps on ``[-bound, bound]`` (16 steps: resolution 8 / 2**16).

    Returns
    -------
    Tensor
        The shift, scalar or shaped like ``like``.
    """
    lo = torch.full_like(like, -bound) if like is not None else torch.tensor(-bound)
    hi = torch.full_like(like, bound) if like is not None else torch.tensor(bound)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        below = rate_of(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)
