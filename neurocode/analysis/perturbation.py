"""Spike-state perturbation (paper, robustness tests): flip spikes with probability beta.

Usage::

    handle = layer.register_forward_hook(SpikeFlip(0.1))       # one layer
    with perturb_spikes(model, 0.1, layer_types=(NoisyLIF, "LIF")):
        out = model(x)                                        # every matching layer

This module deliberately imports nothing from ``neurocode.neurons`` / models: the layer
classes (or their class names) are passed in by the caller.
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from torch import nn

__all__ = ["SpikeFlip", "flip_spikes", "perturb_spikes"]


def flip_spikes(spikes: torch.Tensor, beta: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each binary entry of ``spikes`` (1 -> 0 and 0 -> 1) independently with probability ``beta``.

    Returns a new tensor of the same dtype/device; values other than 0/1 are treated as
    spike (non-zero) / no spike.
    """
    if beta <= 0:
        return spikes
    if generator is not None and generator.device != spikes.device:
        u = torch.rand(spikes.shape, generator=generator, device=generator.device).to(spikes.device)
    else:
        u = torch.rand(spikes.shape, generator=generator, device=spikes.device)
    flip = u < beta
    s = (spikes != 0)
    return torch.where(flip, ~s, s).to(spikes.dtype)


class SpikeFlip:
    """Forward hook flipping each binary spike output with probability ``beta``.

    Parameters
    ----------
    beta : float in [0, 1]
        Flip probability (applied to 1 -> 0 and 0 -> 1 alike).
    generator : torch.Generator, optional
        For reproducible perturbations.

    Notes
    -----
    Register with ``module.register_forward_hook(SpikeFlip(beta))``. The hook returns the
    perturbed output, which replaces the module's output. If the output is a tuple/list
    (e.g. ``(spikes, potentials)``), only the first element is flipped.
    """

    def __init__(self, beta: float, generator: torch.Generator | None = None):
        if not 0.0 <= float(beta) <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.beta = float(beta)
        self.generator = generator

    def __call__(self, module: nn.Module, inputs, output):
        if isinstance(output, (tuple, list)):
            first = flip_spikes(output[0], self.beta, self.generator)
            return type(output)((first, *output[1:])) if isinstance(output, tuple) else [first, *output[1:]]
        return flip_spikes(output, self.beta, self.generator)

    def __repr__(self) -> str:
        return f"SpikeFlip(beta={self.beta})"


def _matches(module: nn.Module, names: set[str], classes: tuple) -> bool:
    return type(module).__name__ in names or (bool(classes) and isinstance(module, classes))


@contextlib.contextmanager
def perturb_spikes(model: nn.Module, beta: float, layer_types: Iterable = (),
                   generator: torch.Generator | None = None):
    """Context manager registering :class:`SpikeFlip` on every spiking layer of ``model``.

    Parameters
    ----------
    model : nn.Module
    beta : float
        Flip probability.
    layer_types : iterable of classes and/or class-name strings
        A module is perturbed if its class name is among the strings or it is an instance
        of one of the classes.
    generator : torch.Generator, optional

    Yields
    ------
    list of nn.Module
        The perturbed modules (hooks are removed on exit, also on error).
    """
    layer_types = tuple(layer_types)
    names = {t for t in layer_types if isinstance(t, str)}
    classes = tuple(t for t in layer_types if isinstance(t, type))
    if not names and not classes:
        raise ValueError("layer_types must name at least one spiking layer class")
    hook = SpikeFlip(beta, generator)
    modules = [m for m in model.modules() if _matches(m, names, classes)]
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield modules
    finally:
        for h in handles:
            h.remove()
