"""Convolutions of spike maps that skip the zeros (event-driven).

:class:`SpikeConv2d` is an ``nn.Conv2d`` (same parameters, same state dict) whose forward
pass, for a sparse input on CPU, runs ``neurocode::event_conv2d``: each nonzero input scatters
its kernel column into the outputs it reaches, so the work is proportional to the number of
spikes instead of the number of positions. The weight gradient is the same walk; the input
gradient depends on the output gradient only and stays dense (``conv_transpose2d``). The
result is the convolution's exact sum (its additions in another order than torch's dense
kernel). It is used where it is faster: on CPU, float32/float64, stride 1, no dilation, one
group, and an input density at or below ``max_density``. ``benchmarks/event_conv.py``, 2
threads, against the faster dense layout (README has the table): at the paper network's
second layer (16 -> 32 channels, 11x11) the forward pass is 6.3x faster at 1 % density, 3.1x at
10 %, 2.0x at 20 % and 1.0x at 50 %, the weight gradient 6.9x, 3.7x, 2.3x and 1.3x; at the quick
preset's (8 -> 16 channels, 5x5) the forward pass 1.6x at 10 % and 0.6x at 50 %. Anything else
takes ``nn.Conv2d``'s own path.
The spiking retina models' second convolutions are ``SpikeConv2d`` layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SpikeConv2d", "event_conv2d"]


def event_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, padding: int = 0) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` computed over the nonzero inputs only.

    Parameters
    ----------
    x : Tensor [B, C, H, W]
        Sparse input (spike maps), CPU, float32/float64.
    weight : Tensor [O, C, KH, KW]
    bias : Tensor [O], optional
    padding : int
        Zero padding on every side (stride 1, no dilation).

    Returns
    -------
    Tensor [B, O, H + 2p - KH + 1, W + 2p - KW + 1], contiguous.

    Raises
    ------
    RuntimeError
        The fused kernels are unavailable (no compiler; see ``neurocode.neurons.kernel_failure``).
    """
    from neurocode.neurons import kernel_failure, kernel_library

    ops = kernel_library()
    if ops is None:
        raise RuntimeError(f"event_conv2d needs the fused kernels: {kernel_failure()}")
    return ops.event_conv2d(x, weight, bias, int(padding))


class SpikeConv2d(nn.Conv2d):
    """``nn.Conv2d`` that convolves sparse spike maps event by event (module docstring).

    Parameters
    ----------
    *args, **kwargs
        As ``nn.Conv2d``.
    max_density : float
        Use the event-driven path when at most this fraction of the input is nonzero.
    """

    def __init__(self, *args, max_density: float = 0.25, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_density = float(max_density)

    def _event_path(self, x: Tensor) -> bool:
        if not (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.dim() == 4
                and self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1
                and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                and self.padding[0] == self.padding[1] and self.max_density > 0):
            return False
        from neurocode.neurons import kernel_library

        if kernel_library() is None:
            return False
        # the density of at most 64 evenly spaced samples (time steps x trials x images): counting
        # every input would read it once more than the convolution does; the choice of path only
        # changes the speed, never the result
        sample = x[:: max(1, x.shape[0] // 64)]
        return bool(torch.count_nonzero(sample) <= self.max_density * sample.numel())

    def forward(self, x: Tensor) -> Tensor:
        if self._event_path(x):
            return event_conv2d(x, self.weight, self.bias, self.padding[0])
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", max_density={self.max_density}"
