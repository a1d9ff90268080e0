"""neurocode: noisy spiking neural networks, noise-driven learning and neural-coding analyses."""

from neurocode import noise
from neurocode.neurons import LIF, NoisyLIF
from neurocode.pipeline import evaluate, fit  # light: the fitting stack is imported on call

__version__ = "0.1.0"

__all__ = ["noise", "LIF", "NoisyLIF", "fit", "evaluate", "__version__"]
