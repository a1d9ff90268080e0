"""What every spiking retina model shares: its neuron layers and their one noise source."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from neurocode.neurons import NeuronSpec, is_noisy, make_neuron
from neurocode.noise import make_noise


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

    The model's ``config`` provides ``noisy``, ``noise``, ``noise_sigma``, ``tau`` and ``v_th`` (and, for
    models with a per-cell readout population, ``readout_units`` and ``n_cells``).
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

    def _register_unit_offsets(self) -> None:
        """Buffer ``unit_offsets [n_cells * readout_units]``: a DSNN cell's units differ by fixed
        current offsets at the quantiles of the NSNN's noise (its noise frozen across a population)."""
        cfg = self.config
        if cfg.readout_units > 1:
            spread = make_noise(cfg.noise, cfg.noise_sigma).quantiles(cfg.readout_units)
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

    def _spiking_forward(self, drive: torch.Tensor, n_trials: int, batch: int, output_input, return_all: bool,
                         return_probability: bool):
        """The spiking layers in order, from the core's drive to the output neurons: one loop for every model.

        ``layer_current(i, x, n_trials, output_input)`` gives layer ``i``'s current from the
        drive (i = 0) or the previous layer's spikes; the last layer runs through
        :meth:`_run_output` (its substeps per bin). Returns as :meth:`_outputs`.
        """
        if n_trials < 1:
            raise ValueError(f"n_trials must be >= 1, got {n_trials}")
        cfg = self.config
        if return_probability and (not cfg.noisy or cfg.readout_units > 1):
            raise ValueError("return_probability applies to a noisy model with one unit per cell")
        x, layers, ubar = drive, [], None
        last = len(self.neurons) - 1
        for i, neuron in enumerate(self.neurons):
            current = self.layer_current(i, x, n_trials, output_input)
            if i < last:
                x = neuron(current)
            else:
                x, ubar = self._run_output(current, return_probability)
            layers.append(x)
        return self._outputs(x, layers, ubar, n_trials, batch, return_all, return_probability,
                             substeps=cfg.output_substeps)

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
