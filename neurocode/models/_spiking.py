"""What every spiking retina model shares: its neuron layers and their one noise source."""

from __future__ import annotations

import torch
from torch import nn

from neurocode.neurons import LIF, NoisyLIF
from neurocode.noise import ERF, Gaussian


class SpikingLayers(nn.Module):
    """Mixin for models whose ``self.neurons`` are NoisyLIF (NSNN) or LIF (DSNN) layers.

    The model's ``config`` provides ``noisy``, ``noise_sigma``, ``tau`` and ``v_th`` (and, for
    models with a per-cell readout population, ``readout_units`` and ``n_cells``).
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

    def _register_unit_offsets(self) -> None:
        """Buffer ``unit_offsets [n_cells * readout_units]``: a DSNN cell's units differ by fixed
        current offsets at the quantiles of the NSNN's noise (its noise frozen across a population)."""
        cfg = self.config
        if cfg.readout_units > 1:
            q = (torch.arange(cfg.readout_units, dtype=torch.float64) + 0.5) / cfg.readout_units
            spread = torch.distributions.Normal(0.0, cfg.noise_sigma).icdf(q).float()
            self.register_buffer("unit_offsets", spread.repeat(cfg.n_cells))
        else:
            self.register_buffer("unit_offsets", torch.zeros(cfg.n_cells))

    def _units(self, cell_current: torch.Tensor) -> torch.Tensor:
        """A cell's current for each of its units: ``[..., N] -> [..., N * readout_units]``."""
        units = self.config.readout_units
        if units > 1:
            cell_current = cell_current.repeat_interleave(units, dim=-1)
        return cell_current + self.unit_offsets
