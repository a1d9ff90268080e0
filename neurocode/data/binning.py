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

import numpy as np

__all__ = ["BIN_TOLERANCE", "n_bins", "bin_index"]

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
    n = int(_floor(np.asarray([duration / bin_size]))[0])
    if n < 1:
        raise ValueError(f"bin_size={bin_size} s is longer than the window of {duration:g} s")
    return n


def bin_index(times: np.ndarray, t_start: float, bin_size: float) -> np.ndarray:
    """Bin of each spike time relative to ``t_start`` (int64, may be negative or ``>= T``).

    Callers drop indices outside ``0..T-1``.
    """
    return _floor((np.asarray(times, dtype=np.float64) - float(t_start)) * (1.0 / float(bin_size)))
