"""Spiking neurons: the functional core and thin ``nn.Module`` wrappers."""

from neurocode.neurons.functional import heaviside_spike, lif_sequence, lif_step
from neurocode.neurons.lif import LIF
from neurocode.neurons.noisy_lif import NoisyLIF

__all__ = ["LIF", "NoisyLIF", "lif_sequence", "lif_step", "heaviside_spike"]
