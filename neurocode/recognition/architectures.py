"""The paper's recognition networks, NSNN or DSNN by one switch (:class:`~neurocode.recognition.layers.NeuronSpec`).

Every network maps an input to class scores per time step ``[T, B, n_classes]``; the
prediction is their mean over time. A static image ``[B, C, H, W]`` is fed at every one of
``n_steps`` steps (direct encoding): the first convolution and its normalisation are computed
once per image and repeated over time (exact: batch statistics of T copies are those of one).
Event frames come time-major, ``[T, B, C, H, W]``.

Definitions (C = 3x3 convolution + normalisation + spiking layer, AP = average pooling,
MP = max pooling, FC = fully connected; the last FC is a non-spiking read-out):

* ``cifarnet`` -- Wu et al. 2019 (AAAI), "Direct training for SNNs: faster, larger, better":
  128C3-256C3-AP2-512C3-AP2-1024C3-512C3-1024FC-512FC-FC (their voting layer is the linear
  read-out here; the hidden FC layers spike and are normalised like the convolutions).
* ``resnet18`` -- the paper's: 64C3-2(64C3-64C3)-2(128C3-128C3)-2(256C3-256C3)-2(512C3-512C3)-AP-FC
  (He et al.'s CIFAR ResNet-18 with spiking layers; a block's second convolution is added to the
  shortcut -- a 1x1 convolution + normalisation where the shape changes -- before its neuron).
* ``resnet19`` -- Zheng et al. 2021 (tdBN, AAAI), as implemented by TET (Deng et al. 2022) and
  the NSNN authors: 64C3, then 3 blocks of 128, 3 of 256 (stride 2), 2 of 512 (stride 2), AP,
  256FC (spiking), FC. The tdBN paper's table lists a 128-channel first convolution; the
  implementations the paper used start with 64 and project to 128 in the first block.
* ``vggsnn`` -- TET (Deng et al. 2022) for DVS-CIFAR at 48x48:
  64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-AP2-FC.
* ``7bnet`` -- Fang et al. 2021 (SEW ResNet, NeurIPS) for DVS-Gesture at 128x128:
  32C1-{SEW block(32)-MP2}x7-FC, a SEW block being C3-C3 whose spikes are added to its input
  (ADD), as in the authors' code (a 1x1 first convolution; the paper's text says k3).
* ``digits`` -- this package's small network for scikit-learn's 8x8 digits:
  32C3-64C3-AP2-128FC-FC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from neurocode.recognition.layers import (NORMS, InputNormalization, NeuronSpec, SeqToANN, _choice, make_norm,
                                          spiking_layers)

__all__ = ["SpikingClassifier", "ArchInfo", "ARCHITECTURES", "build_classifier", "parameter_count"]


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _conv(cin: int, cout: int, k: int, stride: int, norm: str) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=norm == "none")


class ConvUnit(nn.Module):
    """Convolution + normalisation (+ spiking layer): ``[T, B, Cin, H, W] -> [T, B, Cout, H', W']``."""

    def __init__(self, cin: int, cout: int, neuron: NeuronSpec | None, norm: str, k: int = 3, stride: int = 1,
                 alpha: float = 1.0, generator=None):
        super().__init__()
        v_th = neuron.v_th if neuron is not None else 1.0
        self.fwd = SeqToANN(_conv(cin, cout, k, stride, norm), make_norm(norm, cout, v_th, alpha))
        self.neuron = neuron.make(generator) if neuron is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(self.fwd(x))


class LinearUnit(nn.Module):
    """Fully connected + normalisation + spiking layer: ``[T, B, in] -> [T, B, out]``."""

    def __init__(self, fin: int, fout: int, neuron: NeuronSpec, norm: str, generator=None):
        super().__init__()
        self.fwd = SeqToANN(nn.Linear(fin, fout, bias=norm == "none"), make_norm(norm, fout, neuron.v_th))
        self.neuron = neuron.make(generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(self.fwd(x.flatten(2)))


class BasicBlock(nn.Module):
    """Spiking residual block: ``neuron(norm(conv(neuron(norm(conv(x))))) + shortcut(x))``.

    Under tdBN both summed branches are normalised with ``alpha = 1/sqrt(2)`` (an identity
    shortcut carries spikes, unnormalised).
    """

    def __init__(self, cin: int, cout: int, stride: int, neuron: NeuronSpec, norm: str, generator=None):
        super().__init__()
        alpha = 1 / math.sqrt(2) if norm == "tdbn" else 1.0
        self.conv1 = ConvUnit(cin, cout, neuron, norm, 3, stride, generator=generator)
        self.conv2 = ConvUnit(cout, cout, None, norm, 3, 1, alpha=alpha)
        self.shortcut = (ConvUnit(cin, cout, None, norm, 1, stride, alpha=alpha)
                         if stride != 1 or cin != cout else nn.Identity())
        self.neuron = neuron.make(generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.neuron(self.conv2(self.conv1(x)) + self.shortcut(x))


class SEWBlock(nn.Module):
    """Spike-element-wise block (ADD): ``C3(C3(x)) + x`` on spikes (Fang et al. 2021)."""

    def __init__(self, channels: int, neuron: NeuronSpec, norm: str, generator=None):
        super().__init__()
        self.conv1 = ConvUnit(channels, channels, neuron, norm, generator=generator)
        self.conv2 = ConvUnit(channels, channels, neuron, norm, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x)) + x


class SpikingClassifier(nn.Module):
    """A spiking network mapping an input to class scores per time step.

    Parameters
    ----------
    stem : nn.Module
        First convolution + normalisation, on flattened ``[N, C, H, W]``.
    stem_neuron : nn.Module
        The first spiking layer.
    body : nn.Module
        Everything after, ``[T, B, ...] -> [T, B, n_classes]``.
    n_steps : int
        Time steps T a static input is presented for.
    input_shape : tuple (C, H, W)
    n_classes : int
    normalization : InputNormalization, optional
        z-scoring of static inputs inside the model (attacks perturb the raw input).

    Shape
    -----
    input : Tensor [B, C, H, W] (static, repeated over ``n_steps``) or [T, B, C, H, W] (frames)
    output : Tensor [T, B, n_classes] -- non-spiking read-out per step; predict with ``.mean(0)``
    """

    def __init__(self, stem: nn.Module, stem_neuron: nn.Module, body: nn.Module, *, n_steps: int,
                 input_shape: tuple[int, int, int], n_classes: int, neuron: NeuronSpec, norm: str,
                 arch: str, normalization: nn.Module | None = None):
        super().__init__()
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        self.normalization = normalization if normalization is not None else nn.Identity()
        self.stem = stem
        self.stem_neuron = stem_neuron
        self.body = body
        self.n_steps = n_steps
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes
        self.neuron_spec = neuron
        self.norm = norm
        self.arch = arch

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:  # static [B, C, H, W]: the stem's output is computed once and repeated over time
            self._check(x.shape[1:], x.shape)
            y = self.stem(self.normalization(x))
            current = y.unsqueeze(0).expand(self.n_steps, *y.shape).contiguous()
        elif x.dim() == 5:  # frames [T, B, C, H, W]
            self._check(x.shape[2:], x.shape)
            T, B = x.shape[:2]
            y = self.stem(self.normalization(x.flatten(0, 1)))
            current = y.view(T, B, *y.shape[1:])
        else:
            raise ValueError(f"input must be [B, C, H, W] (static) or [T, B, C, H, W] (frames), got shape "
                             f"{tuple(x.shape)}")
        return self.body(self.stem_neuron(current))

    def _check(self, chw, shape) -> None:
        if tuple(chw) != self.input_shape:
            raise ValueError(f"{self.arch} expects inputs of shape (C, H, W) = {self.input_shape}, got "
                             f"{tuple(shape)}")

    @property
    def spiking_layers(self) -> list[nn.Module]:
        """Every spiking layer, input side first."""
        return spiking_layers(self)

    @property
    def code_layer(self) -> nn.Module:
        """The final spiking layer (the neural code of the paper's Fig. 4)."""
        return self.spiking_layers[-1]


class _Sequential(nn.Sequential):
    """``nn.Sequential`` over time-major tensors with a flatten before the first FC."""


class _Flatten(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2)


def _readout(fin: int, n_classes: int) -> nn.Module:
    return SeqToANN(nn.Linear(fin, n_classes))


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _stem(cin: int, cout: int, k: int, neuron: NeuronSpec, norm: str, generator):
    return (nn.Sequential(_conv(cin, cout, k, 1, norm), make_norm(norm, cout, neuron.v_th)),
            neuron.make(generator))


def _pool(kind: str, k: int = 2) -> nn.Module:
    return SeqToANN(nn.AvgPool2d(k) if kind == "avg" else nn.MaxPool2d(k))


def cifarnet(n_classes, input_shape, neuron, norm, generator):
    c, h, w = input_shape
    _spatial(h, w, 4, "cifarnet")
    stem, sn = _stem(c, 128, 3, neuron, norm, generator)
    body = _Sequential(
        ConvUnit(128, 256, neuron, norm, generator=generator), _pool("avg"),
        ConvUnit(256, 512, neuron, norm, generator=generator), _pool("avg"),
        ConvUnit(512, 1024, neuron, norm, generator=generator),
        ConvUnit(1024, 512, neuron, norm, generator=generator),
        _Flatten(),
        LinearUnit(512 * (h // 4) * (w // 4), 1024, neuron, norm, generator),
        LinearUnit(1024, 512, neuron, norm, generator),
        _readout(512, n_classes),
    )
    return stem, sn, body


def _resnet(widths, blocks, fc_hidden, stem_width, n_classes, input_shape, neuron, norm, generator):
    c, h, w = input_shape
    stem, sn = _stem(c, stem_width, 3, neuron, norm, generator)
    layers, cin = [], stem_width
    for i, (width, n) in enumerate(zip(widths, blocks)):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            layers.append(BasicBlock(cin, width, stride, neuron, norm, generator))
            cin = width
    layers += [SeqToANN(nn.AdaptiveAvgPool2d(1)), _Flatten()]
    if fc_hidden:
        layers.append(LinearUnit(cin, fc_hidden, neuron, "none", generator))
        cin = fc_hidden
    layers.append(_readout(cin, n_classes))
    return stem, sn, _Sequential(*layers)


def resnet18(n_classes, input_shape, neuron, norm, generator):
    _spatial(*input_shape[1:], 8, "resnet18")
    return _resnet((64, 128, 256, 512), (2, 2, 2, 2), 0, 64, n_classes, input_shape, neuron, norm, generator)


def resnet19(n_classes, input_shape, neuron, norm, generator):
    _spatial(*input_shape[1:], 4, "resnet19")
    return _resnet((128, 256, 512), (3, 3, 2), 256, 64, n_classes, input_shape, neuron, norm, generator)


def vggsnn(n_classes, input_shape, neuron, norm, generator):
    c, h, w = input_shape
    _spatial(h, w, 16, "vggsnn")
    stem, sn = _stem(c, 64, 3, neuron, norm, generator)
    u = lambda a, b: ConvUnit(a, b, neuron, norm, generator=generator)  # noqa: E731
    body = _Sequential(
        u(64, 128), _pool("avg"), u(128, 256), u(256, 256), _pool("avg"), u(256, 512), u(512, 512), _pool("avg"),
        u(512, 512), u(512, 512), _pool("avg"), _Flatten(), _readout(512 * (h // 16) * (w // 16), n_classes),
    )
    return stem, sn, body


def seven_b_net(n_classes, input_shape, neuron, norm, generator):
    c, h, w = input_shape
    _spatial(h, w, 128, "7bnet")
    stem, sn = _stem(c, 32, 1, neuron, norm, generator)
    layers = []
    for _ in range(7):
        layers += [SEWBlock(32, neuron, norm, generator), _pool("max")]
    layers += [_Flatten(), _readout(32 * (h // 128) * (w // 128), n_classes)]
    return stem, sn, _Sequential(*layers)


def digits_net(n_classes, input_shape, neuron, norm, generator):
    c, h, w = input_shape
    _spatial(h, w, 2, "digits")
    stem, sn = _stem(c, 32, 3, neuron, norm, generator)
    body = _Sequential(
        ConvUnit(32, 64, neuron, norm, generator=generator), _pool("avg"), _Flatten(),
        LinearUnit(64 * (h // 2) * (w // 2), 128, neuron, norm, generator),
        _readout(128, n_classes),
    )
    return stem, sn, body


def _spatial(h: int, w: int, factor: int, arch: str) -> None:
    if h % factor or w % factor or h < factor or w < factor:
        raise ValueError(f"{arch}: input height and width must be positive multiples of {factor} (its pooling), "
                         f"got {h}x{w}")


@dataclass(frozen=True)
class ArchInfo:
    """An architecture's builder and its usual input.

    Attributes
    ----------
    builder : callable
        ``builder(n_classes, input_shape, neuron, norm, generator) -> (stem, stem_neuron, body)``.
    input_shape : tuple (C, H, W)
        The dataset shape it was defined for.
    n_classes : int
    reference : str
        Where the definition comes from.
    """

    builder: Callable
    input_shape: tuple[int, int, int]
    n_classes: int
    reference: str


ARCHITECTURES: dict[str, ArchInfo] = {
    "cifarnet": ArchInfo(cifarnet, (3, 32, 32), 10, "Wu et al. 2019, AAAI 33:1311"),
    "resnet18": ArchInfo(resnet18, (3, 32, 32), 10, "Ma et al. 2023 (this paper), Experimental procedures"),
    "resnet19": ArchInfo(resnet19, (3, 32, 32), 10, "Zheng et al. 2021, AAAI 35:11062; TET code"),
    "vggsnn": ArchInfo(vggsnn, (2, 48, 48), 10, "Deng et al. 2022, ICLR (TET)"),
    "7bnet": ArchInfo(seven_b_net, (2, 128, 128), 11, "Fang et al. 2021, NeurIPS (SEW ResNet)"),
    "digits": ArchInfo(digits_net, (1, 8, 8), 10, "neurocode: small network for sklearn's 8x8 digits"),
}


def build_classifier(arch: str, *, n_classes: int | None = None, input_shape: tuple[int, int, int] | None = None,
                     neuron: NeuronSpec | None = None, norm: str = "bn", n_steps: int = 2,
                     generator: torch.Generator | None = None, mean=None, std=None) -> SpikingClassifier:
    """Build a recognition network.

    Parameters
    ----------
    arch : str
        A key of :data:`ARCHITECTURES`.
    n_classes : int, optional
        Default: the architecture's dataset's.
    input_shape : tuple (C, H, W), optional
        Default: the architecture's dataset's (e.g. (3, 32, 32) for CIFAR).
    neuron : NeuronSpec
        NSNN or DSNN and the neuron parameters (default: NSNN, sigma 0.3).
    norm : {"bn", "tdbn", "none"}
        See :mod:`neurocode.recognition.layers`.
    n_steps : int
        Time steps T a static input is presented for.
    generator : torch.Generator, optional
        Noise source of every NoisyLIF layer.
    mean, std : sequence of float, optional
        Per-channel input statistics: the model z-scores its (static or frame) input with them.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(map(repr, ARCHITECTURES))}, got {arch!r}")
    _choice(norm, NORMS, "norm")
    info = ARCHITECTURES[arch]
    neuron = NeuronSpec() if neuron is None else neuron
    if not isinstance(neuron, NeuronSpec):
        raise TypeError(f"neuron must be a NeuronSpec, got {type(neuron).__name__}")
    n_classes = info.n_classes if n_classes is None else n_classes
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    input_shape = tuple(info.input_shape if input_shape is None else input_shape)
    if len(input_shape) != 3 or any(not isinstance(v, int) or v < 1 for v in input_shape):
        raise ValueError(f"input_shape must be three positive integers (C, H, W), got {input_shape!r}")
    stem, stem_neuron, body = info.builder(n_classes, input_shape, neuron, norm, generator)
    normalization = InputNormalization(mean, std) if mean is not None else None
    model = SpikingClassifier(stem, stem_neuron, body, n_steps=n_steps, input_shape=input_shape, n_classes=n_classes,
                              neuron=neuron, norm=norm, arch=arch, normalization=normalization)
    _init(model)
    return model
