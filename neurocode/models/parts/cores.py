"""Core parts: the shared feature maps between the front end's first convolution and the readout.

A core takes the front end's drive (``[T, B, c1, s, s]``, or static ``[B, c1, s, s]``) and gives
the feature maps the readout pools. Registered in :data:`CORES`:

``spiking``
    A spiking layer on the drive, conv2 (event-driven, its input is spikes), optionally BatchNorm,
    a spiking layer: noisy LIF (NSNN) or deterministic LIF (DSNN), as its :class:`NeuronSpec` says;
    then (the paper's network) spiking fully connected layers of widths ``hidden``. K trials per
    stimulus share the drive; only the noise differs.
``relu``
    ReLU units: (BatchNorm), ReLU, conv2, (BatchNorm), ReLU; no time axis of its own.

Both pool by ``pool`` around conv2 (the spiking core: average-pools its input and output; the
ReLU core: max-pools after each ReLU), and take conv2's ``stride`` and padding ('same', else 'valid').
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neurocode.models.event_conv import SpikeConv2d
from neurocode.neurons import NeuronSpec, make_neuron

__all__ = ["SpikingCore", "ReLUCore", "CORES"]


class SpikingCore(nn.Module):
    """Two spiking layers around conv2 (module docstring).

    Parameters
    ----------
    in_channels, channels, kernel_size : int
        c1 -> c2 with an odd kernel ('same' padding).
    neuron : NeuronSpec
    generator : torch.Generator, optional
        Noise source of noisy neurons.
    norm : bool
        BatchNorm after conv2 (its bias then sets the layer's rate).
    pool, stride, same_padding : int, int, bool
        Module docstring.
    hidden : tuple of int
        Widths of spiking fully connected layers after the conv layers (their input: the flattened
        ``features`` values of the second layer's maps).
    features : int or None
        The flattened size of the second layer's maps (needed with ``hidden``).
    """

    spiking = True

    def __init__(self, in_channels: int, channels: int, kernel_size: int, *, neuron: NeuronSpec,
                 generator: torch.Generator | None = None, norm: bool = False, pool: int = 1, stride: int = 1,
                 same_padding: bool = True, hidden: tuple[int, ...] = (), features: int | None = None):
        super().__init__()
        self.conv2 = SpikeConv2d(in_channels, channels, kernel_size, stride=stride,
                                 padding=kernel_size // 2 if same_padding else 0)  # its input is spikes
        self.norm = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.pool = nn.AvgPool2d(pool) if pool > 1 else nn.Identity()
        widths = (features,) + tuple(hidden)
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.neurons = nn.ModuleList(make_neuron(neuron, generator) for _ in range(2 + len(self.fcs)))

    def layer_bias(self, i: int) -> Tensor:
        """The bias that shifts spiking layer ``i``'s current (i >= 1; layer 0's is the front end's ``drive_bias``)."""
        if i >= 2:
            return self.fcs[i - 2].bias
        return self.norm.bias if isinstance(self.norm, nn.BatchNorm2d) else self.conv2.bias

    def layer_current(self, i: int, x: Tensor, n_trials: int) -> Tensor:
        """Layer ``i``'s current ``[T, K*B, ...]`` from the drive ``[T, B, ...]`` (i = 0) or layer i-1's spikes."""
        T = x.shape[0]
        if i == 0:
            return x.unsqueeze(1).expand(T, n_trials, *x.shape[1:]).reshape(T, -1, *x.shape[2:])
        if i >= 2:
            return self.fcs[i - 2](x.flatten(2))
        y = self.pool(self.norm(self.conv2(self.pool(x.flatten(0, 1)))))  # all steps and trials in one call
        return y.view(T, -1, *y.shape[1:])

    def forward(self, drive: Tensor, n_trials: int) -> tuple[Tensor, list[Tensor]]:
        """``drive [T, B, c1, s, s]`` -> the last layer's spikes ``[T, K*B, c2, s, s]`` and every layer's."""
        x, layers = drive, []
        for i, neuron in enumerate(self.neurons):
            x = neuron(self.layer_current(i, x, n_trials))
            layers.append(x)
        return x, layers


class ReLUCore(nn.Module):
    """ReLU units around conv2 (module docstring); a time-major drive ``[T, B, ...]`` is run per bin.

    Parameters
    ----------
    in_channels, channels, kernel_size : int
    norm : bool
        BatchNorm before each ReLU (conv2 then has no bias: the BatchNorm's shift makes it redundant).
    pool, stride, same_padding : int, int, bool
        Module docstring.
    """

    spiking = False

    def __init__(self, in_channels: int, channels: int, kernel_size: int, *, neuron: NeuronSpec | None = None,
                 generator: torch.Generator | None = None, norm: bool = True, pool: int = 1, stride: int = 1,
                 same_padding: bool = True):
        super().__init__()
        self.norm_in = nn.BatchNorm2d(in_channels) if norm else nn.Identity()
        self.conv2 = nn.Conv2d(in_channels, channels, kernel_size, stride=stride,
                               padding=kernel_size // 2 if same_padding else 0, bias=not norm)
        self.norm = nn.BatchNorm2d(channels) if norm else nn.Identity()
        self.pool = nn.MaxPool2d(pool) if pool > 1 else nn.Identity()

    def forward(self, drive: Tensor, n_trials: int = 1) -> tuple[Tensor, list[Tensor]]:
        x = drive.flatten(0, 1) if drive.dim() == 5 else drive
        y = self.pool(torch.relu(self.norm(self.conv2(self.pool(torch.relu(self.norm_in(x)))))))
        y = y.view(*drive.shape[:2], *y.shape[1:]) if drive.dim() == 5 else y
        return y, [y]


#: Cores by name.
CORES = {"spiking": SpikingCore, "relu": ReLUCore}
