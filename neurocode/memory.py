"""Reuse of large CPU buffers across training steps: neurocode's caching allocator.

A spiking layer allocates [T, B, ...] maps of tens to hundreds of MB on every call and frees
them at the end of the step. Through torch's own CPU allocator, glibc maps every such block
afresh and unmaps it when it is freed, so every step faults all its pages in again and the
kernel zeroes them (at the paper preset 0.16 s of system time per 0.7-s training step).
neurocode's C++ extension carries a caching allocator (``neurons/csrc/cpu_cache.cpp``) that
keeps freed blocks of 1 MB and more, 2-MB aligned and advised as transparent huge pages
(unless ``THP_MEM_ALLOC_ENABLE=0``), and hands them to the next request of (about) the same
size, as torch's CUDA caching allocator does on a GPU. What it holds is bounded: kept blocks are
given back whenever the bytes in use plus the bytes kept would exceed 5/4 of the high-water mark
of bytes in use.

Scope: it is torch's CPU allocator only inside neurocode's own calls -- a fit, predict or
evaluate (:func:`neurocode.fit`, :func:`neurocode.evaluate`, ``predict_run``,
``simulate_run``), a spiking layer's forward and backward (:class:`~neurocode.neurons.LIF`,
:class:`~neurocode.neurons.NoisyLIF`, ``lif_sequence``) and each of the extension's operators
(the fused LIF kernel, the event convolution) -- and inside ``with caching_allocator():``,
where the user asks for it. It is installed on entry and the allocator installed before is
restored on the (outermost) exit, so torch code of the user's own between neurocode calls
allocates as it would without neurocode; a block of the cache freed after the exit still goes
back to the cache. Inside a scope it serves every large CPU tensor of the process, other
threads' included. ``import neurocode`` changes no environment variable and no allocator.

Opting out: ``NEUROCODE_CACHING_ALLOCATOR=0`` (read when the extension loads) for a whole
process, ``with caching_allocator(False):`` for a block (neurocode's calls inside it leave
torch's allocator alone). :func:`empty_cache` gives the kept blocks back, e.g. in a notebook
after a fit. Without the extension (no compiler, ``NEUROCODE_NO_KERNEL=1``) every function here
does nothing.
"""

from __future__ import annotations

import dataclasses

__all__ = ["CacheInfo", "cache_info", "caching_allocator", "empty_cache"]


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """The caching allocator's state, in bytes (blocks rounded up to 2 MB).

    Attributes
    ----------
    enabled : bool
        Whether it is torch's CPU allocator now (inside a neurocode call or a
        :class:`caching_allocator` block).
    in_use, kept, high_water : int
        Bytes in tensors now; bytes freed and kept for reuse; the most bytes in use at once
        (since the start or the last :func:`empty_cache`).
    hits, misses : int
        Requests served from kept blocks / by mapping new memory.
    """

    enabled: bool
    in_use: int
    kept: int
    high_water: int
    hits: int
    misses: int


def _ops():
    from neurocode.neurons import _kernels
    return _kernels.get_library()


class caching_allocator:  # noqa: N801 -- used as a function: with caching_allocator(): ...
    """A block in which neurocode's caching allocator is (True) or is not (False) torch's CPU allocator.

    ``with caching_allocator():`` -- every large CPU tensor allocated in the block (the user's
    own included) comes from the cache; the allocator installed before is back after the block.
    ``with caching_allocator(False):`` -- neurocode's calls in the block do not install it (and
    an enclosing block's is removed until the block ends). Blocks nest; each restores the
    setting it found.

    Parameters
    ----------
    enabled : bool
        Whether the caching allocator serves the block.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = bool(enabled)
        self._entered = []  # (operators, previous setting, scope) of each open `with` of this object

    def __enter__(self) -> "caching_allocator":
        from neurocode.neurons._kernels import CachingScope
        ops = _ops()
        was = bool(ops.cpu_cache_set_enabled(self.enabled)) if ops is not None else None
        scope = CachingScope() if self.enabled else None
        if scope is not None:
            scope.__enter__()
        self._entered.append((ops, was, scope))
        return self

    def __exit__(self, *exc_info) -> None:
        ops, was, scope = self._entered.pop()
        if scope is not None:
            scope.__exit__(*exc_info)
        if ops is not None:
            ops.cpu_cache_set_enabled(was)


def empty_cache() -> int:
    """Give every kept block back to the operating system; returns the bytes released."""
    ops = _ops()
    return int(ops.cpu_cache_empty()) if ops is not None else 0


def cache_info() -> CacheInfo:
    """The allocator's counters (all zero and ``enabled=False`` without the extension)."""
    ops = _ops()
    if ops is None:
        return CacheInfo(False, 0, 0, 0, 0, 0)
    in_use, kept, high, hits, misses, enabled = ops.cpu_cache_info()
    return CacheInfo(bool(enabled), in_use, kept, high, hits, misses)
