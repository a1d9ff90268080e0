"""What every spiking retina model shares: its neuron layers and their one noise source."""

from __future__ import annotations

import torch
from torch import nn

from neurocode.neurons import LIF, LearnableNoisyLIF, NoisyLIF
from neurocode.noise import ERF, Gaussian


class SpikingLayers(nn.Module):
    """Mixin for models whose ``self.neurons`` are NoisyLIF (NSNN) or LIF (DSNN) layers.

    The model's ``config`` provides ``noisy``, ``noise_sigma``, ``tau`` and ``v_th`` (and, for
    models with a per-cell readout population, ``readout_units`` and ``n_cells``).
    """

    def _neuron(self, generator: torch.Generator | None, *, noisy: bool | None = None,
                learnable_units: int | None = None, learnable_layer: bool = False, sigma: float | None = None):
        """A NoisyLIF (NSNN) or LIF (DSNN) layer; ``noisy=False`` forces a deterministic one
        (an NSNN's noise-free core), ``learnable_units`` a :class:`LearnableNoisyLIF` with that
        many noise scales (the noise scale trained per output unit), ``learnable_layer`` one with
        a single noise scale for the layer; ``sigma`` (initial) noise scale instead of the config's."""
        cfg = self.config
        noisy = cfg.noisy if noisy is None else noisy
        sigma = cfg.noise_sigma if sigma is None else sigma
        if noisy and (learnable_units is not None or learnable_layer):
            return LearnableNoisyLIF(learnable_units, sigma, tau=cfg.tau, v_th=cfg.v_th, generator=generator)
        if noisy:
            return NoisyLIF(Gaussian(sigma), tau=cfg.tau, v_th=cfg.v_th, generator=generator)
        return LIF(ERF(), tau=cfg.tau, v_th=cfg.v_th)

    @property
    def generator(self) -> torch.Generator | None:
        """The noise source of the noisy layers (None for a DSNN)."""
        return next((n.generator for n in self.neurons if isinstance(n, (NoisyLIF, LearnableNoisyLIF))), None)

    @generator.setter
    def generator(self, generator: torch.Generator | None) -> None:
        for n in self.neurons:
            if isinstance(n, (NoisyLIF, LearnableNoisyLIF)):
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

    def _run_output(self, current: torch.Tensor, return_potential: bool = False):
        """The output neurons over ``current [T, ...]``, ``output_substeps`` neuron steps per bin.

        Returns the spike count per bin ``[T, ...]`` and, with ``return_potential``, the
        pre-noise potentials of every substep ``[T * substeps, ...]`` (else None).
        """
        m = self.config.output_substeps
        T = current.shape[0]
        if m > 1:
            current = current.repeat_interleave(m, dim=0)
        x, ubar = self.neurons[-1](current, return_potential=True) if return_potential else (self.neurons[-1](current), None)
        return (x.view(T, m, *x.shape[1:]).sum(1) if m > 1 else x), ubar

    def _outputs(self, x: torch.Tensor, layers: list, ubar, n_trials: int, batch: int, return_all: bool,
                 return_probability: bool, substeps: int = 1):
        """The model's outputs from its last layer's spikes ``x [T, K*B, n_cells * units]`` (per bin).

        Spikes ``[T, K, B, n_cells]`` (a cell's units averaged), then with ``return_all`` the
        list of every layer's output, and with ``return_probability`` each trial's expected
        count per bin given its own history: ``F(ubar - v_th)`` of the output neurons' pre-noise
        potential, summed over a bin's ``substeps``.
        """
        cfg = self.config
        T = x.shape[0]
        units = x.view(T, n_trials, batch, cfg.n_cells, cfg.readout_units)
        out = units.mean(-1) if cfg.readout_units > 1 else units[..., 0]
        extra = ()
        if return_all:
            extra += (layers,)
        if return_probability:
            # P(o[t] = 1 | the trial's own history) = F(ubar[t] - v_th) for either noise placement
            prob = self.neurons[-1].firing_probability(ubar)
            extra += (prob.view(T, substeps, n_trials, batch, cfg.n_cells).sum(1),)
        return (out, *extra) if extra else out
