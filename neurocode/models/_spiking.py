"""What every spiking retina model shares: its neuron layers and their one noise source."""

from __future__ import annotations

import torch
from torch import nn

from neurocode.neurons import LIF, NoisyLIF
from neurocode.noise import ERF, Gaussian


class SpikingLayers(nn.Module):
    """Mixin for models whose ``self.neurons`` are NoisyLIF (NSNN) or LIF (DSNN) layers.

    The model's ``config`` provides ``noisy``, ``noise_sigma``, ``tau`` and ``v_th``.
    """

    def _neuron(self, generator: torch.Generator | None):
        cfg = self.config
        if cfg.noisy:
            return NoisyLIF(Gaussian(cfg.noise_sigma), tau=cfg.tau, v_th=cfg.v_th, generator=generator)
        return LIF(ERF(), tau=cfg.tau, v_th=cfg.v_th)

    @property
    def generator(self) -> torch.Generator | None:
        """The noise source of the noisy layers (None for a DSNN)."""
        return getattr(self.neurons[0], "generator", None)

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        for n in self.neurons:
            if isinstance(n, NoisyLIF):
                n.generator = generator
