"""The one binning rule of neurocode (elephant's :class:`~elephant.conversion.BinnedSpikeTrain`).

A window ``[t_start, t_stop)`` of width ``D`` is cut into ``T = floor(D / bin_size)`` bins
(a quotient within ``1e-8`` of the next integer counts as that integer, so 0.3 s / 0.01 s
gives 30 bins, not 29); a remainder shorter than one bin at the end of the window is not
binned. Bin ``i`` is the half-open interval ``[t_start + i·bin_size, t_start + (i+1)·bin_size)``,
and a spike at ``t`` falls in bin ``floor((t - t_start) / bin_size)``, again moved up when it
lies within ``1e-8`` bins of the next edge (spike times stored as integer milliseconds sit
exactly on 10-ms edges, and 0.29 / 0.01 = 28.999999999999996). Spikes at or after
``t_start + T·bin_size`` -- including a spike at exactly ``t_stop`` -- are not counted.

:meth:`neurocode.data.Recording.binned`, :class:`neurocode.data.ContinuousRecording` and
:func:`neurocode.analysis.bin_spike_times` all use these two functions, so a recording binned
by neurocode and the same spike trains binned by elephant give identical counts.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["BIN_TOLERANCE", "n_bins", "bin_index", "check_binned_size"]

#: Relative tolerance (in bins) of both the bin count and the bin of a spike.
BIN_TOLERANCE = 1e-8


def _floor(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    # floor first, then add the correction: 3.9999999999999996 + 1 rounds to 5.0 in float64
    return np.floor(values).astype(np.int64) + ((1 - BIN_TOLERANCE) <= values % 1)


def n_bins(duration: float, bin_size: float) -> int:
    """Number of whole bins of ``bin_size`` s in ``duration`` s (see the module docstring).

    Raises
    ------
    ValueError
        ``bin_size`` is not a positive finite number or longer than ``duration``.
    """
    duration, bin_size = float(duration), float(bin_size)
    if not (bin_size > 0 and np.isfinite(bin_size)):
        raise ValueError(f"bin_size must be a positive number of seconds, got {bin_size}")
    quotient = duration / bin_size
    if not quotient < 2.0 ** 53:  # past int64's exact range (and the machine's, by far)
        raise ValueError(f"bin_size={bin_size:g} s over a window of {duration:g} s gives {quotient:.3g} bins; use a "
                         "larger bin size (--bin-size) or a shorter window (--window)")
    n = int(_floor(np.asarray([quotient]))[0])
    if n < 1:
        raise ValueError(f"bin_size={bin_size} s is longer than the window of {duration:g} s")
    return n


def bin_index(times: np.ndarray, t_start: float, bin_size: float) -> np.ndarray:
    """Bin of each spike time relative to ``t_start`` (int64, may be negative or ``>= T``).

    Callers drop indices outside ``0..T-1``.
    """
    return _floor((np.asarray(times, dtype=np.float64) - float(t_start)) * (1.0 / float(bin_size)))


def _memory_bytes() -> int:
    """Physical memory of this machine (bytes); 64 GiB where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 64 * 2 ** 30


def _bytes(n: float) -> str:
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} bytes"


def check_binned_size(shape: tuple[int, ...], bin_size: float, duration: float, what: str = "counts",
                      itemsize: int = 8) -> None:
    """Refuse, before allocating, an array of binned data larger than the machine's memory.

    Parameters
    ----------
    shape : tuple of int
        The array the binning would allocate (e.g. ``[n_stimuli, T, n_trials, n_cells]``).
    bin_size, duration : float
        Seconds; named in the message (the arguments that make the array large).
    what : str
        What the array is, for the message.
    itemsize : int
        Bytes per element (8: int64 counts).

    Raises
    ------
    ValueError
        One line naming ``bin_size``, the window, the shape and the memory it would need.
    """
    need = math.prod(int(v) for v in shape) * int(itemsize)
    have = _memory_bytes()
    if need > have:
        raise ValueError(f"bin_size={bin_size:g} s over a window of {duration:g} s: the {what} "
                         f"[{', '.join(str(int(v)) for v in shape)}] would need {_bytes(need)}, more than this "
                         f"machine's memory ({_bytes(have)}); use a larger bin size (--bin-size) or a shorter "
                         "window (--window)")
