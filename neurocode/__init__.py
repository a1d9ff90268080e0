"""neurocode: noisy spiking neural networks, noise-driven learning and neural-coding analyses."""

from neurocode import noise
from neurocode.neurons import LIF, NoisyLIF

__version__ = "0.1.0"

__all__ = ["noise", "LIF", "NoisyLIF", "__version__"]
