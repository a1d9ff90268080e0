"""Reuse of large CPU buffers across training steps: neurocode's caching allocator.

A spiking layer allocates [T, B, ...] maps of tens to hundreds of MB on every call and frees
them at the end of the step. Through torch's own CPU allocator, glibc maps every such block
afresh and unmaps it when it is freed, so every step faults all its pages in again and the
kernel zeroes them (at the paper preset 0.16 s of system time per 0.7-s training step).
neurocode's C++ extension carries a caching allocator (``neurons/csrc/cpu_cache.cpp``) that
keeps freed blocks of 1 MB and more and hands them to the next request of (about) the same
size, as torch's CUDA caching allocator does on a GPU. What it holds is bounded: kept blocks are
given back whenever the bytes in use plus the bytes kept would exceed 5/4 of the high-water mark
of bytes in use.

It is installed when the extension is loaded (the first spiking layer's call), unless
``NEUROCODE_CACHING_ALLOCATOR=0``. :func:`empty_cache` gives the kept blocks back, e.g. in a
notebook after a fit. Without the extension (no compiler, ``NEUROCODE_NO_KERNEL=1``) every
function here does nothing.
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
        Whether it is torch's CPU allocator now.
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


def caching_allocator(enabled: bool = True) -> bool:
    """Install (True) or remove (False) the caching allocator as torch's CPU allocator.

    Blocks allocated while it was installed keep their own deleter: removing it is safe with
    tensors alive.

    Returns
    -------
    bool
        Whether it was installed before the call (False also when the extension is unavailable).
    """
    ops = _ops()
    return bool(ops.cpu_cache_set_enabled(bool(enabled))) if ops is not None else False


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
