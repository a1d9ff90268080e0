"""neurocode: noisy spiking neural networks, noise-driven learning and neural-coding analyses.

The top-level names are imported on first use, so that ``import neurocode.data`` (or
``neurocode.analysis``) does not pay for importing torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "noise": ("neurocode.noise", None),
    "LIF": ("neurocode.neurons", "LIF"),
    "NoisyLIF": ("neurocode.neurons", "NoisyLIF"),
    "fit": ("neurocode.pipeline", "fit"),
    "evaluate": ("neurocode.pipeline", "evaluate"),
    "sweep": ("neurocode.sweep", None),  # a callable module: neurocode.sweep(...) runs neurocode.sweep.sweep
}

__all__ = ["noise", "LIF", "NoisyLIF", "fit", "evaluate", "sweep", "__version__"]


def __getattr__(name):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'neurocode' has no attribute {name!r}") from None
    value = import_module(module) if attr is None else getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
