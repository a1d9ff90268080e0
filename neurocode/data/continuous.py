"""A continuous recording: one stimulus sequence (white noise, a movie) and the session's spike trains.

:class:`ContinuousRecording` holds frames ``[n_frames, H, W]`` with their onset times, each
cell's spike train over the session, and optionally the presentations of a repeated segment
(the test set). :meth:`ContinuousRecording.to_clips` cuts it into clips as the paper did
(1-s clips, 33-ms bins): a :class:`~neurocode.data.Recording` whose stimuli are clips on the
bin grid, one trial per clip of non-repeated time (training) and one trial per repeat for the
clips of the repeated segment (``test_stimuli``).

Times are seconds on the session clock. Frame ``i`` is on screen from ``frame_times[i]`` to
``frame_times[i + 1]`` (the last until the session's end); a bin sees the frame on screen at
its centre. Binning follows :mod:`neurocode.data.binning`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neurocode.data.binning import BIN_TOLERANCE, bin_index, check_binned_size, n_bins
from neurocode.data.errors import DataFormatError
from neurocode.data.formats import writer
from neurocode.data.recording import Recording, _as_frames

__all__ = ["ContinuousRecording"]


def _stack_frames(frames: Any, src: str) -> np.ndarray:
    if isinstance(frames, np.ndarray):
        arr = frames
    else:
        frames = list(frames)
        shapes = {np.shape(f) for f in frames}
        if len(shapes) > 1:
            first = np.shape(frames[0])
            bad = next(i for i, f in enumerate(frames) if np.shape(f) != first)
            raise DataFormatError(f"{src}: field 'frames' has frames of mixed sizes (frame 0 is {first}, "
                                  f"frame {bad} is {np.shape(frames[bad])})")
        arr = np.asarray(frames)
    if arr.ndim != 3 or min(arr.shape, default=0) < 1:
        raise DataFormatError(f"{src}: field 'frames' must be [n_frames, H, W], got shape {arr.shape}")
    return _as_frames(arr, arr.shape[0], src, "frames")


@dataclass(eq=False)
class ContinuousRecording:
    """Spike trains of a population during one continuous stimulus.

    Parameters
    ----------
    name : str
    frames : np.ndarray
        uint8 or float32 ``[n_frames, H, W]`` (a list of equal-sized frames is accepted).
    frame_times : np.ndarray
        float64 ``[n_frames]``: onset of each frame in s, strictly increasing.
    spike_times_flat : np.ndarray
        float64 ``[n_spikes]``: all cells' spike times in s, cell-major, each cell sorted.
    spike_offsets : np.ndarray
        int64 ``[n_cells + 1]``: cell ``c`` is ``spike_times_flat[off[c]:off[c+1]]``.
    session : (float, float)
        ``(t_start, t_stop)`` in s; every spike and frame onset lies in it.
    repeats : np.ndarray, optional
        float64 ``[n_repeats, 2]``: ``(start, stop)`` of each presentation of a repeated
        segment (same frames each time, same duration within one frame); the held-out test set.
    receptive_fields : np.ndarray, optional
        float64 ``[n_cells, 2, n_points]`` contours in display px.
    provenance : dict
    source : str
        Used in error messages only.

    Raises
    ------
    DataFormatError
        Frames of mixed sizes, frame times not increasing, spikes outside the session,
        unsorted trains, repeats that overlap, differ in duration or show different frames;
        the message names ``source`` and the field.
    """

    name: str
    frames: np.ndarray
    frame_times: np.ndarray
    spike_times_flat: np.ndarray
    spike_offsets: np.ndarray
    session: tuple[float, float]
    repeats: np.ndarray | None = None
    receptive_fields: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="<memory>", repr=False)

    def __post_init__(self) -> None:
        src = self.source
        self.name = str(self.name)
        self.frames = _stack_frames(self.frames, src)
        n_f = self.frames.shape[0]
        try:
            t0, t1 = (float(x) for x in self.session)
        except (TypeError, ValueError):
            raise DataFormatError(f"{src}: field 'session' must be (t_start, t_stop) in s, got {self.session!r}") from None
        if not (np.isfinite(t0) and np.isfinite(t1) and t1 > t0):
            raise DataFormatError(f"{src}: field 'session' must satisfy t_start < t_stop, got ({t0}, {t1})")
        self.session = (t0, t1)
        ft = np.asarray(self.frame_times, dtype=np.float64)
        if ft.shape != (n_f,):
            raise DataFormatError(f"{src}: field 'frame_times' must be [n_frames={n_f}], got shape {ft.shape}")
        if not np.isfinite(ft).all():
            raise DataFormatError(f"{src}: field 'frame_times' contains NaN or infinite values")
        bad = np.flatnonzero(np.diff(ft) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise DataFormatError(f"{src}: field 'frame_times' is not strictly increasing (frame {i} at "
                                  f"{ft[i]:g} s, frame {i - 1} at {ft[i - 1]:g} s)")
        if ft[0] < t0 or ft[-1] >= t1:
            raise DataFormatError(f"{src}: field 'frame_times' runs from {ft[0]:g} to {ft[-1]:g} s, outside the "
                                  f"session [{t0:g}, {t1:g}) s")
        self.frame_times = ft
        times = np.asarray(self.spike_times_flat)
        if times.ndim != 1 or not (np.issubdtype(times.dtype, np.floating) or np.issubdtype(times.dtype, np.integer)):
            raise DataFormatError(f"{src}: field 'spike_times' must be a 1-D numeric array, got {times.dtype} {times.shape}")
        self.spike_times_flat = times = np.ascontiguousarray(times, dtype=np.float64)
        off = np.asarray(self.spike_offsets)
        if off.ndim != 1 or off.size < 2 or not np.issubdtype(off.dtype, np.integer) or off[0] != 0 or \
                off[-1] != times.size or np.any(np.diff(off) < 0):
            raise DataFormatError(f"{src}: field 'spike_offsets' must be integers rising from 0 to n_spikes="
                                  f"{times.size} ([n_cells + 1]), got {off.dtype} {off.shape}")
        self.spike_offsets = off = np.ascontiguousarray(off, dtype=np.int64)
        if not np.isfinite(times).all():
            j = int(np.argmax(~np.isfinite(times)))
            raise DataFormatError(f"{src}: NaN or infinite spike time (cell {self._cell_of(j)})")
        out = (times < t0) | (times > t1)
        if out.any():
            j = int(np.argmax(out))
            raise DataFormatError(f"{src}: spike of cell {self._cell_of(j)} at {times[j]:g} s lies outside the "
                                  f"session [{t0:g}, {t1:g}] s (field 'spike_times')")
        dec = np.flatnonzero(np.diff(times) < 0) + 1
        if dec.size:
            starts = np.zeros(times.size + 1, dtype=bool)
            starts[off[:-1]] = True
            unsorted = dec[~starts[dec]]
            if unsorted.size:
                raise DataFormatError(f"{src}: spike times of cell {self._cell_of(int(unsorted[0]))} are not sorted")
        if self.repeats is not None:
            self.repeats = self._check_repeats(np.asarray(self.repeats, dtype=np.float64))
        if self.receptive_fields is not None:
            rf = np.asarray(self.receptive_fields, dtype=np.float64)
            if rf.ndim != 3 or rf.shape[0] != self.n_cells or rf.shape[1] != 2:
                raise DataFormatError(f"{src}: field 'receptive_fields' must be [n_cells={self.n_cells}, 2, n_points], "
                                      f"got {rf.shape}")
            self.receptive_fields = rf
        self.provenance = dict(self.provenance)

    def _cell_of(self, j: int) -> int:
        return int(np.searchsorted(self.spike_offsets, j, side="right") - 1)

    def _check_repeats(self, rep: np.ndarray) -> np.ndarray:
        src = self.source
        t0, t1 = self.session
        if rep.ndim != 2 or rep.shape[1] != 2 or rep.shape[0] < 1 or not np.isfinite(rep).all():
            raise DataFormatError(f"{src}: field 'repeats' must be [n_repeats, 2] (start, stop) in s, got {rep.shape}")
        rep = rep[np.argsort(rep[:, 0])]
        if np.any(rep[:, 1] <= rep[:, 0]) or rep[0, 0] < t0 or rep[-1, 1] > t1:
            raise DataFormatError(f"{src}: field 'repeats' needs start < stop inside the session [{t0:g}, {t1:g}] s")
        if np.any(rep[1:, 0] < rep[:-1, 1]):
            raise DataFormatError(f"{src}: field 'repeats' has overlapping presentations")
        frame_dt = float(np.median(np.diff(self.frame_times))) if self.n_frames > 1 else t1 - t0
        dur = rep[:, 1] - rep[:, 0]
        if np.ptp(dur) > frame_dt + 1e-9:
            raise DataFormatError(f"{src}: field 'repeats' presentations last {dur.min():g}-{dur.max():g} s; they must "
                                  f"agree within one frame ({frame_dt:g} s)")
        grid = np.arange(0.0, dur.min() - 1e-9, frame_dt)
        first = self.frames[self.frame_index(rep[0, 0] + grid + 0.25 * frame_dt)]
        for r in range(1, rep.shape[0]):
            idx = self.frame_index(rep[r, 0] + grid + 0.25 * frame_dt)
            if not np.array_equal(self.frames[idx], first):
                raise DataFormatError(f"{src}: field 'repeats': presentation {r} (from {rep[r, 0]:g} s) shows other "
                                      "frames than presentation 0")
        return rep

    # ------------------------------------------------------------------ properties
    @property
    def n_cells(self) -> int:
        return self.spike_offsets.size - 1

    @property
    def n_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.frames.shape[1:])  # type: ignore[return-value]

    @property
    def n_repeats(self) -> int:
        return 0 if self.repeats is None else int(self.repeats.shape[0])

    @property
    def n_spikes(self) -> int:
        return int(self.spike_times_flat.size)

    @property
    def spike_times(self) -> list[np.ndarray]:
        """Per cell, its sorted spike times in s (views)."""
        off = self.spike_offsets
        return [self.spike_times_flat[off[c]: off[c + 1]] for c in range(self.n_cells)]

    def __repr__(self) -> str:
        return (f"ContinuousRecording(name={self.name!r}, n_cells={self.n_cells}, frames={self.frames.dtype}"
                f"{list(self.frames.shape)}, session={self.session}, n_repeats={self.n_repeats}, "
                f"n_spikes={self.n_spikes})")

    # ------------------------------------------------------------------ views
    def frame_index(self, times: np.ndarray) -> np.ndarray:
        """int64: the frame on screen at each time (s); times before the first frame are an error."""
        t = np.asarray(times, dtype=np.float64)
        idx = np.searchsorted(self.frame_times, t, side="right") - 1
        if idx.size and idx.min() < 0:
            raise ValueError(f"{self.source}: time {t.min():g} s is before the first frame ({self.frame_times[0]:g} s)")
        return idx

    def binned(self, bin_size: float, t_start: float | None = None, t_stop: float | None = None) -> np.ndarray:
        """int64 ``[T, n_cells]`` spike counts in bins from ``t_start`` (default: the session's)."""
        t0 = self.session[0] if t_start is None else float(t_start)
        t1 = self.session[1] if t_stop is None else float(t_stop)
        T = n_bins(t1 - t0, bin_size)
        check_binned_size((T, self.n_cells), bin_size, t1 - t0, what="counts [bins, cells]")
        b = bin_index(self.spike_times_flat, t0, bin_size)
        cell = np.repeat(np.arange(self.n_cells), np.diff(self.spike_offsets))
        ok = (self.spike_times_flat >= t0) & (b >= 0) & (b < T)
        return np.bincount(b[ok] * self.n_cells + cell[ok], minlength=T * self.n_cells).reshape(T, self.n_cells)

    def with_frames(self, frames: np.ndarray) -> "ContinuousRecording":
        """The same recording with transformed frames (e.g. downsampled), same count and times."""
        frames = np.asarray(frames)
        if frames.shape[0] != self.n_frames:
            raise ValueError(f"frames: expected {self.n_frames} frames, got {frames.shape[0]}")
        return ContinuousRecording(self.name, frames, self.frame_times, self.spike_times_flat, self.spike_offsets,
                                   self.session, self.repeats, self.receptive_fields, self.provenance, self.source)

    # ------------------------------------------------------------------ clips
    def to_clips(self, clip_duration: float = 1.0, bin_size: float = 0.033, history: float = 0.0) -> Recording:
        """Cut the session into clips on the bin grid (the paper: 1-s clips, 33-ms bins).

        Non-repeated time is tiled with clips of ``T = floor(clip_duration / bin_size)`` bins
        (one trial each), skipping any clip whose frames or responses touch a repeat. Each
        presentation of the repeated segment is tiled the same way from ``history`` after its
        start; those clips have one trial per presentation and are the recording's
        ``test_stimuli``.

        Parameters
        ----------
        clip_duration, bin_size : float
            In s.
        history : float
            Stimulus before each clip's response window given to the model (s, rounded to
            whole bins): the clip's frames start ``history`` before its first response bin, so
            a temporal filter of that length sees a full past from the first bin on.

        Returns
        -------
        Recording
            ``stimuli`` ``[n_clips, H_bins + T, H, W]`` (the frames' dtype), window
            ``(0, T·bin_size)``, ``frame_interval = bin_size``, ``stimulus_start =
            -H_bins·bin_size``; ``provenance["clips"]`` records every clip's start.

        Raises
        ------
        ValueError
            No clip fits (session or repeats shorter than a clip).
        """
        T = n_bins(clip_duration, bin_size)
        H = int(round(float(history) / bin_size)) if history > 0 else 0
        dt = float(bin_size)
        span, hist = T * dt, H * dt
        t0, t1 = self.session
        # at most one clip per span of the session (and of each repeat): refused before tiling it
        most = int((t1 - t0) // span) + 1 + (0 if self.repeats is None else len(self.repeats))
        check_binned_size((most, H + T) + tuple(self.frames.shape[1:]), bin_size, t1 - t0,
                          what="clip frames [clips, frames, H, W]", itemsize=self.frames.dtype.itemsize)
        first = self.frame_times[0]
        rep = self.repeats if self.repeats is not None else np.zeros((0, 2))
        train_starts = []
        t = max(t0, first) + hist
        while t + span <= t1 + 1e-9:
            hit = rep[(rep[:, 0] < t + span - 1e-9) & (rep[:, 1] > t - hist + 1e-9)]
            if hit.size:
                t = float(hit[:, 1].max()) + hist
                continue
            train_starts.append(t)
            t += span
        offsets = []
        if rep.size:
            dur = float((rep[:, 1] - rep[:, 0]).min())
            o = hist
            while o + span <= dur + 1e-9:
                offsets.append(o)
                o += span
        if not train_starts and not offsets:
            raise ValueError(f"{self.source}: no clip of {clip_duration:g} s (+ {hist:g} s history) fits in the session")
        # each bin sees the frame on screen at its centre (robust to bins that start exactly on a frame
        # onset, where rounding would otherwise pick the previous frame)
        grid = (np.arange(H + T) - H + 0.5) * dt
        starts = np.asarray(train_starts)
        frame_at = [self.frame_index(s + grid) for s in starts]
        frame_at += [self.frame_index(rep[0, 0] + o + grid) for o in offsets]
        stimuli = self.frames[np.stack(frame_at)]
        # spikes: trains (clip, cell, trial) in Recording order
        pieces, counts = [], []
        for s in starts:
            counts.append(1)
            pieces.extend(self._window_spikes(s, span))
        for o in offsets:
            counts.append(max(self.n_repeats, 1))
            per_cell = [self._window_spikes(rs + o, span) for rs in rep[:, 0]]  # [trial][cell]
            pieces.extend(per_cell[k][c] for c in range(self.n_cells) for k in range(len(per_cell)))
        lengths = np.fromiter((p.size for p in pieces), dtype=np.int64, count=len(pieces))
        n_train = len(train_starts)
        clips_info = {"clip_duration": float(clip_duration), "bin_size": dt, "n_bins": T, "history_bins": H,
                      "train_clip_starts": [float(s) for s in starts],
                      "test_clip_offsets": [float(o) for o in offsets],
                      "repeat_starts": [float(s) for s in rep[:, 0]]}
        counts_arr = np.asarray(counts, dtype=np.int64)
        return Recording(
            name=f"{self.name}_clips",
            spike_times_flat=np.concatenate(pieces) if pieces else np.zeros(0),
            spike_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            shape=(len(counts), self.n_cells, int(counts_arr.max())),
            window=(0.0, span),
            stimuli=stimuli,
            receptive_fields=self.receptive_fields,
            provenance={**self.provenance, "clips": clips_info, "continuous_source": self.source},
            source=f"{self.source} (clips)",
            trial_counts=None if np.all(counts_arr == counts_arr[0]) else counts_arr,
            frame_interval=dt,
            stimulus_start=-hist,
            test_stimuli=np.arange(n_train, len(counts)) if offsets else None,
        )

    def _window_spikes(self, start: float, span: float) -> list[np.ndarray]:
        """Per cell, spikes in ``[start, start + span)`` relative to ``start`` (binning rule's edges)."""
        # bin 0 of a window of width span, by the binning rule's edges (tolerance included)
        lo, hi = start - BIN_TOLERANCE * span, start + span - BIN_TOLERANCE * span
        out = []
        for times in self.spike_times:
            a, b = np.searchsorted(times, [lo, hi], side="left")
            out.append(np.clip(times[a:b] - start, 0.0, span))
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, name: str | None = None, *, overwrite: bool = False) -> Path:
        """Write as group ``name`` (kind "continuous") of a neurocode HDF5 file, atomically (:mod:`neurocode.data.hdf5`)."""
        return writer("hdf5")(self, path, name, overwrite=overwrite)

    @classmethod
    def from_spike_times(cls, spike_times: Sequence[Any], frames: Any, frame_times: Any, session: tuple[float, float],
                         *, repeats: Any = None, name: str = "recording", receptive_fields: Any = None,
                         provenance: dict | None = None, source: str = "<memory>",
                         sort: bool = False) -> "ContinuousRecording":
        """Build from per-cell spike-time arrays (s, session clock) and the frames with their onsets.

        Examples
        --------
        A 2-cell recording of 300 frames at 30 Hz with a 1-s segment shown twice:

        >>> frames = np.random.default_rng(0).integers(0, 2, (300, 8, 8), dtype=np.uint8) * 255
        >>> frames[240:270] = frames[:30]
        >>> rec = ContinuousRecording.from_spike_times(
        ...     [[0.5, 1.25, 8.1], [2.0]], frames, np.arange(300) / 30, session=(0.0, 10.0),
        ...     repeats=[[0.0, 1.0], [8.0, 9.0]])
        >>> rec.n_repeats
        2
        """
        trains = [np.asarray(t, dtype=np.float64).ravel() for t in spike_times]
        if not trains:
            raise DataFormatError(f"{source}: no cells")
        if sort:
            trains = [np.sort(t) for t in trains]
        lengths = np.fromiter((t.size for t in trains), dtype=np.int64, count=len(trains))
        return cls(name=name, frames=frames, frame_times=frame_times,
                   spike_times_flat=np.concatenate(trains),
                   spike_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                   session=session, repeats=None if repeats is None else np.asarray(repeats, dtype=np.float64),
                   receptive_fields=receptive_fields, provenance=dict(provenance or {}), source=source)

    def to_nwb(self, path: str | os.PathLike, *, metadata=None, overwrite: bool = False) -> Path:
        """Write this recording as an NWB file (:func:`neurocode.data.nwb.write_nwb`; needs pynwb).

        The frames become an ``ImageSeries`` (with a rate when they are regular), each repeat a
        row of the ``trials`` table; :func:`neurocode.data.nwb.read_nwb` reads it back.
        ``metadata``: :class:`~neurocode.data.nwb.NWBMetadata`. See ``docs/nwb.md``.
        """
        return writer("nwb")(self, path, metadata=metadata, overwrite=overwrite)
