"""The paper network's neuron layers and their one noise source; the neuron options of a config."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from neurocode.neurons import NeuronSpec, is_noisy, make_neuron


def check_neuron_options(options: dict | None, name: str) -> None:
    """ValueError naming ``name`` unless ``options`` is None or valid :class:`NeuronSpec` fields."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise ValueError(f"{name} must be a dict of NeuronSpec fields or None, got {options!r}")
    known = {f.name for f in dataclasses.fields(NeuronSpec)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{name}: unknown neuron option(s) {unknown}; NeuronSpec has {sorted(known)}")
    try:
        NeuronSpec(**options)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


class SpikingLayers(nn.Module):
    """Mixin for models whose ``self.neurons`` are NoisyLIF (NSNN) or LIF (DSNN) layers.

    The model's ``config`` provides ``noisy``, ``noise``, ``noise_sigma``, ``tau`` and ``v_th``.
    """

    def neuron_spec(self, part: str = "core") -> NeuronSpec:
        """The :class:`~neurocode.neurons.NeuronSpec` of the model's ``part`` ("core" or "output").

        The config's noise family at ``noise_sigma`` (NSNN) or a deterministic LIF (DSNN),
        updated by the part's own options (``core_neuron`` / ``output_neuron``, where the
        config has them).
        """
        cfg = self.config
        spec = NeuronSpec(family="noisy_lif" if cfg.noisy else "lif", noise=cfg.noise, sigma=cfg.noise_sigma,
                          tau=cfg.tau, v_th=cfg.v_th)
        return dataclasses.replace(spec, **(getattr(cfg, f"{part}_neuron", None) or {}))

    def _neuron(self, generator: torch.Generator | None, part: str = "core", n_neurons: int | None = None):
        """A spiking layer of the model's ``part`` (:meth:`neuron_spec`), ``n_neurons`` wide."""
        return make_neuron(self.neuron_spec(part), generator, n_neurons)

    @property
    def generator(self) -> torch.Generator | None:
        """The noise source of the noisy layers (None for a DSNN)."""
        return next((n.generator for n in self.neurons if is_noisy(n)), None)

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        for n in self.neurons:
            if is_noisy(n):
                n.generator = generator
