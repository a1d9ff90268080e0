"""A prepared recording: stimuli, spike times per (stimulus, cell, trial), provenance.

The :class:`Recording` keeps the spike times of all trains in one flat ``float64`` array
plus offsets (the same layout as the HDF5 file), so that loading and binning are
vectorised; ``rec.spike_times[s][c][k]`` gives per-train views built on first access.

A stimulus is a flashed frame ``[H, W]`` shown over the response window, or a clip
``[F, H, W]`` of frames on a regular grid (``frame_interval`` s, frame 0 at
``stimulus_start`` s relative to the window's clock), e.g. a 1-s piece of a movie cut out by
:meth:`neurocode.data.ContinuousRecording.to_clips`. Each stimulus has its own number of
trials. Binning follows the package's one rule, :mod:`neurocode.data.binning`.

The class knows no file format: :meth:`Recording.save` and :meth:`Recording.to_nwb` call the
writers that :mod:`neurocode.data.hdf5` and :mod:`neurocode.data.nwb` register in
:mod:`neurocode.data.formats` (the formats import this module, never the reverse). The HDF5
layout is documented in ``datasets/README.md``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neurocode.data.binning import bin_index, check_binned_size, n_bins
from neurocode.data.errors import DataFormatError
from neurocode.data.formats import writer

__all__ = ["Recording"]

#: ``neurocode_schema_version`` annotation of :meth:`Recording.to_neo` blocks: the recording
#: layout they carry is that of the HDF5 files' schema version 2.
NEO_SCHEMA_VERSION = 2


def _num(x: float) -> str:
    """Short but exact: 0.3 for 0.3, 0.30000001192092896 for float32(0.3) (never "0.3 outside [0, 0.3]")."""
    x = float(x)
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


class _SpikeTimesView(Sequence):
    """Read-only nested view ``view[s][c][k]`` onto the flat spike-time array."""

    def __init__(self, rec: "Recording"):
        self._rec = rec
        self._nested: list | None = None

    def _build(self) -> list:
        if self._nested is None:
            rec = self._rec
            times, off = rec.spike_times_flat, rec.spike_offsets
            nested = []
            for s, R in enumerate(rec.trial_counts):
                base = rec._train_base[s]
                nested.append([[times[off[i] : off[i + 1]] for i in range(base + c * R, base + (c + 1) * R)]
                               for c in range(rec.n_cells)])
            self._nested = nested
        return self._nested

    def __getitem__(self, s):
        return self._build()[s]

    def __len__(self) -> int:
        return self._rec.shape[0]


def _as_frames(stim: Any, n_stimuli: int, src: str, field_: str = "stimuli") -> np.ndarray:
    """Validate stimulus frames: uint8 or float ``[n_stimuli, H, W]`` or ``[n_stimuli, F, H, W]``."""
    arr = np.asarray(stim)
    if arr.ndim not in (3, 4) or arr.shape[0] != n_stimuli or min(arr.shape, default=0) < 1:
        raise DataFormatError(f"{src}: field '{field_}' must be [n_stimuli={n_stimuli}, H, W] (flashed frames) or "
                              f"[n_stimuli, F, H, W] (clips), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) or arr.dtype == bool:
        raise DataFormatError(f"{src}: field '{field_}' must be uint8 or floating point, got {arr.dtype}")
    if not np.isfinite(arr).all():
        raise DataFormatError(f"{src}: field '{field_}' contains NaN or infinite values")
    largest = float(np.abs(arr).max())
    float32_max = float(np.finfo(np.float32).max)
    if largest > float32_max:  # the cast would make them infinite
        raise DataFormatError(f"{src}: field '{field_}' holds values up to {largest:g}, outside the float32 range "
                              f"(±{float32_max:.3g}) frames are stored in")
    return np.ascontiguousarray(arr, dtype=np.float32)


@dataclass(eq=False)
class Recording:
    """Spike responses of a population of cells to repeated stimuli.

    Parameters
    ----------
    name : str
        Short identifier (the HDF5 group name), e.g. ``"natural_images"``.
    spike_times_flat : np.ndarray
        float64 ``[n_spikes]``, seconds relative to stimulus onset; all trains concatenated
        stimulus-major, then cell, then trial, each train sorted.
    spike_offsets : np.ndarray
        int64 ``[n_trains + 1]`` with ``n_trains = n_cells · Σ_s trial_counts[s]``; train
        ``(s, c, k)`` is ``spike_times_flat[off[i]:off[i+1]]`` with
        ``i = n_cells · Σ_{s' < s} trial_counts[s'] + c · trial_counts[s] + k`` (with equal
        trial counts: ``i = (s · n_cells + c) · n_trials + k``).
    shape : tuple of int
        ``(n_stimuli, n_cells, n_trials)``; ``n_trials`` is the largest trial count.
    window : tuple of float
        ``(t_start, t_stop)`` of the response window in seconds; every spike lies in the
        closed interval.
    stimuli : np.ndarray or None
        uint8 or float32 frames: ``[n_stimuli, H, W]`` (stimulus ``i`` is one frame flashed
        at the window's start), or ``[n_stimuli, F, H, W]`` (clips: frame ``f`` shown from
        ``stimulus_start + f · frame_interval``); None where the recording has no frames.
    receptive_fields : np.ndarray or None
        float64 ``[n_cells, 2, n_points]`` receptive-field contours (x row, y row) in display
        pixels, or None.
    provenance : dict
        JSON-serialisable: source files with SHA-256, citation, licence, DOI, notes.
    source : str
        Where the data came from, used in error messages only (not saved).
    trial_counts : np.ndarray or None
        int64 ``[n_stimuli]``: trials of each stimulus (None: ``n_trials`` for every one).
    frame_interval : float or None
        Clips: seconds between frames (required for 4-D ``stimuli``).
    stimulus_start : float or None
        Clips: time of frame 0 in s on the window's clock (≤ ``t_start`` when clips carry
        stimulus history before the response window); default ``t_start``.
    test_stimuli : np.ndarray or None
        int64 indices of stimuli designated as the held-out test set (e.g. the clips of a
        repeated segment); None: the fit splits the stimuli into folds.

    Raises
    ------
    DataFormatError
        If the arrays are inconsistent, a spike time is NaN, a train is unsorted or a spike
        lies outside ``window``; the message names ``source`` and the offending field or train.
    """

    name: str
    spike_times_flat: np.ndarray
    spike_offsets: np.ndarray
    shape: tuple[int, int, int]
    window: tuple[float, float]
    stimuli: np.ndarray | None = None
    receptive_fields: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="<memory>", repr=False)
    trial_counts: np.ndarray | None = None
    frame_interval: float | None = None
    stimulus_start: float | None = None
    test_stimuli: np.ndarray | None = None

    def __post_init__(self) -> None:
        src = self.source
        self.name = str(self.name)
        try:
            raw = tuple(self.shape)
            shape = tuple(int(x) for x in raw)
        except (TypeError, ValueError, OverflowError):
            raise DataFormatError(f"{src}: shape must be (n_stimuli, n_cells, n_trials), got {self.shape!r}") from None
        if any(isinstance(x, (bool, np.bool_)) or x != y for x, y in zip(raw, shape)):
            raise DataFormatError(f"{src}: shape must be whole numbers (n_stimuli, n_cells, n_trials), got "
                                  f"{tuple(np.asarray(raw).tolist())}")
        if len(shape) != 3 or min(shape) < 1:
            raise DataFormatError(f"{src}: shape must be (n_stimuli, n_cells, n_trials) >= 1, got {shape}")
        if self.trial_counts is None:
            counts = np.full(shape[0], shape[2], dtype=np.int64)
        else:
            counts = np.asarray(self.trial_counts)
            if counts.shape != (shape[0],) or not np.issubdtype(counts.dtype, np.integer) or counts.min() < 1:
                raise DataFormatError(f"{src}: field 'trial_counts' must be integers >= 1 of shape [{shape[0]}], "
                                      f"got {counts.dtype} {counts.shape}")
            counts = counts.astype(np.int64)
            shape = (shape[0], shape[1], int(counts.max()))
        self.shape = shape  # type: ignore[assignment]
        self.trial_counts = counts
        self._train_base = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) * shape[1]
        try:
            t0, t1 = (float(x) for x in self.window)
        except (TypeError, ValueError):
            raise DataFormatError(f"{src}: window must be (t_start, t_stop) in s, got {self.window!r}") from None
        if not (np.isfinite(t0) and np.isfinite(t1) and t1 > t0):
            raise DataFormatError(f"{src}: window must satisfy t_start < t_stop, got ({t0}, {t1})")
        self.window = (t0, t1)
        times = np.asarray(self.spike_times_flat)
        if times.ndim != 1 or times.dtype == bool or \
                not (np.issubdtype(times.dtype, np.floating) or np.issubdtype(times.dtype, np.integer)):
            raise DataFormatError(f"{src}: spike_times must be a 1-D numeric array, got {times.dtype} {times.shape}")
        stored_dtype = times.dtype
        self.spike_times_flat = np.ascontiguousarray(times, dtype=np.float64)
        off = np.asarray(self.spike_offsets)
        n_trains = self.n_trains
        if off.ndim != 1 or off.dtype == bool or not np.issubdtype(off.dtype, np.integer):
            raise DataFormatError(f"{src}: spike_offsets must be a 1-D integer array, got {off.dtype} {off.shape}")
        if off.shape != (n_trains + 1,):
            trials = ", ".join(str(c) for c in counts[:5]) + (", ..." if counts.size > 5 else "")
            raise DataFormatError(
                f"{src}: spike_offsets has {off.size} entries but shape {shape} with trial counts [{trials}] gives "
                f"{n_trains} trains ({shape[0]} stimuli x {shape[1]} cells x {int(counts.sum())} trials in all), "
                f"so {n_trains + 1} entries are expected (fields 'spike_offsets', 'shape', 'trial_counts')"
            )
        self.spike_offsets = np.ascontiguousarray(off, dtype=np.int64)
        off = self.spike_offsets
        if off[0] != 0:
            raise DataFormatError(f"{src}: spike_offsets must start at 0, got {off[0]}")
        if off[-1] != times.size:
            raise DataFormatError(f"{src}: spike_offsets must rise from 0 to n_spikes={times.size} (the length of "
                                  f"spike_times), but ends at {off[-1]}")
        dec = np.flatnonzero(np.diff(off) < 0)
        if dec.size:
            i = int(dec[0])
            raise DataFormatError(f"{src}: spike_offsets must rise from 0 to n_spikes={times.size}, but decrease "
                                  f"from {off[i]} to {off[i + 1]} at entry {i + 1} (after {self._train_label(i)})")
        self._validate_times(stored_dtype)
        if self.stimuli is not None:
            self.stimuli = _as_frames(self.stimuli, shape[0], src)
            if self.stimuli.ndim == 4:
                fi = self.frame_interval
                if fi is None or not (float(fi) > 0 and np.isfinite(float(fi))):
                    raise DataFormatError(f"{src}: clips (stimuli [n, F, H, W]) need a positive 'frame_interval' "
                                          f"in s, got {fi!r}")
                self.frame_interval = float(fi)
                self.stimulus_start = t0 if self.stimulus_start is None else float(self.stimulus_start)
                end = self.stimulus_start + self.stimuli.shape[1] * self.frame_interval
                if not (self.stimulus_start <= t0 + 1e-9 and end >= t1 - 1e-6 * self.frame_interval - 1e-9):
                    raise DataFormatError(
                        f"{src}: the clips' frames cover [{self.stimulus_start:g}, {end:g}] s, which does not "
                        f"contain the response window {self.window} (fields 'stimulus_start', 'frame_interval')")
        if self.stimuli is None or self.stimuli.ndim == 3:
            self.frame_interval = None if self.frame_interval is None else float(self.frame_interval)
            self.stimulus_start = None if self.stimulus_start is None else float(self.stimulus_start)
        if self.test_stimuli is not None:
            test = np.asarray(self.test_stimuli)
            if test.ndim != 1 or not np.issubdtype(test.dtype, np.integer) or test.size == 0 or \
                    test.min() < 0 or test.max() >= shape[0] or np.unique(test).size != test.size:
                raise DataFormatError(f"{src}: field 'test_stimuli' must be distinct stimulus indices in "
                                      f"0..{shape[0] - 1}, got {test.tolist()[:10]}")
            self.test_stimuli = np.sort(test.astype(np.int64))
        if self.receptive_fields is not None:
            rf = np.asarray(self.receptive_fields)
            if rf.dtype == bool or not (np.issubdtype(rf.dtype, np.floating) or np.issubdtype(rf.dtype, np.integer)):
                raise DataFormatError(f"{src}: receptive_fields must be numbers, got {rf.dtype}")
            rf = rf.astype(np.float64)
            if rf.ndim != 3 or rf.shape[0] != shape[1] or rf.shape[1] != 2:
                raise DataFormatError(
                    f"{src}: receptive_fields must be [n_cells={shape[1]}, 2, n_points], got {rf.shape}"
                )
            self.receptive_fields = rf
        self.provenance = dict(self.provenance)
        self._view: _SpikeTimesView | None = None

    # ------------------------------------------------------------------ train indexing
    @property
    def n_trains(self) -> int:
        return int(self.trial_counts.sum()) * self.shape[1]

    def _train_coords(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """int64 ``[n_trains]`` each: (stimulus, cell, trial) of every train, in storage order."""
        R = self.trial_counts
        per_stim = R * self.n_cells
        s = np.repeat(np.arange(self.n_stimuli, dtype=np.int64), per_stim)
        local = np.arange(self.n_trains, dtype=np.int64) - np.repeat(self._train_base, per_stim)
        c, k = np.divmod(local, np.repeat(R, per_stim))
        return s, c, k

    def _train_of_spike(self) -> np.ndarray:
        """int64 ``[n_spikes]``: flat train index of every spike."""
        return np.repeat(np.arange(self.spike_offsets.size - 1, dtype=np.int64), np.diff(self.spike_offsets))

    def _train_label(self, i: int) -> str:
        s = int(np.searchsorted(self._train_base, i, side="right") - 1)
        c, k = divmod(int(i - self._train_base[s]), int(self.trial_counts[s]))
        return f"stimulus {s}, cell {c}, trial {k}"

    def _validate_times(self, stored_dtype: np.dtype | None = None) -> None:
        times, src = self.spike_times_flat, self.source
        if times.size == 0:
            return
        bad = ~np.isfinite(times)
        if bad.any():
            i = int(np.searchsorted(self.spike_offsets, np.argmax(bad), side="right") - 1)
            raise DataFormatError(f"{src}: NaN or infinite value in spike times ({self._train_label(i)})")
        t0, t1 = self.window
        out = (times < t0) | (times > t1)
        if out.any():
            j = int(np.argmax(out))
            i = int(np.searchsorted(self.spike_offsets, j, side="right") - 1)
            hint = ""
            if stored_dtype is not None and np.issubdtype(stored_dtype, np.floating) and \
                    np.finfo(stored_dtype).bits < 64:
                hint = (f"; the spike times are stored as {stored_dtype}, whose rounding can put a spike just "
                        "outside the window: store them as float64")
            raise DataFormatError(
                f"{src}: spike times outside the window [{_num(t0)}, {_num(t1)}] s in {self._train_label(i)} "
                f"(t = {_num(times[j])} s{hint})"
            )
        # A decrease is only allowed where a new train starts.
        dec = np.flatnonzero(np.diff(times) < 0) + 1
        if dec.size:
            starts = np.zeros(times.size, dtype=bool)
            starts[self.spike_offsets[:-1][self.spike_offsets[:-1] < times.size]] = True
            unsorted = dec[~starts[dec]]
            if unsorted.size:
                i = int(np.searchsorted(self.spike_offsets, unsorted[0], side="right") - 1)
                raise DataFormatError(f"{src}: spike times not sorted in {self._train_label(i)}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_spike_times(
        cls,
        spike_times: Sequence[Sequence[Sequence[Any]]],
        window: tuple[float, float],
        *,
        name: str = "recording",
        stimuli: np.ndarray | None = None,
        receptive_fields: np.ndarray | None = None,
        provenance: dict[str, Any] | None = None,
        source: str = "<memory>",
        sort: bool = False,
        frame_interval: float | None = None,
        stimulus_start: float | None = None,
        test_stimuli: Sequence[int] | None = None,
    ) -> "Recording":
        """Build a recording from nested spike times ``spike_times[s][c][k]`` (seconds).

        Parameters
        ----------
        spike_times : nested sequence
            ``[n_stimuli][n_cells][n_trials_s]`` of 1-D arrays of spike times in s, relative to
            each stimulus's onset. Every stimulus has the same cells; the number of trials may
            differ between stimuli.
        window : (float, float)
            Response window in s.
        stimuli, frame_interval, stimulus_start, test_stimuli
            See :class:`Recording`.
        sort : bool
            Sort each train first (otherwise an unsorted train is an error).

        Examples
        --------
        Two flashed 8×8 images, 2 cells, 3 and 2 trials:

        >>> rec = Recording.from_spike_times(
        ...     [[[[0.1], [0.12, 0.2], []], [[0.05], [], [0.3]]],
        ...      [[[0.2], [0.21]], [[], [0.11]]]],
        ...     window=(0.0, 0.3), stimuli=np.zeros((2, 8, 8), np.uint8))
        >>> rec.trial_counts.tolist()
        [3, 2]
        """
        n_s = len(spike_times)
        if n_s == 0:
            raise DataFormatError(f"{source}: no stimuli")
        n_c = len(spike_times[0])
        flat: list[np.ndarray] = []
        counts = []
        for s in range(n_s):
            if len(spike_times[s]) != n_c:
                raise DataFormatError(f"{source}: stimulus {s} has {len(spike_times[s])} cells, stimulus 0 has {n_c}")
            n_t = len(spike_times[s][0]) if n_c else 0
            counts.append(n_t)
            for c in range(n_c):
                if len(spike_times[s][c]) != n_t:
                    raise DataFormatError(
                        f"{source}: stimulus {s}, cell {c} has {len(spike_times[s][c])} trials, cell 0 has {n_t}"
                    )
                for k in range(n_t):
                    t = np.asarray(spike_times[s][c][k], dtype=np.float64).ravel()
                    flat.append(np.sort(t) if sort else t)
        if min(counts) < 1 or n_c < 1:
            raise DataFormatError(f"{source}: every stimulus needs at least one cell and one trial")
        lengths = np.fromiter((a.size for a in flat), dtype=np.int64, count=len(flat))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        times = np.concatenate(flat) if flat else np.zeros(0)
        return cls(
            name=name,
            spike_times_flat=times,
            spike_offsets=offsets,
            shape=(n_s, n_c, max(counts)),
            window=window,
            stimuli=stimuli,
            receptive_fields=receptive_fields,
            provenance=dict(provenance or {}),
            source=source,
            trial_counts=None if len(set(counts)) == 1 else np.asarray(counts, dtype=np.int64),
            frame_interval=frame_interval,
            stimulus_start=stimulus_start,
            test_stimuli=None if test_stimuli is None else np.asarray(test_stimuli, dtype=np.int64),
        )

    # ------------------------------------------------------------------ properties
    @property
    def n_stimuli(self) -> int:
        return self.shape[0]

    @property
    def n_cells(self) -> int:
        return self.shape[1]

    @property
    def n_trials(self) -> int:
        """Trials per stimulus (the largest count where they differ; see :attr:`trial_counts`)."""
        return self.shape[2]

    @property
    def equal_trials(self) -> bool:
        return bool(np.all(self.trial_counts == self.shape[2]))

    @property
    def is_clips(self) -> bool:
        """Whether the stimuli are clips ``[n, F, H, W]`` rather than flashed frames."""
        return self.stimuli is not None and self.stimuli.ndim == 4

    @property
    def n_spikes(self) -> int:
        return int(self.spike_times_flat.size)

    @property
    def spike_times(self) -> _SpikeTimesView:
        """``spike_times[s][c][k]``: float64 array of spike times (s), sorted, read-only view."""
        if self._view is None:
            self.spike_times_flat.setflags(write=False)  # views must not be edited in place
            self._view = _SpikeTimesView(self)
        return self._view

    def n_bins(self, bin_size: float) -> int:
        """Bins T of ``bin_size`` s in the window (:func:`neurocode.data.binning.n_bins`)."""
        return n_bins(self.window[1] - self.window[0], bin_size)

    def trial_mask(self) -> np.ndarray:
        """bool ``[n_stimuli, n_trials]``: which trial slots exist (all True with equal trial counts)."""
        return np.arange(self.n_trials)[None, :] < self.trial_counts[:, None]

    def spike_counts(self) -> np.ndarray:
        """int64 ``[n_stimuli, n_cells, n_trials]``: spikes per train in the window (0 for absent trials)."""
        out = np.zeros(self.shape, dtype=np.int64)
        s, c, k = self._train_coords()
        out[s, c, k] = np.diff(self.spike_offsets)
        return out

    def subset(self, stimuli: Sequence[int] | np.ndarray) -> "Recording":
        """A new recording with only the given stimuli (in the given order).

        Parameters
        ----------
        stimuli : sequence of int
            Stimulus indices, e.g. the ``test_idx`` of :func:`~neurocode.data.kfold_split`.
        """
        idx = np.asarray(stimuli, dtype=np.int64).ravel()
        if idx.size == 0 or idx.min() < -self.n_stimuli or idx.max() >= self.n_stimuli:
            raise IndexError(f"stimulus indices must be in 0..{self.n_stimuli - 1}, got {idx.tolist()[:10]}")
        idx = idx % self.n_stimuli
        per = self.trial_counts[idx] * self.n_cells
        trains = np.repeat(self._train_base[idx], per) + np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
        starts, stops = self.spike_offsets[trains], self.spike_offsets[trains + 1]
        lengths = stops - starts
        # Gather all spikes of the selected trains in one vectorised step.
        new_off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        pos = np.arange(new_off[-1]) - np.repeat(new_off[:-1], lengths) + np.repeat(starts, lengths)
        counts = self.trial_counts[idx]
        test = None
        if self.test_stimuli is not None:
            test = np.flatnonzero(np.isin(idx, self.test_stimuli))
            test = test if test.size else None
        return Recording(
            name=self.name,
            spike_times_flat=self.spike_times_flat[pos],
            spike_offsets=new_off,
            shape=(idx.size, self.n_cells, int(counts.max())),
            window=self.window,
            stimuli=None if self.stimuli is None else self.stimuli[idx],
            receptive_fields=self.receptive_fields,
            provenance={**self.provenance, "stimulus_subset": idx.tolist()},
            source=self.source,
            trial_counts=None if np.all(counts == counts[0]) else counts,
            frame_interval=self.frame_interval,
            stimulus_start=self.stimulus_start,
            test_stimuli=test,
        )

    def cropped(self, window: tuple[float, float]) -> "Recording":
        """The recording restricted to the response window ``(t_start, t_stop)`` (s, same clock).

        Spikes outside the new window are dropped. Flashed frames are kept; clips must still
        cover the new window.

        Raises
        ------
        ValueError
            The window is empty or not inside the recorded one.
        """
        t0, t1 = (float(v) for v in window)
        if not (self.window[0] <= t0 < t1 <= self.window[1]):
            raise ValueError(f"window ({t0:g}, {t1:g}) s must lie inside the recording's window {self.window} "
                             "with t_start < t_stop (--window)")
        times = self.spike_times_flat
        keep = (times >= t0) & (times <= t1)
        kept = np.concatenate([[0], np.cumsum(keep)])
        return dataclasses.replace(self, spike_times_flat=times[keep], spike_offsets=kept[self.spike_offsets],
                                   window=(t0, t1), provenance={**self.provenance, "cropped_to": [t0, t1]})

    def __repr__(self) -> str:
        stim = "None" if self.stimuli is None else f"{self.stimuli.dtype}{list(self.stimuli.shape)}"
        trials = self.n_trials if self.equal_trials else f"{self.trial_counts.min()}..{self.n_trials}"
        return (
            f"Recording(name={self.name!r}, n_stimuli={self.n_stimuli}, n_cells={self.n_cells}, "
            f"n_trials={trials}, window={self.window}, n_spikes={self.n_spikes}, stimuli={stim})"
        )

    # ------------------------------------------------------------------ views
    def binned(self, bin_size: float = 0.01, *, padded: bool = False) -> np.ndarray:
        """Spike counts in time bins over the response window.

        Bins follow :mod:`neurocode.data.binning` (elephant's rule): ``T = floor((t_stop -
        t_start) / bin_size)`` half-open bins; a spike at exactly ``t_stop`` (or in a remainder
        shorter than a bin) is not counted, as in :class:`elephant.conversion.BinnedSpikeTrain`.

        Parameters
        ----------
        bin_size : float
            Bin width in s (default 10 ms).
        padded : bool
            Needed when the stimuli have different trial counts: absent trials are returned as
            zeros, and :meth:`trial_mask` says which trials exist.

        Returns
        -------
        np.ndarray
            int64 ``[n_stimuli, T, n_trials, n_cells]``.

        Raises
        ------
        ValueError
            Different trial counts per stimulus without ``padded=True`` (a mean over the
            trial axis would be wrong), or a bin longer than the window.
        """
        if not padded and not self.equal_trials:
            raise ValueError(f"{self.source}: stimuli have different trial counts ({self.trial_counts.min()}.."
                             f"{self.n_trials}); use binned(bin_size, padded=True) with trial_mask(), or psth()")
        t0, t1 = self.window
        T = n_bins(t1 - t0, bin_size)
        n_s, n_c, n_t = self.shape
        check_binned_size((n_s, T, n_t, n_c), bin_size, t1 - t0, what="counts [stimuli, bins, trials, cells]")
        b = bin_index(self.spike_times_flat, t0, bin_size)
        keep = (b >= 0) & (b < T)
        s, c, k = (v[self._train_of_spike()][keep] for v in self._train_coords())
        lin = ((s * T + b[keep]) * n_t + k) * n_c + c
        counts = np.bincount(lin, minlength=n_s * T * n_t * n_c)
        return counts.reshape(n_s, T, n_t, n_c)

    def psth(self, bin_size: float = 0.01) -> np.ndarray:
        """float64 ``[n_stimuli, T, n_cells]``: spike count per bin averaged over each stimulus's trials."""
        counts = self.binned(bin_size, padded=True)
        return counts.sum(axis=2) / self.trial_counts[:, None, None]

    def to_neo(self):
        """Convert to a :class:`neo.Block`.

        One :class:`neo.Segment` per (stimulus, trial), in order stimulus-major, each with one
        :class:`neo.SpikeTrain` per cell (units s, ``t_start``/``t_stop`` = the window,
        annotations ``cell``, ``stimulus``, ``trial``). Segments are annotated with
        ``stimulus`` and ``trial``; the block carries the name, window, frames, receptive
        fields, clip timing, test stimuli and provenance (JSON) as annotations so
        :meth:`from_neo` is lossless.
        """
        import neo
        import quantities as pq

        t0, t1 = self.window
        block = neo.Block(name=self.name)
        block.annotate(
            neurocode_schema_version=NEO_SCHEMA_VERSION,
            shape=list(self.shape),
            provenance_json=json.dumps(self.provenance, sort_keys=True),
        )
        for key in ("stimuli", "receptive_fields", "frame_interval", "stimulus_start", "test_stimuli"):
            if getattr(self, key) is not None:
                block.annotate(**{key: getattr(self, key)})
        times, off = self.spike_times_flat, self.spike_offsets
        for s, R in enumerate(self.trial_counts):
            base = self._train_base[s]
            for k in range(R):
                seg = neo.Segment(name=f"stimulus {s} trial {k}", stimulus=s, trial=k)
                for c in range(self.n_cells):
                    i = base + c * R + k
                    st = neo.SpikeTrain(
                        times[off[i] : off[i + 1]].copy(),
                        units=pq.s,
                        t_start=t0,
                        t_stop=t1,
                        name=f"cell {c}",
                        cell=c,
                        stimulus=s,
                        trial=k,
                    )
                    seg.spiketrains.append(st)
                block.segments.append(seg)
        return block

    @classmethod
    def from_neo(cls, block, name: str | None = None, *, stimuli: np.ndarray | None = None,
                 frame_interval: float | None = None, stimulus_start: float | None = None,
                 receptive_fields: np.ndarray | None = None, test_stimuli: Sequence[int] | None = None
                 ) -> "Recording":
        """Build a recording from a :class:`neo.Block` (inverse of :meth:`to_neo`).

        Segments need ``stimulus`` and ``trial`` annotations and spike trains a ``cell``
        annotation. Cells run from 0 in every segment; the trials of each stimulus run from 0
        (their number may differ between stimuli). All trains must share ``t_start`` /
        ``t_stop``, which become the window; times in any unit are converted to s.

        Parameters
        ----------
        block : neo.Block
        name : str, optional
            Default: the block's name.
        stimuli, frame_interval, stimulus_start, receptive_fields, test_stimuli
            See :class:`Recording`; default: the block's annotations of these names (as
            written by :meth:`to_neo`), else None.
        """
        import quantities as pq

        src = f"neo.Block {block.name!r}"
        trains: dict[tuple[int, int, int], np.ndarray] = {}
        window = None
        for j, seg in enumerate(block.segments):
            try:
                s, k = int(seg.annotations["stimulus"]), int(seg.annotations["trial"])
            except KeyError as e:
                raise DataFormatError(f"{src}: segment {j} lacks annotation {e}") from None
            for st in seg.spiketrains:
                if "cell" not in st.annotations:
                    raise DataFormatError(f"{src}: a spike train in segment {j} lacks annotation 'cell'")
                c = int(st.annotations["cell"])
                if st.dimensionality.string == "s":  # fast path: rescale() is ~0.5 ms per train
                    w = (float(st.t_start.magnitude), float(st.t_stop.magnitude))
                    t = np.asarray(st.magnitude, dtype=np.float64)
                else:
                    w = (float(st.t_start.rescale(pq.s).magnitude), float(st.t_stop.rescale(pq.s).magnitude))
                    t = np.asarray(st.rescale(pq.s).magnitude, dtype=np.float64)
                if window is None:
                    window = w
                elif w != window:
                    raise DataFormatError(f"{src}: spike train (stimulus {s}, cell {c}, trial {k}) window {w} != {window}")
                if (s, c, k) in trains:
                    raise DataFormatError(f"{src}: duplicate spike train stimulus {s}, cell {c}, trial {k}")
                trains[(s, c, k)] = t.copy()
        if not trains:
            raise DataFormatError(f"{src}: no spike trains")
        keys = np.array(list(trains))
        if keys.min() < 0:
            raise DataFormatError(f"{src}: negative stimulus, cell or trial annotation")
        n_s, n_c = int(keys[:, 0].max()) + 1, int(keys[:, 1].max()) + 1
        counts = np.zeros(n_s, dtype=np.int64)
        np.maximum.at(counts, keys[:, 0], keys[:, 2] + 1)
        if len(trains) != n_c * int(counts.sum()) or counts.min() < 1:
            raise DataFormatError(f"{src}: spike trains do not cover every (stimulus, cell, trial) of {n_s} stimuli x "
                                  f"{n_c} cells with trials 0..R_s-1 per stimulus")
        order = sorted(trains)  # stimulus, then cell, then trial
        lengths = np.array([trains[key].size for key in order], dtype=np.int64)
        ann = block.annotations

        def pick(value, key):
            return value if value is not None else ann.get(key)

        stim = pick(stimuli, "stimuli")
        rf = pick(receptive_fields, "receptive_fields")
        test = pick(test_stimuli, "test_stimuli")
        return cls(
            name=name if name is not None else (block.name or "recording"),
            spike_times_flat=np.concatenate([trains[key] for key in order]),
            spike_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            shape=(n_s, n_c, int(counts.max())),
            window=window,  # type: ignore[arg-type]
            stimuli=None if stim is None else np.asarray(stim),
            receptive_fields=None if rf is None else np.asarray(rf),
            provenance=json.loads(ann.get("provenance_json", "{}")),
            source=src,
            trial_counts=None if np.all(counts == counts[0]) else counts,
            frame_interval=pick(frame_interval, "frame_interval"),
            stimulus_start=pick(stimulus_start, "stimulus_start"),
            test_stimuli=None if test is None else np.asarray(test, dtype=np.int64),
        )

    # ------------------------------------------------------------------ HDF5
    def save(self, path: str | os.PathLike, name: str | None = None, *, overwrite: bool = False) -> Path:
        """Write this recording as group ``name`` of the HDF5 file ``path``.

        Other groups already in the file are kept. The write is atomic: a new file is written
        next to ``path`` (other groups copied over) and moved into place with
        :func:`os.replace`, so an interruption never leaves a corrupt file.

        Parameters
        ----------
        path : path-like
            HDF5 file (created if absent).
        name : str, optional
            Group name; defaults to :attr:`name`.
        overwrite : bool
            Replace an existing group of the same name (otherwise ValueError).

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        return writer("hdf5")(self, path, name, overwrite=overwrite)

    def to_nwb(self, path: str | os.PathLike, *, metadata=None, overwrite: bool = False) -> Path:
        """Write this recording as an NWB file (:func:`neurocode.data.nwb.write_nwb`; needs pynwb).

        Flashed frames become an ``Images`` container shown by an ``IndexSeries``, one row of
        the ``trials`` table per trial; :func:`neurocode.data.nwb.read_nwb` reads it back
        exactly. ``metadata`` (:class:`~neurocode.data.nwb.NWBMetadata`): subject, lab,
        session start time, ... See ``docs/nwb.md``.
        """
        return writer("nwb")(self, path, metadata=metadata, overwrite=overwrite)
