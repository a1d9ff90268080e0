"""Conversions between model spike tensors, count arrays and neo / elephant objects.

Conventions
-----------
* Internal arrays are **time-major**: counts ``[T, trials, cells]`` for one stimulus,
  ``[n_stimuli, T, trials, cells]`` for a recording.
* At the neo boundary times are in **seconds** (``quantities``).
* A spike in time step ``t`` of a model tensor with step ``dt`` is placed at the bin
  centre ``t_start + (t + 0.5) * dt``; binning back with ``bin_size=dt`` therefore
  recovers the tensor exactly (no edge rounding issues). A count ``n > 1`` becomes
  ``n`` coincident spikes.
* Binning follows :class:`elephant.conversion.BinnedSpikeTrain` exactly, by the package's one
  rule (:mod:`neurocode.data.binning`): half-open bins, a spike at ``t_stop`` is not counted.
  :func:`bin_spike_times` is the vectorised fast path, tested equal to :func:`binned_counts`
  (elephant).
"""

from __future__ import annotations


import numpy as np
import quantities as pq

import neo

from neurocode.data.binning import bin_index, check_binned_size, n_bins

__all__ = [
    "to_numpy",
    "spikes_to_spiketrains",
    "spikes_to_block",
    "binned_spike_train",
    "binned_counts",
    "bin_spike_times",
    "spiketrains_to_counts",
    "block_to_counts",
    "spike_counts",
]


def to_numpy(x) -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors are detached and moved to CPU).

    Tensors of a dtype numpy lacks (``torch.bfloat16``, the float8 types) are converted to
    float32 first, exactly (every bfloat16 value is a float32 value).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        t = x.detach().cpu()
        try:
            return t.numpy()
        except TypeError:  # "Got unsupported ScalarType BFloat16"
            return t.float().numpy()
    if isinstance(x, pq.Quantity):
        return np.asarray(x.magnitude)
    return np.asarray(x)


