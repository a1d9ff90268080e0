"""Spiking neurons: the functional core and thin ``nn.Module`` wrappers."""

from neurocode.neurons._kernels import failure as kernel_failure
from neurocode.neurons._kernels import get_library as kernel_library
from neurocode.neurons._kernels import pure_torch
from neurocode.neurons.counter_rng import SeededGaussian, counter_normal
from neurocode.neurons.functional import heaviside_spike, lif_sequence, lif_step
from neurocode.neurons.learnable_noise_lif import LearnableNoisyLIF
from neurocode.neurons.lif import LIF
from neurocode.neurons.noisy_lif import NoisyLIF
from neurocode.neurons.spec import NeuronSpec, is_noisy, make_neuron

__all__ = ["LIF", "NoisyLIF", "LearnableNoisyLIF", "lif_sequence", "lif_step", "heaviside_spike", "pure_torch", "kernel_library",
           "kernel_failure", "SeededGaussian", "counter_normal", "NeuronSpec", "make_neuron", "is_noisy"]
