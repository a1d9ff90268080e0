"""neurocode: noisy spiking neural networks, noise-driven learning and neural-coding analyses.

The top-level names are imported on first use, so that ``import neurocode.data`` (or
``neurocode.analysis``) does not pay for importing torch.
"""

import os as _os
from importlib import import_module

# A spiking layer's [T, B, ...] maps are hundreds of MB of fresh memory on every call; with
# 4-KB pages the kernel faults each page in (about 490k faults per training step at the
# retina shapes, more system time than compute). Those maps come from neurocode's caching
# allocator (neurocode/memory.py), which advises its blocks as huge pages itself, whatever the
# import order. torch backs its own large CPU allocations (what the caching allocator does not
# serve, and what was allocated before the extension loaded) with transparent huge pages when
# this is set before its first allocation -- not at `import torch`, which allocates nothing --
# so it is set here unless the user has chosen (THP_MEM_ALLOC_ENABLE=0 opts out of both).
# (Kept independent of whether torch is imported: tests/test_memory.py runs both orders.)
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

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