def _as_seconds(x, name: str = "time") -> float:
    try:
        if isinstance(x, pq.Quantity):
            return float(x.rescale(pq.s).magnitude)
        return float(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number of seconds, got {x!r} ({exc})") from None


def check_step(value, name: str, window: float | None = None) -> float:
    """``value`` (s) as a float; ValueError naming ``name`` unless ``0 < value`` (``<= window`` if given)."""
    v = _as_seconds(value, name)
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {v:g}")
    if window is not None and v > window * (1 + 1e-9):
        raise ValueError(f"{name}={v:g} s is longer than the window of {window:g} s")
    return v


def check_window(t_start: float, t_stop: float) -> None:
    """ValueError unless ``t_start < t_stop`` (both finite)."""
    if not (np.isfinite(t_start) and np.isfinite(t_stop)):
        raise ValueError(f"t_start and t_stop must be finite, got ({t_start:g}, {t_stop:g})")
    if not t_stop > t_start:
        raise ValueError(f"t_stop must be greater than t_start, got t_start={t_start:g} s, t_stop={t_stop:g} s")


def spikes_to_spiketrains(spikes, dt: float, t_start: float = 0.0) -> list[list[neo.SpikeTrain]]:
    """Convert a spike tensor ``[T, trials, cells]`` into nested lists of spike trains.

    Parameters
    ----------
    spikes : array-like or torch.Tensor, shape ``[T, trials, cells]`` (or ``[T, cells]``)
        Binary spikes or non-negative integer counts per time step.
    dt : float or Quantity
        Time step in seconds.
    t_start : float or Quantity
        Start of the window in seconds.

    Returns
    -------
    list of list of neo.SpikeTrain
        ``trains[trial][cell]``, times in seconds, ``t_stop = t_start + T * dt``.
    """
    x = to_numpy(spikes)
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3:
        raise ValueError(f"spikes must be [T, trials, cells], got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"spikes is empty (shape {x.shape})")
    dt = check_step(dt, "dt")
    t0 = _as_seconds(t_start, "t_start")
    T, n_trials, n_cells = x.shape
    if not np.isfinite(x).all():
        raise ValueError("spikes contains NaN or infinite values")
    counts = np.rint(x).astype(np.int64)
    if np.any(counts < 0):
        raise ValueError("spike counts must be non-negative")
    t_stop = t0 + T * dt
    centres = t0 + (np.arange(T) + 0.5) * dt
    out = []
    for k in range(n_trials):
        row = []
        for c in range(n_cells):
            times = np.repeat(centres, counts[:, k, c])
            row.append(neo.SpikeTrain(times, units="s", t_start=t0, t_stop=t_stop))
        out.append(row)
    return out


def spikes_to_block(spikes, dt: float, t_start: float = 0.0, name: str = "") -> neo.Block:
    """Convert spikes ``[T, trials, cells]`` or ``[n_stimuli, T, trials, cells]`` into a Block.

    One :class:`neo.Segment` per (stimulus, trial), one SpikeTrain per cell, with
    annotations ``cell``, ``stimulus`` and ``trial`` (the layout of
    ``neurocode.data.Recording.to_neo``).
    """
    x = to_numpy(spikes)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"spikes must be [T, trials, cells] or [S, T, trials, cells], got {x.shape}")
    block = neo.Block(name=name)
    for s in range(x.shape[0]):
        trains = spikes_to_spiketrains(x[s], dt, t_start)
        for k, row in enumerate(trains):
            seg = neo.Segment(name=f"stimulus {s} trial {k}", stimulus=s, trial=k)
            for c, st in enumerate(row):
                st.annotate(cell=c, stimulus=s, trial=k)
                seg.spiketrains.append(st)
            block.segments.append(seg)
    return block


def _flatten_trains(spiketrains) -> tuple[list, tuple]:
    """Flatten a (nested) list of SpikeTrains; return flat list and the nesting shape."""
    if isinstance(spiketrains, neo.SpikeTrain):
        return [spiketrains], ()
    spiketrains = list(spiketrains)
    if len(spiketrains) and not isinstance(spiketrains[0], neo.SpikeTrain):
        flat, inner = [], None
        for row in spiketrains:
            f, shp = _flatten_trains(row)
            if inner is not None and shp != inner:
                raise ValueError("ragged nested spike-train lists are not supported")
            inner = shp
            flat.extend(f)
        return flat, (len(spiketrains),) + (inner or ())
    return spiketrains, (len(spiketrains),)


def binned_spike_train(spiketrains, bin_size, t_start=None, t_stop=None, tolerance=1e-8):
    """Thin wrapper over :class:`elephant.conversion.BinnedSpikeTrain` (bin_size in s if float)."""
    # imported here: elephant's package import takes ~1 s (all its modules), which every CLI call
    # and every fit would otherwise pay
    from elephant.conversion import BinnedSpikeTrain

    flat, _ = _flatten_trains(spiketrains)
    bs = bin_size if isinstance(bin_size, pq.Quantity) else bin_size * pq.s
    ts = None if t_start is None else (t_start if isinstance(t_start, pq.Quantity) else t_start * pq.s)
    te = None if t_stop is None else (t_stop if isinstance(t_stop, pq.Quantity) else t_stop * pq.s)
    return BinnedSpikeTrain(flat, bin_size=bs, t_start=ts, t_stop=te, tolerance=tolerance)


def binned_counts(spiketrains, bin_size, t_start=None, t_stop=None, tolerance=1e-8) -> np.ndarray:
    """Bin (nested lists of) SpikeTrains with elephant; time-major output.

    Parameters
    ----------
    spiketrains : SpikeTrain, list of SpikeTrain, or nested list ``[trial][cell]`` / ``[a][b][c]``
    bin_size, t_start, t_stop : float (seconds) or Quantity

    Returns
    -------
    np.ndarray of int
        ``[n_bins, *nesting]``, e.g. ``[T, trials, cells]`` for ``trains[trial][cell]``.
    """
    flat, shape = _flatten_trains(spiketrains)
    bst = binned_spike_train(flat, bin_size, t_start, t_stop, tolerance)
    arr = bst.to_array()  # [n_trains, n_bins]
    return arr.T.reshape((arr.shape[1],) + shape)


def bin_spike_times(spike_times, bin_size: float, t_start: float, t_stop: float) -> np.ndarray:
    """Vectorised binning of spike-time arrays with elephant's BinnedSpikeTrain semantics.

    The rule is :mod:`neurocode.data.binning` (the package's only one), tested equal to
    :func:`binned_counts` (elephant).

    Parameters
    ----------
    spike_times : nested sequence of 1-D arrays (seconds), or SpikeTrains
        Any nesting ``[a][b]...``; leaves are spike-time arrays.
    bin_size, t_start, t_stop : float
        Seconds.

    Returns
    -------
    np.ndarray of int64, ``[n_bins, *nesting]``
    """
    t_start, t_stop = _as_seconds(t_start, "t_start"), _as_seconds(t_stop, "t_stop")
    check_window(t_start, t_stop)
    bin_size = check_step(bin_size, "bin_size", t_stop - t_start)
    leaves, shape = _flatten_leaves(spike_times)
    if not leaves or 0 in shape:
        raise ValueError("spike_times is empty: expected (nested lists of) spike-time arrays")
    T = n_bins(t_stop - t_start, bin_size)
    check_binned_size((T,) + tuple(shape), bin_size, t_stop - t_start, what="counts [bins, *nesting]")
    lengths = np.fromiter((len(v) for v in leaves), dtype=np.int64, count=len(leaves))
    if lengths.sum():
        times = np.concatenate([_leaf_seconds(v) for v in leaves])
    else:
        times = np.zeros(0)
    bad = ~np.isfinite(times)
    if bad.any():
        leaf = int(np.searchsorted(np.cumsum(lengths), int(np.argmax(bad)), side="right"))
        where = tuple(int(i) for i in np.unravel_index(leaf, shape)) if shape else ()
        raise ValueError(f"spike_times contains NaN or infinite spike times (train {where}); they would be "
                         "dropped without a trace")
    owner = np.repeat(np.arange(len(leaves)), lengths)
    bins = bin_index(times, t_start, bin_size)
    ok = (times >= t_start) & (bins >= 0) & (bins < T)
    flat_idx = owner[ok] * T + bins[ok]
    counts = np.bincount(flat_idx, minlength=len(leaves) * T).reshape(len(leaves), T)
    return counts.T.reshape((T,) + shape)


def _leaf_seconds(v) -> np.ndarray:
    if isinstance(v, pq.Quantity):
        return np.asarray(v.rescale(pq.s).magnitude, dtype=float).ravel()
    return np.asarray(v, dtype=float).ravel()


def _is_leaf(v) -> bool:
    if isinstance(v, (neo.SpikeTrain, pq.Quantity)):
        return True
    if isinstance(v, np.ndarray):
        return v.dtype != object
    if isinstance(v, (list, tuple)):
        return len(v) == 0 or np.isscalar(v[0])
    return False


def _flatten_leaves(x) -> tuple[list, tuple]:
    if _is_leaf(x):
        return [x], ()
    flat, inner = [], None
    n = 0
    for row in x:
        f, shp = _flatten_leaves(row)
        if inner is not None and shp != inner:
            raise ValueError("ragged nested spike-time lists are not supported")
        inner = shp
        flat.extend(f)
        n += 1
    return flat, (n,) + (inner or ())


def spiketrains_to_counts(spiketrains, bin_size, t_start=None, t_stop=None, fast: bool = True) -> np.ndarray:
    """Counts ``[n_bins, *nesting]`` from nested SpikeTrains (fast path or elephant).

    ``t_start``/``t_stop`` default to the values shared by all spike trains. Like elephant,
    trains of different ``t_start`` (``t_stop``) need an explicit ``t_start`` (``t_stop``):
    ValueError otherwise, naming the values that differ (never a silent cut to the common
    window).
    """
    flat, _ = _flatten_trains(spiketrains)
    if not flat:
        raise ValueError("spiketrains is empty: expected (nested lists of) neo.SpikeTrain")
    if t_start is None:
        t_start = _common(flat, "t_start")
    if t_stop is None:
        t_stop = _common(flat, "t_stop")
    if not fast:
        return binned_counts(spiketrains, bin_size, t_start, t_stop)
    return bin_spike_times(spiketrains, bin_size, t_start, t_stop)


def _common(flat: list, key: str) -> float:
    """The ``t_start``/``t_stop`` shared by all trains (s); ValueError naming the values if they differ."""
    values = np.array([_as_seconds(getattr(st, key), key) for st in flat])
    lo, hi = float(values.min()), float(values.max())
    if lo != hi:
        i, j = int(np.argmin(values)), int(np.argmax(values))
        raise ValueError(
            f"the spike trains have different {key} ({lo:g} s for train {i}, {hi:g} s for train {j}); pass "
            f"{key} explicitly to bin over a shared window (e.g. t_start = the largest t_start, t_stop = the "
            "smallest t_stop), as elephant requires"
        )
    return lo


def block_to_counts(block: neo.Block, bin_size=None, t_start=None, t_stop=None, fast: bool = True) -> np.ndarray:
    """Counts from a Block laid out as in :func:`spikes_to_block` / ``Recording.to_neo``.

    Segments and spike trains are placed with their ``stimulus``, ``trial`` and ``cell``
    annotations (falling back to order). Returns ``[n_stimuli, n_bins, trials, cells]``,
    or ``[n_stimuli, trials, cells]`` whole-window spike counts when ``bin_size`` is None.
    """
    entries = []
    for si, seg in enumerate(block.segments):
        s = seg.annotations.get("stimulus", None)
        k = seg.annotations.get("trial", None)
        for ci, st in enumerate(seg.spiketrains):
            ann = st.annotations
            entries.append((ann.get("stimulus", s if s is not None else 0),
                            ann.get("trial", k if k is not None else si),
                            ann.get("cell", ci), st))
    if not entries:
        raise ValueError(f"block {block.name!r} holds no spike trains")
    S = 1 + max(e[0] for e in entries)
    K = 1 + max(e[1] for e in entries)
    C = 1 + max(e[2] for e in entries)
    nested = [[[None] * C for _ in range(K)] for _ in range(S)]
    for s, k, c, st in entries:
        nested[s][k][c] = st
    if bin_size is None:
        return np.array([[[len(st) for st in row] for row in stim] for stim in nested])
    counts = spiketrains_to_counts(nested, bin_size, t_start, t_stop, fast=fast)  # [n_bins, S, K, C]
    return np.moveaxis(counts, 0, 1)


def spike_counts(spiketrains) -> np.ndarray:
    """Number of spikes of each train in a (nested) list; shape = nesting shape."""
    flat, shape = _flatten_trains(spiketrains)
    return np.array([len(st) for st in flat], dtype=np.int64).reshape(shape)
