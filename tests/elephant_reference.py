"""Reference implementations with elephant's own functions, used by the tests to check the
fast vectorised paths of :mod:`neurocode.analysis` (slow: one elephant call per cell)."""

from __future__ import annotations

import neo
import numpy as np
import quantities as pq


def fano_factor_elephant(trains) -> np.ndarray:
    """Reference path: elephant's ``fanofactor`` per cell for ``trains[trial][cell]``.

    Returns ``[cells]``. Slow (one elephant call per cell); 
    """
    from elephant.statistics import fanofactor

    n_cells = len(trains[0])
    out = np.empty(n_cells)
    for c in range(n_cells):
        out[c] = fanofactor([row[c] for row in trains])
    return out


# --------------------------------------------------------------------------- cosine similarity


def psth_elephant(trains, bin_size, t_start=None, t_stop=None) -> np.ndarray:
    """Reference PSTH with :func:`elephant.statistics.time_histogram` (``output='rate'``).

    ``trains`` is a list of SpikeTrains (-> ``[n_bins]``) or nested ``[trial][cell]``
    (-> ``[n_bins, cells]``); Hz.
    """
    from elephant.statistics import time_histogram

    q = lambda v: None if v is None else (v if isinstance(v, pq.Quantity) else v * pq.s)  # noqa: E731
    bs = q(bin_size)
    if isinstance(trains[0], neo.SpikeTrain):
        h = time_histogram(trains, bin_size=bs, t_start=q(t_start), t_stop=q(t_stop), output="rate")
        return h.rescale("Hz").magnitude[:, 0]
    n_cells = len(trains[0])
    cols = []
    for c in range(n_cells):
        h = time_histogram([row[c] for row in trains], bin_size=bs, t_start=q(t_start),
                           t_stop=q(t_stop), output="rate")
        cols.append(h.rescale("Hz").magnitude[:, 0])
    return np.stack(cols, axis=1)
