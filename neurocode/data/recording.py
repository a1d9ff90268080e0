"""A prepared recording: stimuli, spike times per (stimulus, cell, trial), provenance.

The :class:`Recording` keeps the spike times of all trains in one flat ``float64`` array
plus offsets (the same layout as the HDF5 file), so that loading and binning are
vectorised; ``rec.spike_times[s][c][k]`` gives per-train views built on first access.

The canonical HDF5 layout (``schema_version`` 1) is documented in ``datasets/README.md``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neurocode.data.errors import DataFormatError

__all__ = [
    "Recording",
    "SCHEMA_VERSION",
    "BUNDLED_FILENAME",
    "DEFAULT_RECORDING",
    "bundled_path",
    "list_recordings",
    "load_recording",
]

#: Version of the HDF5 layout written by :meth:`Recording.save`; readers refuse others.
SCHEMA_VERSION = 1
#: Value of the root attribute ``format`` that marks a neurocode recordings file.
FILE_FORMAT = "neurocode-recordings"
BUNDLED_FILENAME = "onken2016_retina2.h5"
#: Recording returned by :func:`load_recording` when ``name`` is None.
DEFAULT_RECORDING = "natural_images"

# Relative tolerance (in units of one bin) used when assigning spikes to bins: spike times
# are integer milliseconds / 1000, so ~10 % of them sit exactly on a 10-ms edge and
# floating-point division (0.29 / 0.01 = 28.999999999999996) would put them one bin early.
_BIN_EDGE_TOL = 1e-9


def bundled_path() -> Path:
    """Path of the bundled prepared recording file.

    Returns ``<repo>/datasets/onken2016_retina2.h5`` (resolved from the package location),
    or the value of the environment variable ``NEUROCODE_DATA`` if set (a file, or a folder
    that contains ``onken2016_retina2.h5``).

    Raises
    ------
    FileNotFoundError
        If the file does not exist; the message names the path and how to build it.
    """
    env = os.environ.get("NEUROCODE_DATA")
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            path = path / BUNDLED_FILENAME
    else:
        path = Path(__file__).resolve().parents[2] / "datasets" / BUNDLED_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: bundled recording file not found. Build it from the original Onken et al. "
            "2016 package (Dryad doi:10.5061/dryad.4ch10) with `python datasets/build_onken2016.py "
            "--source <package folder> --out datasets/onken2016_retina2.h5`, or point the "
            "NEUROCODE_DATA environment variable at an existing file."
        )
    return path


class _SpikeTimesView(Sequence):
    """Read-only nested view ``view[s][c][k]`` onto the flat spike-time array."""

    def __init__(self, rec: "Recording"):
        self._rec = rec
        self._nested: list | None = None

    def _build(self) -> list:
        if self._nested is None:
            times, off = self._rec.spike_times_flat, self._rec.spike_offsets
            n_s, n_c, n_t = self._rec.shape
            trains = [times[off[i] : off[i + 1]] for i in range(n_s * n_c * n_t)]
            self._nested = [
                [trains[(s * n_c + c) * n_t : (s * n_c + c + 1) * n_t] for c in range(n_c)]
                for s in range(n_s)
            ]
        return self._nested

    def __getitem__(self, s):
        return self._build()[s]

    def __len__(self) -> int:
        return self._rec.shape[0]


@dataclass(eq=False)
class Recording:
    """Spike responses of a population of cells to repeated stimuli.

    Parameters
    ----------
    name : str
        Short identifier (the HDF5 group name), e.g. ``"natural_images"``.
    spike_times_flat : np.ndarray
        float64 ``[n_spikes]``, seconds relative to stimulus onset; all trains concatenated
        in C order of (stimulus, cell, trial), each train sorted.
    spike_offsets : np.ndarray
        int64 ``[n_stimuli * n_cells * n_trials + 1]``; train ``(s, c, k)`` is
        ``spike_times_flat[off[i]:off[i+1]]`` with ``i = (s * n_cells + c) * n_trials + k``.
    shape : tuple of int
        ``(n_stimuli, n_cells, n_trials)``.
    window : tuple of float
        ``(t_start, t_stop)`` of the response window in seconds; every spike lies in the
        closed interval.
    stimuli : np.ndarray or None
        uint8 ``[n_stimuli, H, W]`` grey-level frames (``stimuli[i]`` is stimulus ``i``), or
        None where the recording has no frames (movies).
    receptive_fields : np.ndarray or None
        float64 ``[n_cells, 2, n_points]`` receptive-field contours (x row, y row) in display
        pixels, or None.
    provenance : dict
        JSON-serialisable: source files with SHA-256, citation, licence, DOI, notes.
    source : str
        Where the data came from, used in error messages only (not saved).

    Raises
    ------
    DataFormatError
        If the arrays are inconsistent, a spike time is NaN, a train is unsorted or a spike
        lies outside ``window``; the message names ``source`` and the offending train.
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

    def __post_init__(self) -> None:
        src = self.source
        self.name = str(self.name)
        self.shape = tuple(int(x) for x in self.shape)  # type: ignore[assignment]
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise DataFormatError(f"{src}: shape must be (n_stimuli, n_cells, n_trials) >= 1, got {self.shape}")
        try:
            t0, t1 = (float(x) for x in self.window)
        except (TypeError, ValueError):
            raise DataFormatError(f"{src}: window must be (t_start, t_stop) in s, got {self.window!r}") from None
        if not (np.isfinite(t0) and np.isfinite(t1) and t1 > t0):
            raise DataFormatError(f"{src}: window must satisfy t_start < t_stop, got ({t0}, {t1})")
        self.window = (t0, t1)
        times = np.asarray(self.spike_times_flat)
        if times.ndim != 1 or not (np.issubdtype(times.dtype, np.floating) or np.issubdtype(times.dtype, np.integer)):
            raise DataFormatError(f"{src}: spike_times must be a 1-D numeric array, got {times.dtype} {times.shape}")
        self.spike_times_flat = np.ascontiguousarray(times, dtype=np.float64)
        off = np.asarray(self.spike_offsets)
        n_trains = int(np.prod(self.shape))
        if off.shape != (n_trains + 1,) or not np.issubdtype(off.dtype, np.integer):
            raise DataFormatError(
                f"{src}: spike_offsets must be integer [{n_trains + 1}] for shape {self.shape}, "
                f"got {off.dtype} {off.shape}"
            )
        self.spike_offsets = np.ascontiguousarray(off, dtype=np.int64)
        off = self.spike_offsets
        if off[0] != 0 or off[-1] != times.size or np.any(np.diff(off) < 0):
            raise DataFormatError(
                f"{src}: spike_offsets must rise from 0 to n_spikes={times.size} (got {off[0]}..{off[-1]})"
            )
        self._validate_times()
        if self.stimuli is not None:
            stim = np.asarray(self.stimuli)
            if stim.dtype != np.uint8 or stim.ndim != 3 or stim.shape[0] != self.shape[0]:
                raise DataFormatError(
                    f"{src}: stimuli must be uint8 [n_stimuli={self.shape[0]}, H, W], got {stim.dtype} {stim.shape}"
                )
            self.stimuli = np.ascontiguousarray(stim)
        if self.receptive_fields is not None:
            rf = np.asarray(self.receptive_fields, dtype=np.float64)
            if rf.ndim != 3 or rf.shape[0] != self.shape[1] or rf.shape[1] != 2:
                raise DataFormatError(
                    f"{src}: receptive_fields must be [n_cells={self.shape[1]}, 2, n_points], got {rf.shape}"
                )
            self.receptive_fields = rf
        self.provenance = dict(self.provenance)
        self._view: _SpikeTimesView | None = None

    def _train_of_spike(self) -> np.ndarray:
        """int64 ``[n_spikes]``: flat train index of every spike."""
        return np.repeat(np.arange(self.spike_offsets.size - 1, dtype=np.int64), np.diff(self.spike_offsets))

    def _train_label(self, i: int) -> str:
        s, c, k = np.unravel_index(int(i), self.shape)
        return f"stimulus {s}, cell {c}, trial {k}"

    def _validate_times(self) -> None:
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
            raise DataFormatError(
                f"{src}: spike times outside the window [{t0:g}, {t1:g}] s in {self._train_label(i)} "
                f"(t = {times[j]:g} s)"
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
    ) -> "Recording":
        """Build a recording from nested spike times ``spike_times[s][c][k]`` (seconds).

        Parameters
        ----------
        spike_times : nested sequence
            ``[n_stimuli][n_cells][n_trials]`` of 1-D arrays of spike times in s. All stimuli
            must have the same number of cells and trials.
        window : (float, float)
            Response window in s.
        sort : bool
            Sort each train first (otherwise an unsorted train is an error).
        """
        n_s = len(spike_times)
        if n_s == 0:
            raise DataFormatError(f"{source}: no stimuli")
        n_c = len(spike_times[0])
        n_t = len(spike_times[0][0]) if n_c else 0
        flat: list[np.ndarray] = []
        for s in range(n_s):
            if len(spike_times[s]) != n_c:
                raise DataFormatError(f"{source}: stimulus {s} has {len(spike_times[s])} cells, stimulus 0 has {n_c}")
            for c in range(n_c):
                if len(spike_times[s][c]) != n_t:
                    raise DataFormatError(
                        f"{source}: stimulus {s}, cell {c} has {len(spike_times[s][c])} trials, expected {n_t}"
                    )
                for k in range(n_t):
                    t = np.asarray(spike_times[s][c][k], dtype=np.float64).ravel()
                    flat.append(np.sort(t) if sort else t)
        lengths = np.fromiter((a.size for a in flat), dtype=np.int64, count=len(flat))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        times = np.concatenate(flat) if flat else np.zeros(0)
        return cls(
            name=name,
            spike_times_flat=times,
            spike_offsets=offsets,
            shape=(n_s, n_c, n_t),
            window=window,
            stimuli=stimuli,
            receptive_fields=receptive_fields,
            provenance=dict(provenance or {}),
            source=source,
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
        return self.shape[2]

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

    def spike_counts(self) -> np.ndarray:
        """int64 ``[n_stimuli, n_cells, n_trials]``: number of spikes per train in the window."""
        return np.diff(self.spike_offsets).reshape(self.shape)

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
        per = self.n_cells * self.n_trials
        trains = (idx[:, None] * per + np.arange(per)[None, :]).ravel()
        starts, stops = self.spike_offsets[trains], self.spike_offsets[trains + 1]
        lengths = stops - starts
        # Gather all spikes of the selected trains in one vectorised step.
        new_off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        pos = np.arange(new_off[-1]) - np.repeat(new_off[:-1], lengths) + np.repeat(starts, lengths)
        return Recording(
            name=self.name,
            spike_times_flat=self.spike_times_flat[pos],
            spike_offsets=new_off,
            shape=(idx.size, self.n_cells, self.n_trials),
            window=self.window,
            stimuli=None if self.stimuli is None else self.stimuli[idx],
            receptive_fields=self.receptive_fields,
            provenance={**self.provenance, "stimulus_subset": idx.tolist()},
            source=self.source,
        )

    def __repr__(self) -> str:
        stim = "None" if self.stimuli is None else f"uint8{list(self.stimuli.shape)}"
        return (
            f"Recording(name={self.name!r}, n_stimuli={self.n_stimuli}, n_cells={self.n_cells}, "
            f"n_trials={self.n_trials}, window={self.window}, n_spikes={self.n_spikes}, stimuli={stim})"
        )

    # ------------------------------------------------------------------ views
    def binned(self, bin_size: float = 0.01) -> np.ndarray:
        """Spike counts in time bins over the response window.

        Parameters
        ----------
        bin_size : float
            Bin width in s (default 10 ms).

        Returns
        -------
        np.ndarray
            int64 ``[n_stimuli, T, n_trials, n_cells]`` with ``T = round((t_stop - t_start) /
            bin_size)``. Bins are half-open ``[t_i, t_i + bin)`` except the last, which is
            closed, so a spike at exactly ``t_stop`` counts (as in ``np.histogram``); every
            spike in the window is counted once, so the total equals :attr:`n_spikes`.
        """
        bin_size = float(bin_size)
        t0, t1 = self.window
        if not (bin_size > 0 and np.isfinite(bin_size)):
            raise ValueError(f"bin_size must be a positive number of seconds, got {bin_size}")
        n_bins = int(round((t1 - t0) / bin_size))
        if n_bins < 1:
            raise ValueError(f"bin_size={bin_size} s is longer than the window {self.window}")
        n_s, n_c, n_t = self.shape
        b = np.floor((self.spike_times_flat - t0) / bin_size + _BIN_EDGE_TOL).astype(np.int64)
        np.clip(b, 0, n_bins - 1, out=b)  # closes the last bin; times are already in the window
        train = self._train_of_spike()
        s, rest = np.divmod(train, n_c * n_t)
        c, k = np.divmod(rest, n_t)
        lin = ((s * n_bins + b) * n_t + k) * n_c + c
        counts = np.bincount(lin, minlength=n_s * n_bins * n_t * n_c)
        return counts.reshape(n_s, n_bins, n_t, n_c)

    def to_neo(self):
        """Convert to a :class:`neo.Block`.

        One :class:`neo.Segment` per (stimulus, trial), in order stimulus-major, each with one
        :class:`neo.SpikeTrain` per cell (units s, ``t_start``/``t_stop`` = the window,
        annotations ``cell``, ``stimulus``, ``trial``). Segments are annotated with
        ``stimulus`` and ``trial``; the block carries the name, window, frames, receptive
        fields and provenance (JSON) as annotations so :meth:`from_neo` is lossless.
        """
        import neo
        import quantities as pq

        t0, t1 = self.window
        block = neo.Block(name=self.name)
        block.annotate(
            neurocode_schema_version=SCHEMA_VERSION,
            shape=list(self.shape),
            provenance_json=json.dumps(self.provenance, sort_keys=True),
        )
        if self.stimuli is not None:
            block.annotate(stimuli=self.stimuli)
        if self.receptive_fields is not None:
            block.annotate(receptive_fields=self.receptive_fields)
        times, off = self.spike_times_flat, self.spike_offsets
        n_s, n_c, n_t = self.shape
        for s in range(n_s):
            for k in range(n_t):
                seg = neo.Segment(name=f"stimulus {s} trial {k}", stimulus=s, trial=k)
                for c in range(n_c):
                    i = (s * n_c + c) * n_t + k
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
    def from_neo(cls, block, name: str | None = None) -> "Recording":
        """Inverse of :meth:`to_neo`.

        Segments need ``stimulus`` and ``trial`` annotations and spike trains a ``cell``
        annotation, together covering a full (stimulus, cell, trial) grid from 0; all trains
        must share ``t_start``/``t_stop``, which become the window.
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
        shape = tuple(int(x) + 1 for x in keys.max(axis=0))
        if len(trains) != int(np.prod(shape)) or keys.min() < 0:
            raise DataFormatError(f"{src}: spike trains do not cover a full (stimulus, cell, trial) grid {shape}")
        order = sorted(trains)  # C order of (stimulus, cell, trial)
        lengths = np.array([trains[key].size for key in order], dtype=np.int64)
        ann = block.annotations
        stimuli = ann.get("stimuli")
        rf = ann.get("receptive_fields")
        return cls(
            name=name if name is not None else (block.name or "recording"),
            spike_times_flat=np.concatenate([trains[key] for key in order]),
            spike_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            shape=shape,  # type: ignore[arg-type]
            window=window,  # type: ignore[arg-type]
            stimuli=None if stimuli is None else np.asarray(stimuli),
            receptive_fields=None if rf is None else np.asarray(rf),
            provenance=json.loads(ann.get("provenance_json", "{}")),
            source=src,
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
        import h5py

        path = Path(path)
        name = self.name if name is None else str(name)
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"invalid recording name {name!r}: must be non-empty, without '/'")
        existing = path.exists()
        if existing:
            others = list_recordings(path)
            if name in others and not overwrite:
                raise ValueError(f"{path}: recording {name!r} already exists (pass overwrite=True to replace it)")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            with h5py.File(tmp, "w", track_order=False) as f:
                f.attrs["format"] = FILE_FORMAT
                f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
                if existing:
                    with h5py.File(path, "r") as old:
                        for other in others:
                            if other != name:
                                old.copy(old[other], f, name=other)
                self._write_group(f.create_group(name), name)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return path

    def _write_group(self, g, name: str) -> None:
        # track_times=False and JSON with sorted keys keep the file byte-reproducible.
        opts = dict(compression="gzip", compression_opts=9, shuffle=True, track_times=False)
        g.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        g.attrs["name"] = name
        g.attrs["window"] = np.asarray(self.window, dtype=np.float64)
        g.attrs["shape"] = np.asarray(self.shape, dtype=np.int64)
        g.attrs["provenance"] = json.dumps(self.provenance, sort_keys=True)
        for key in ("citation", "licence", "doi"):
            if key in self.provenance:
                g.attrs[key] = str(self.provenance[key])
        d = g.create_dataset("spike_times", data=self.spike_times_flat, **opts)
        d.attrs["units"] = "s"
        d = g.create_dataset("spike_offsets", data=self.spike_offsets, **opts)
        d.attrs["order"] = "C order of (stimulus, cell, trial)"
        if self.stimuli is not None:
            d = g.create_dataset("stimuli", data=self.stimuli, chunks=(1,) + self.stimuli.shape[1:], **opts)
            d.attrs["units"] = "grey level 0-255"
        if self.receptive_fields is not None:
            d = g.create_dataset("receptive_fields", data=self.receptive_fields, **opts)
            d.attrs["units"] = "display pixels (x row, y row)"


# ---------------------------------------------------------------------- reading
def _plain(value: Any) -> str:
    """Attribute value for messages: 99 rather than np.int64(99)."""
    return "missing" if value is None else repr(np.asarray(value).tolist())


def _open_h5(path: Path):
    import h5py

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such recording file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataFormatError(f"{path}: not a readable HDF5 file ({e})") from None
    try:
        fmt = f.attrs.get("format")
        ver = f.attrs.get("schema_version")
    except Exception as e:  # noqa: BLE001 - any low-level failure means a corrupt file
        f.close()
        raise DataFormatError(f"{path}: cannot read root attributes ({e})") from None
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FILE_FORMAT:
        f.close()
        raise DataFormatError(f"{path}: root attribute 'format' is {fmt!r}, expected {FILE_FORMAT!r}")
    if ver is None or int(ver) != SCHEMA_VERSION:
        f.close()
        raise DataFormatError(
            f"{path}: root attribute 'schema_version' is {_plain(ver)}, this neurocode reads {SCHEMA_VERSION}"
        )
    return f


def list_recordings(path: str | os.PathLike | None = None) -> list[str]:
    """Names of the recordings (groups) in a neurocode HDF5 file, sorted.

    Parameters
    ----------
    path : path-like, optional
        File; None means :func:`bundled_path`.
    """
    path = bundled_path() if path is None else Path(path)
    with _open_h5(path) as f:
        try:
            return sorted(k for k in f.keys())
        except Exception as e:  # noqa: BLE001
            raise DataFormatError(f"{path}: cannot list groups ({e})") from None


def load_recording(path: str | os.PathLike | None = None, name: str | None = None) -> Recording:
    """Load one recording from a neurocode HDF5 file.

    Parameters
    ----------
    path : path-like, optional
        File; None means the bundled file (:func:`bundled_path`).
    name : str, optional
        Group name; None means ``"natural_images"``, or the only recording in the file.

    Raises
    ------
    FileNotFoundError
        If the file is absent.
    KeyError
        If ``name`` is not in the file (message lists the available names).
    DataFormatError
        If the file is not HDF5, truncated, of another schema version, or a dataset or
        attribute is missing or malformed; the message names the file and the field.
    """
    path = bundled_path() if path is None else Path(path)
    with _open_h5(path) as f:
        try:
            names = sorted(f.keys())
        except Exception as e:  # noqa: BLE001
            raise DataFormatError(f"{path}: cannot list groups ({e})") from None
        if name is None:
            if DEFAULT_RECORDING in names:
                name = DEFAULT_RECORDING
            elif len(names) == 1:
                name = names[0]
            else:
                raise KeyError(f"{path}: several recordings {names}; pass name=")
        if name not in names:
            raise KeyError(f"{path}: no recording {name!r} (found: {names})")
        g = f[name]
        field_ = "?"
        try:
            field_ = f"{name}.attrs['schema_version']"
            ver = g.attrs.get("schema_version")
            if ver is None or int(ver) != SCHEMA_VERSION:
                raise DataFormatError(f"{path}: attribute '{field_}' is {_plain(ver)}, expected {SCHEMA_VERSION}")
            attrs = {}
            for key in ("window", "shape", "provenance"):
                field_ = f"{name}.attrs['{key}']"
                if key not in g.attrs:
                    raise DataFormatError(f"{path}: attribute '{field_}' missing")
                attrs[key] = g.attrs[key]
            data = {}
            for key in ("spike_times", "spike_offsets", "stimuli", "receptive_fields"):
                field_ = f"{name}/{key}"
                if key in g:
                    data[key] = g[key][()]
                elif key in ("spike_times", "spike_offsets"):
                    raise DataFormatError(f"{path}: dataset '{field_}' missing")
            field_ = f"{name}.attrs['provenance']"
            prov = attrs["provenance"]
            provenance = json.loads(prov.decode() if isinstance(prov, bytes) else prov)
        except DataFormatError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated/corrupt data surfaces as many types
            raise DataFormatError(f"{path}: cannot read '{field_}' ({type(e).__name__}: {e})") from None
    return Recording(
        name=name,
        spike_times_flat=data["spike_times"],
        spike_offsets=data["spike_offsets"],
        shape=tuple(np.asarray(attrs["shape"]).tolist()),  # type: ignore[arg-type]
        window=tuple(np.asarray(attrs["window"]).tolist()),  # type: ignore[arg-type]
        stimuli=data.get("stimuli"),
        receptive_fields=data.get("receptive_fields"),
        provenance=provenance,
        source=f"{path}:{name}",
    )
