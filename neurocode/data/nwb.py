"""Import and export of NWB (Neurodata Without Borders) files.

:func:`read_nwb` reads the standard NWB layout of a visual-stimulation experiment into a
:class:`~neurocode.data.Recording` (flashed images) or a
:class:`~neurocode.data.ContinuousRecording` (a movie or white noise); :func:`write_nwb`
writes either kind in that same layout, so that other NWB tools can read it and
``read_nwb(write_nwb(rec))`` gives back the same recording. The fields read and written are
documented in ``docs/nwb.md``; in short:

* ``units`` table: one row per cell, column ``spike_times`` (s, session clock); optional
  column ``receptive_field`` (``[2, n_points]`` contour per cell).
* flashed images: an ``Images`` container of ``GrayscaleImage`` (in ``stimulus_template``
  or ``stimulus``), an ``IndexSeries`` in ``stimulus`` (``data`` = index of the image
  shown, ``timestamps`` = onsets) and the ``trials`` table (``start_time``, ``stop_time``,
  ``stimulus_index``): one trial of a stimulus per row.
* continuous stimulus: an ``ImageSeries`` or ``OpticalSeries`` in ``stimulus`` with
  ``timestamps`` (or ``starting_time`` + ``rate``); rows of the ``trials`` table are the
  presentations of the repeated test segment.

Times in an NWB file are seconds from the session's ``timestamps_reference_time``, so they
may not be negative; a negative spike, frame or trial time is a :class:`DataFormatError`.

The session metadata (subject, experimenter, lab, institution, start time, keywords, ...) is an
:class:`~neurocode.data.nwb_metadata.NWBMetadata`; with it, every file :func:`write_nwb` writes
passes nwbinspector without a CRITICAL finding or a BEST_PRACTICE_VIOLATION.

pynwb is an optional dependency (``pip install neurocode-snn[nwb]``); it is imported only when
one of these functions is called.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from neurocode._io import _jsonable, atomic_h5
from neurocode.data.continuous import ContinuousRecording
from neurocode.data.errors import DataFormatError
from neurocode.data.formats import register_writer
from neurocode.data.recording import Recording
from neurocode.data.nwb_metadata import PLACEHOLDER_START_TIME, NWBMetadata, NWBSubject, default_metadata

__all__ = ["read_nwb", "write_nwb", "import_nwb", "NWBMetadata", "NWBSubject", "NWBMetadataWarning",
           "spike_time_resolution"]

#: Trials-table column with the index (into the Images) of the stimulus of each trial.
STIMULUS_COLUMN = "stimulus_index"
#: Units-table column with receptive-field contours ``[2, n_points]`` per cell.
RF_COLUMN = "receptive_field"
#: neurocode's own units column (ragged, like ``spike_times``): each spike's time relative
#: to the stimulus onset of its trial, at full float64 precision (``spike_times -
#: start_time`` loses the low bits of times relative to a late trial start).
EXACT_COLUMN = "spike_times_in_trial"
#: Optional trials columns: the response window relative to the stimulus onset (s).
WINDOW_COLUMNS = ("window_start", "window_stop")
#: Name of the scratch entry (JSON) where neurocode keeps its metadata.
SCRATCH_NAME = "neurocode"
#: Gap (s) between consecutive trials in files written by :func:`write_nwb`.
TRIAL_GAP = 0.1
#: Tolerance (s) for equal trial durations and for matching trials to stimulus onsets.
TIME_TOL = 1e-6
#: Scratch entry with a continuous recording's exact frame onsets, written when the frames are
#: stored with ``starting_time`` + ``rate`` and those do not give the onsets back bit for bit.
FRAME_TIMES_NAME = "neurocode_frame_times"
#: Acquisition time grids (s), coarsest first, tried by :func:`spike_time_resolution`: 1 ms,
#: 10, 20, 25, 30 and 100 kHz.
RESOLUTION_GRIDS = (1e-3, 1e-4, 5e-5, 4e-5, 1 / 30000, 1e-5)


class NWBMetadataWarning(UserWarning):
    """A file written without the session metadata nwbinspector and DANDI require (a Subject)."""


def _pynwb():
    try:
        import pynwb
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading or writing NWB files needs pynwb: pip install neurocode-snn[nwb] "
                          "(or pip install pynwb)") from e
    return pynwb


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Ctx:
    """Builds DataFormatErrors that name the NWB file and the field."""

    def __init__(self, path: Path):
        self.path = path

    def err(self, field_: str, msg: str) -> DataFormatError:
        return DataFormatError(f"{self.path}: NWB field '{field_}' {msg}")

    def wrap(self, e: DataFormatError, fields: dict[str, str], default: str) -> DataFormatError:
        """Re-raise a Recording/ContinuousRecording validation error with the NWB field it comes from."""
        msg = str(e)
        prefix = f"{self.path}: "
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
        named = re.search(r"field '(\w+)'", msg)  # the validators name the field they reject
        if named and named.group(1) in fields:
            field_ = fields[named.group(1)]
        else:
            field_ = next((nwb for key, nwb in fields.items() if key in msg), default)
        return self.err(field_, f"is invalid: {msg}")


# ---------------------------------------------------------------------- reading helpers
def _times(series) -> np.ndarray | None:
    """float64 onset of every sample of a TimeSeries (``timestamps`` or ``starting_time`` + ``rate``)."""
    if series.timestamps is not None:
        ts = series.timestamps
        if hasattr(ts, "timestamps"):  # timestamps linked from another TimeSeries
            ts = ts.timestamps
        return np.asarray(ts[:], dtype=np.float64)
    if series.rate is None:
        return None
    n = len(series.data)
    t0 = float(series.starting_time or 0.0)
    return t0 + np.arange(n, dtype=np.float64) / float(series.rate)


def _check_times(ctx: _Ctx, field_: str, t: np.ndarray, *, strict: bool) -> None:
    if t.size == 0:
        return
    if not np.isfinite(t).all():
        raise ctx.err(field_, "contains NaN or infinite values")
    if t.min() < 0:
        raise ctx.err(field_, f"has a negative time ({t.min():g} s); NWB times count from the session's "
                              "timestamps_reference_time and must be >= 0")
    if strict:
        bad = np.flatnonzero(np.diff(t) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise ctx.err(field_, f"is not strictly increasing (sample {i} at {t[i]:g} s, sample {i - 1} at "
                                  f"{t[i - 1]:g} s)")


def _ragged(table, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat values and ``[n_rows + 1]`` offsets of a ragged (indexed) DynamicTable column."""
    index = table[col]
    if not hasattr(index, "target"):  # not ragged: one value per row
        data = np.asarray(index.data[:])
        return data.ravel(), np.arange(data.size + 1, dtype=np.int64)
    flat = np.asarray(index.target.data[:])
    ends = np.asarray(index.data[:], dtype=np.int64)
    return flat, np.concatenate([[0], ends]).astype(np.int64)


def _read_units(ctx: _Ctx, nwb) -> tuple[list[np.ndarray], list[np.ndarray] | None, np.ndarray | None]:
    """Per cell: sorted spike times, neurocode's exact trial-relative times (same order) or None, RFs."""
    units = nwb.units
    if units is None:
        raise ctx.err("units", "is missing: the file has no units table (one row per cell with its spike_times)")
    if "spike_times" not in units.colnames:
        raise ctx.err("units.spike_times", f"is missing (units columns: {list(units.colnames)})")
    n = len(units)
    if n == 0:
        raise ctx.err("units", "is empty (no cells)")
    try:
        flat, off = _ragged(units, "spike_times")
        flat = flat.astype(np.float64)
    except Exception as e:  # noqa: BLE001 - a malformed file surfaces as many types
        raise ctx.err("units.spike_times", f"cannot be read ({type(e).__name__}: {e})") from None
    if off[-1] != flat.size or np.any(np.diff(off) < 0):
        raise ctx.err("units.spike_times_index", "does not index units.spike_times")
    if not np.isfinite(flat).all():
        raise ctx.err("units.spike_times", "contains NaN or infinite values")
    if flat.size and flat.min() < 0:
        j = int(np.argmin(flat))
        c = int(np.searchsorted(off, j, side="right") - 1)
        raise ctx.err("units.spike_times", f"has a spike of unit {c} at {flat[j]:g} s, outside the session "
                                           "(NWB times are >= 0, counted from timestamps_reference_time)")
    exact = None
    if EXACT_COLUMN in units.colnames:
        try:
            e_flat, e_off = _ragged(units, EXACT_COLUMN)
            if np.array_equal(e_off, off):
                exact = e_flat.astype(np.float64)
        except Exception:  # noqa: BLE001 - an unusable optional column is ignored
            exact = None
    trains, exact_trains = [], []
    for c in range(n):
        t = flat[off[c]: off[c + 1]]
        x = None if exact is None else exact[off[c]: off[c + 1]]
        if np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            t = t[order]
            x = None if x is None else x[order]
        trains.append(t)
        exact_trains.append(x)
    rf = None
    if RF_COLUMN in units.colnames:
        try:
            rows = units[RF_COLUMN][:]
            rf = np.stack([np.asarray(r, dtype=np.float64) for r in rows])
        except Exception as e:  # noqa: BLE001
            raise ctx.err(f"units.{RF_COLUMN}", f"cannot be read as one [2, n_points] contour per unit "
                                                f"({type(e).__name__}: {e})") from None
        if rf.ndim != 3 or rf.shape[0] != n or rf.shape[1] != 2:
            raise ctx.err(f"units.{RF_COLUMN}", f"must hold one [2, n_points] contour (x row, y row) per unit, "
                                                f"got shape {rf.shape}")
    return trains, (exact_trains if exact is not None else None), rf


def _grey_frames(ctx: _Ctx, field_: str, frames: list[np.ndarray]) -> np.ndarray:
    """Stack 2-D grey frames; mixed sizes or colour images are errors."""
    for i, f in enumerate(frames):
        if f.ndim != 2:
            kind = "a colour image" if f.ndim == 3 and f.shape[-1] in (3, 4) else f"shape {f.shape}"
            raise ctx.err(field_, f"image {i} is {kind}; neurocode needs grey-level images [H, W]")
    shapes = [f.shape for f in frames]
    bad = next((i for i, s in enumerate(shapes) if s != shapes[0]), None)
    if bad is not None:
        raise ctx.err(field_, f"has images of mixed sizes (image 0 is {shapes[0]}, image {bad} is {shapes[bad]})")
    return np.stack(frames)


def _ordered_images(ctx: _Ctx, images, field_: str) -> np.ndarray:
    """Frames ``[n, H, W]`` of a pynwb Images container, in its ``order_of_images`` (else by name)."""
    order = getattr(images, "order_of_images", None)
    if order is not None:
        objs = list(order.data[:])
    else:
        objs = [images.images[k] for k in sorted(images.images)]
    if not objs:
        raise ctx.err(field_, "holds no images")
    return _grey_frames(ctx, field_, [np.asarray(o.data[()]) for o in objs])


def _path_of(nwb, obj) -> str:
    for where in ("stimulus", "stimulus_template"):
        for name, o in getattr(nwb, where).items():
            if o is obj:
                return f"{where}/{name}"
    return getattr(obj, "name", "?")


def _pick_stimulus(ctx: _Ctx, nwb, name: str | None, column: str) -> tuple[str, Any]:
    """``(kind, object)`` with kind "index" (IndexSeries), "images" (Images), "movie" (ImageSeries), "none"."""
    from pynwb.base import Images
    from pynwb.image import ImageSeries, IndexSeries

    def kind_of(o):
        if isinstance(o, IndexSeries):
            return "index"
        if isinstance(o, ImageSeries):
            return "movie"
        if isinstance(o, Images):
            return "images"
        return None

    if name is not None:
        for where in ("stimulus", "stimulus_template"):
            o = getattr(nwb, where).get(name)
            if o is not None:
                if kind_of(o) is None:
                    raise ctx.err(f"{where}/{name}", f"is a {type(o).__name__}; expected an IndexSeries, Images, "
                                                     "ImageSeries or OpticalSeries")
                return kind_of(o), o
        raise ctx.err(f"stimulus/{name}", f"is missing (stimulus: {sorted(nwb.stimulus)}, stimulus_template: "
                                          f"{sorted(nwb.stimulus_template)})")
    stim = list(nwb.stimulus.items())
    for kind in ("index", "movie"):
        found = [(n, o) for n, o in stim if kind_of(o) == kind]
        if len(found) > 1:
            raise ctx.err("stimulus", f"holds several {'IndexSeries' if kind == 'index' else 'ImageSeries'} "
                                      f"{[n for n, _ in found]}; choose one with stimulus=NAME")
        if found:
            return kind, found[0][1]
    imgs = [(f"{w}/{n}", o) for w in ("stimulus_template", "stimulus") for n, o in getattr(nwb, w).items()
            if kind_of(o) == "images"]
    if len(imgs) > 1:
        raise ctx.err("stimulus_template", f"holds several Images containers {[n for n, _ in imgs]}; choose one "
                                           "with stimulus=NAME")
    if imgs:
        return "images", imgs[0][1]
    if nwb.trials is not None and column in nwb.trials.colnames:
        return "none", None
    raise ctx.err("stimulus", "holds no IndexSeries with Images (flashed images) and no ImageSeries/OpticalSeries "
                              f"(continuous stimulus), and the trials table has no '{column}' column; name the "
                              "trials column that holds each trial's image with stimulus_column= (CLI: "
                              "--stimulus-column COLUMN)")


def _scratch_array(nwb, name: str) -> np.ndarray | None:
    """float64 array of a scratch entry, or None when absent or not numeric."""
    try:
        entry = nwb.scratch.get(name) if nwb.scratch is not None else None
        return None if entry is None else np.asarray(entry.data[:], dtype=np.float64)
    except Exception:  # noqa: BLE001 - foreign or damaged scratch data is ignored
        return None


def _session_metadata(nwb) -> dict | None:
    """The file's session metadata as :meth:`NWBMetadata.to_dict`, or None when it has none to keep."""
    def text(v):
        return None if v is None else str(v.decode() if isinstance(v, bytes) else v)

    def texts(v):
        return [] if v is None else [text(x) for x in (v if not isinstance(v, (str, bytes)) else [v])]

    d: dict[str, Any] = {
        "session_start_time": None if nwb.session_start_time is None else nwb.session_start_time.isoformat(),
        "session_description": text(nwb.session_description),
        "experiment_description": text(nwb.experiment_description),
        "experimenter": texts(nwb.experimenter), "lab": text(nwb.lab), "institution": text(nwb.institution),
        "keywords": texts(nwb.keywords[:] if nwb.keywords is not None else None),
        "related_publications": texts(nwb.related_publications), "session_id": text(nwb.session_id),
    }
    if nwb.session_start_time is not None and nwb.session_start_time == PLACEHOLDER_START_TIME:
        d["session_start_time"] = None
    sub = nwb.subject
    if sub is not None:
        d["subject"] = {k: text(getattr(sub, k, None)) for k in ("subject_id", "species", "age", "sex", "description",
                                                                  "strain")}
    res = nwb.units.resolution if nwb.units is not None else None
    if res is not None and np.isfinite(res) and res > 0:
        d["spike_time_resolution"] = float(res)
    try:
        NWBMetadata.from_dict(d)
    except ValueError:
        return None  # metadata that fails neurocode's checks is not carried over (it would fail on export)
    return d


def _metadata(nwb) -> dict:
    try:
        entry = nwb.scratch.get(SCRATCH_NAME) if nwb.scratch is not None else None
        if entry is None:
            return {}
        data = entry.data
        data = data[()] if hasattr(data, "shape") else data
        meta = json.loads(data.decode() if isinstance(data, bytes) else str(data))
        return meta if isinstance(meta, dict) and meta.get("format") == "neurocode" else {}
    except Exception:  # noqa: BLE001 - foreign or damaged scratch data is ignored
        return {}


def _short_table_column(path: Path) -> tuple[str, str] | None:
    """``(field, message)`` for the first table column whose length is not the table's row count, or None."""
    import h5py

    found: list[tuple[str, str]] = []

    def visit(name, obj):
        if found or not isinstance(obj, h5py.Group) or "colnames" not in obj.attrs or "id" not in obj:
            return
        n = obj["id"].shape[0]
        table = name.rsplit("/", 1)[-1] if name.startswith("intervals/") or name == "units" else name
        for col in [c.decode() if isinstance(c, bytes) else str(c) for c in obj.attrs["colnames"]]:
            ds = obj.get(f"{col}_index", obj.get(col))
            if isinstance(ds, h5py.Dataset) and ds.ndim >= 1 and ds.shape[0] != n:
                found.append((f"{table}.{col}", f"has {ds.shape[0]} rows, but the table has {n} (its 'id'); every "
                                                f"column needs one value per row"))
                return

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except Exception:  # noqa: BLE001 - an unreadable file keeps its first error
        return None
    return found[0] if found else None


# ---------------------------------------------------------------------- read
def read_nwb(path: str | os.PathLike, *, stimulus_column: str | None = None, stimulus: str | None = None,
             name: str | None = None):
    """Read an NWB file into a :class:`~neurocode.data.Recording` or :class:`~neurocode.data.ContinuousRecording`.

    Flashed images (an ``IndexSeries`` or ``Images`` in the stimulus groups, or a trials
    column of stimulus indices) give a Recording: each row of the ``trials`` table is one
    trial of its stimulus, with the spikes in the closed interval ``[start_time,
    stop_time]`` at times relative to ``start_time`` (plus the optional ``window_start``
    column: the window's start relative to the stimulus onset). All trials must last as long
    (within 1 µs); the window is ``(window_start, window_start + duration)``. A continuous
    ``ImageSeries``/``OpticalSeries`` gives a ContinuousRecording whose repeats are the rows of
    ``trials`` and whose session runs from 0 (the NWB clock's origin) to the latest of the last
    trial's stop, the last spike and the last frame's onset plus one frame (files written by
    :func:`write_nwb` keep their session). See ``docs/nwb.md``.

    Parameters
    ----------
    path : path-like
        The NWB (HDF5) file.
    stimulus_column : str, optional
        Trials column with each trial's stimulus index (default ``"stimulus_index"``; without
        such a column each trial is matched to the IndexSeries presentation at its start).
    stimulus : str, optional
        Name of the stimulus object (in ``stimulus`` or ``stimulus_template``) when there are
        several.
    name : str, optional
        Name of the recording; default: the one stored by :func:`write_nwb`, else the file's stem.

    Returns
    -------
    Recording or ContinuousRecording
        ``provenance["nwb"]`` records the file path, its SHA-256, ``session_description``
        and ``identifier``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    DataFormatError
        If the file is not readable NWB, lacks the ``units`` table, has negative or
        non-increasing times, images of mixed sizes or colour images, trials of different
        durations, ...; the message names the file and the NWB field.
    ImportError
        If pynwb is not installed.
    """
    pynwb = _pynwb()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such NWB file")
    ctx = _Ctx(path)
    sha = _sha256(path)
    column = STIMULUS_COLUMN if stimulus_column is None else str(stimulus_column)
    try:
        io = pynwb.NWBHDF5IO(str(path), "r")
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(f"{path}: not a readable NWB file ({type(e).__name__}: {e})") from None
    with io:
        try:
            nwb = io.read()
        except Exception as e:  # noqa: BLE001
            ragged = _short_table_column(path)  # pynwb's message for it is a 1.6-kB dump of the table's builder
            if ragged is not None:
                raise ctx.err(*ragged) from None
            first = " ".join(str(e).split())
            raise DataFormatError(f"{path}: not a readable NWB file ({type(e).__name__}: "
                                  f"{first[:300] + ' ...' if len(first) > 300 else first})") from None
        meta = _metadata(nwb)
        trains, exact, rf = _read_units(ctx, nwb)
        kind, obj = _pick_stimulus(ctx, nwb, stimulus, column)
        info = {"path": str(path.resolve()), "sha256": sha, "session_description": str(nwb.session_description),
                "identifier": str(nwb.identifier)}
        session = _session_metadata(nwb)
        if session is not None:
            info["metadata"] = session
        prov = meta.get("provenance") or {}
        if not isinstance(prov, dict):
            raise ctx.err(f"scratch/{SCRATCH_NAME}", f"holds a provenance that is a JSON {type(prov).__name__}, "
                                                     "expected a JSON object")
        provenance = {**prov, "nwb": info}
        rec_name = name if name is not None else str(meta.get("name") or path.stem)
        if kind == "movie":
            return _read_continuous(ctx, nwb, obj, trains, rf, provenance, rec_name, meta)
        if stimulus_column is not None and (nwb.trials is None or column not in nwb.trials.colnames):
            raise ctx.err(f"trials.{column}", "is missing" + ("" if nwb.trials is None else
                                                               f" (trials columns: {list(nwb.trials.colnames)})"))
        return _read_flashed(ctx, nwb, kind, obj, column, trains, exact, rf, provenance, rec_name, meta)


def _read_flashed(ctx, nwb, kind, obj, column, trains, exact, rf, provenance, rec_name, meta):
    frames = None
    onsets = shown = None
    series_field = None
    if kind == "index":
        series_field = _path_of(nwb, obj)
        shown = np.asarray(obj.data[:])
        onsets = _times(obj)
        if onsets is None:
            raise ctx.err(f"{series_field}.timestamps", "is missing (and there is no starting_time + rate)")
        _check_times(ctx, f"{series_field}.timestamps", onsets, strict=True)
        if shown.ndim != 1 or shown.shape[0] != onsets.size:
            raise ctx.err(f"{series_field}.data", f"has {shown.shape[0] if shown.ndim else 0} image indices for "
                                                  f"{onsets.size} timestamps (one index per presentation expected)")
        if obj.indexed_images is not None:
            frames = _ordered_images(ctx, obj.indexed_images, _path_of(nwb, obj.indexed_images))
        elif obj.indexed_timeseries is not None:
            src = obj.indexed_timeseries
            f_field = f"{_path_of(nwb, src)}.data"
            data = np.asarray(src.data[:])
            if data.ndim != 3:
                raise ctx.err(f_field, f"must be grey-level frames [n, H, W], got shape {data.shape}")
            frames = data
    elif kind == "images":
        frames = _ordered_images(ctx, obj, _path_of(nwb, obj))
    trials = nwb.trials
    if trials is None or len(trials) == 0:
        raise ctx.err("trials", "is missing or empty: flashed stimuli need one trials row (start_time, stop_time, "
                                f"{column}) per presentation")
    start = np.asarray(trials["start_time"].data[:], dtype=np.float64)
    stop = np.asarray(trials["stop_time"].data[:], dtype=np.float64)
    _check_times(ctx, "trials.start_time", start, strict=False)
    _check_times(ctx, "trials.stop_time", stop, strict=False)
    if np.any(stop <= start):
        k = int(np.argmax(stop <= start))
        raise ctx.err("trials.stop_time", f"of trial {k} ({stop[k]:g} s) is not after its start_time ({start[k]:g} s)")
    w0 = 0.0
    w1 = None
    if all(c in trials.colnames for c in WINDOW_COLUMNS):
        for c in WINDOW_COLUMNS:
            v = np.asarray(trials[c].data[:], dtype=np.float64)
            if not np.isfinite(v).all() or np.ptp(v) != 0:
                raise ctx.err(f"trials.{c}", "must be one finite value for all trials")
        w0 = float(trials[WINDOW_COLUMNS[0]].data[0])
        w1 = float(trials[WINDOW_COLUMNS[1]].data[0])
    dur = stop - start
    if np.ptp(dur) > TIME_TOL:
        k = int(np.argmax(np.abs(dur - dur[0]) > TIME_TOL))
        raise ctx.err("trials.stop_time", f"gives trials of different durations (trial 0: {dur[0]:g} s, trial {k}: "
                                          f"{dur[k]:g} s); every trial must last as long (within {TIME_TOL:g} s)")
    if w1 is None:
        w1 = w0 + float(dur.max())
    elif abs((w1 - w0) - dur.max()) > TIME_TOL:
        raise ctx.err("trials.window_stop", f"- window_start ({w1 - w0:g} s) differs from the trials' duration "
                                            f"({dur.max():g} s)")
    # stimulus of each trial
    if column in trials.colnames:
        sidx = np.asarray(trials[column].data[:])
        if not np.issubdtype(sidx.dtype, np.integer):
            if not (np.issubdtype(sidx.dtype, np.floating) and np.all(sidx == np.round(sidx))):
                raise ctx.err(f"trials.{column}", f"must hold integer stimulus indices, got {sidx.dtype}")
        sidx = sidx.astype(np.int64)
    elif kind == "index":
        target = start - w0
        j = np.searchsorted(onsets, target - TIME_TOL)
        jc = np.minimum(j, onsets.size - 1)
        ok = (j < onsets.size) & (np.abs(onsets[jc] - target) <= TIME_TOL)
        if not ok.all():
            k = int(np.argmin(ok))
            raise ctx.err("trials.start_time", f"of trial {k} ({start[k]:g} s) matches no presentation of "
                                               f"{series_field} (no onset at {target[k]:g} s); add a "
                                               f"'{column}' column or pass stimulus_column=")
        sidx = shown[jc].astype(np.int64)
    else:
        raise ctx.err(f"trials.{column}", f"is missing and there is no IndexSeries to match trials to presentations "
                                          f"(trials columns: {list(trials.colnames)}); name the column that holds "
                                          "each trial's image with stimulus_column= (CLI: --stimulus-column COLUMN)")
    n_stim = frames.shape[0] if frames is not None else int(sidx.max()) + 1
    if sidx.min() < 0 or sidx.max() >= n_stim:
        raise ctx.err(f"trials.{column}", f"must be stimulus indices in 0..{n_stim - 1}, "
                                          f"got {sidx.min()}..{sidx.max()}")
    counts = np.bincount(sidx, minlength=n_stim).astype(np.int64)
    if counts.min() < 1:
        raise ctx.err(f"trials.{column}", f"never shows stimulus {int(np.argmin(counts))} (every image needs >= 1 "
                                          "trial)")
    # spikes of every (cell, trial), trials in time order
    order = np.argsort(start, kind="stable")
    s_start, s_stop = start[order], stop[order]
    n_c, n_tr = len(trains), order.size
    lens = np.zeros((n_c, n_tr), dtype=np.int64)
    per_cell, per_cell_exact = [], []
    for c, t in enumerate(trains):
        i0 = np.searchsorted(t, s_start, side="left")
        ln = np.searchsorted(t, s_stop, side="right") - i0
        lens[c] = ln
        pos = np.arange(ln.sum()) - np.repeat(np.cumsum(ln) - ln, ln) + np.repeat(i0, ln)
        per_cell.append(np.clip((t[pos] - np.repeat(s_start, ln)) + w0, w0, w1))
        if exact is not None:
            per_cell_exact.append(exact[c][pos])
    if exact is not None and all(np.all(np.abs(x - r) <= TIME_TOL) and np.all((x >= w0) & (x <= w1))
                                 for x, r in zip(per_cell_exact, per_cell)):
        per_cell = per_cell_exact  # written by write_nwb and unedited: the exact onset-relative times
    all_rel = np.concatenate(per_cell) if per_cell else np.zeros(0)
    starts_ck = (np.cumsum(lens.ravel()) - lens.ravel()).reshape(n_c, n_tr)
    s_sorted = sidx[order]
    cc, jj = [], []
    for s in range(n_stim):
        js = np.flatnonzero(s_sorted == s)
        cc.append(np.repeat(np.arange(n_c), js.size))
        jj.append(np.tile(js, n_c))
    cc, jj = np.concatenate(cc), np.concatenate(jj)
    ln = lens[cc, jj]
    pos = np.arange(ln.sum()) - np.repeat(np.cumsum(ln) - ln, ln) + np.repeat(starts_ck[cc, jj], ln)
    try:
        return Recording(
            name=rec_name,
            spike_times_flat=all_rel[pos],
            spike_offsets=np.concatenate([[0], np.cumsum(ln)]).astype(np.int64),
            shape=(n_stim, n_c, int(counts.max())),
            window=(w0, w1),
            stimuli=frames,
            receptive_fields=rf,
            provenance=provenance,
            source=str(ctx.path),
            trial_counts=None if np.all(counts == counts[0]) else counts,
            test_stimuli=None if meta.get("test_stimuli") is None else np.asarray(meta["test_stimuli"], np.int64),
        )
    except DataFormatError as e:
        raise ctx.wrap(e, {"receptive_fields": f"units.{RF_COLUMN}", "stimuli": "stimulus_template",
                           "test_stimuli": f"scratch/{SCRATCH_NAME}", "spike": "units.spike_times",
                           "window": "trials.stop_time"}, "trials") from None


def _read_continuous(ctx, nwb, series, trains, rf, provenance, rec_name, meta):
    field_ = _path_of(nwb, series)
    if getattr(series, "external_file", None) is not None and (series.data is None or len(series.data) == 0):
        raise ctx.err(f"{field_}.external_file", "is not supported: the frames must be stored in the file (data)")
    data = series.data
    if len(getattr(data, "shape", np.shape(data))) != 3:
        shape = tuple(getattr(data, "shape", np.shape(data)))
        what = "colour frames" if len(shape) == 4 and shape[-1] in (3, 4) else f"shape {shape}"
        raise ctx.err(f"{field_}.data", f"has {what}; neurocode needs grey-level frames [n_frames, H, W]")
    frames = np.asarray(data[:])
    ft = _times(series)
    if ft is None:
        raise ctx.err(f"{field_}.timestamps", "is missing (and there is no starting_time + rate)")
    if ft.size != frames.shape[0]:
        raise ctx.err(f"{field_}.timestamps", f"has {ft.size} times for {frames.shape[0]} frames")
    exact_ft = _scratch_array(nwb, FRAME_TIMES_NAME)
    if exact_ft is not None and exact_ft.shape == ft.shape and np.all(np.abs(exact_ft - ft) <= TIME_TOL):
        ft = exact_ft  # written by write_nwb and unedited: the onsets bit for bit
    _check_times(ctx, f"{field_}.timestamps", ft, strict=True)
    repeats = None
    trials = nwb.trials
    if trials is not None and len(trials) > 0:
        start = np.asarray(trials["start_time"].data[:], dtype=np.float64)
        stop = np.asarray(trials["stop_time"].data[:], dtype=np.float64)
        _check_times(ctx, "trials.start_time", start, strict=False)
        _check_times(ctx, "trials.stop_time", stop, strict=False)
        repeats = np.stack([start, stop], axis=1)
    if meta.get("kind") == "continuous" and meta.get("session") is not None:
        session = tuple(float(v) for v in meta["session"])
    else:
        if series.timestamps is None and series.rate:
            frame_dt = 1.0 / float(series.rate)
        else:
            frame_dt = float(np.median(np.diff(ft))) if ft.size > 1 else 0.0
        ends = [ft[-1] + frame_dt] + [t[-1] for t in trains if t.size]
        if repeats is not None:
            ends.append(float(repeats[:, 1].max()))
        session = (0.0, float(max(ends)))
    try:
        return ContinuousRecording.from_spike_times(
            trains, frames, ft, session, repeats=repeats, name=rec_name, receptive_fields=rf,
            provenance=provenance, source=str(ctx.path))
    except DataFormatError as e:
        raise ctx.wrap(e, {"frame_times": f"{field_}.timestamps", "frames": f"{field_}.data",
                           "repeats": "trials", "receptive_fields": f"units.{RF_COLUMN}",
                           "spike_times": "units.spike_times", "spike": "units.spike_times",
                           "session": f"scratch/{SCRATCH_NAME}"},
                       "units.spike_times") from None


# ---------------------------------------------------------------------- write
def write_nwb(recording, path: str | os.PathLike, *, metadata: NWBMetadata | None = None,
              overwrite: bool = False) -> Path:
    """Write a recording as an NWB file in the layout :func:`read_nwb` reads (see ``docs/nwb.md``).

    A flashed :class:`~neurocode.data.Recording` becomes an ``Images`` container
    (``stimulus_template/stimuli``, one ``GrayscaleImage`` per stimulus, in order), an
    ``IndexSeries`` ``stimulus/presentations`` (regular onsets: ``starting_time`` + ``rate``)
    and a ``trials`` table with ``stimulus_index``,
    ``window_start`` and ``window_stop``. Trial ``i`` (counting all trials, stimulus-major)
    has its stimulus onset at ``base + i · step`` s, with ``step`` the window's length plus a
    0.1-s gap rounded up to a multiple of 0.5 s; spike times are shifted by the onset. The
    units table also keeps each spike's exact onset-relative time (column
    ``spike_times_in_trial``), so :func:`read_nwb` returns the spike times bit for bit. A
    :class:`~neurocode.data.ContinuousRecording` becomes an ``ImageSeries`` ``stimulus/frames``
    (``starting_time`` + ``rate`` when the frames are regular to 1 ns, else ``timestamps``) and
    one ``trials`` row per repeat. Name, provenance, test stimuli and the continuous session
    are kept as JSON in ``scratch/neurocode``.

    The session metadata comes from ``metadata``, else from the recording's provenance
    (:func:`~neurocode.data.nwb_metadata.default_metadata`: the bundled recording's paper, an
    NWB file it was read from, the source of a digital twin). The ``units`` table's
    ``resolution`` is :func:`spike_time_resolution`. Without a subject the file lacks the
    ``Subject`` nwbinspector and DANDI require, and an :class:`NWBMetadataWarning` says so.

    The file is built in memory and written atomically (a temporary file in the same folder,
    then :func:`os.replace`); a failed write (disk full, read-only folder) raises
    :class:`neurocode._io.WriteError` naming ``path`` and leaves no temporary file behind.

    Parameters
    ----------
    recording : Recording or ContinuousRecording
        Flashed frames ``[n, H, W]`` or no frames; clips (``[n, F, H, W]``) are not supported
        (write the ContinuousRecording they were cut from).
    path : path-like
        Target ``.nwb`` file.
    metadata : NWBMetadata, optional
        Subject, experimenter, lab, institution, session start time, descriptions, keywords,
        publications, spike-time resolution.
    overwrite : bool
        Replace an existing file (otherwise FileExistsError).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    pynwb = _pynwb()
    from pynwb.file import Subject

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: file exists (pass overwrite=True to replace it)")
    if isinstance(recording, ContinuousRecording):
        kind = "continuous"
    elif isinstance(recording, Recording):
        if recording.is_clips:
            raise ValueError(f"{recording.source}: write_nwb writes flashed frames [n, H, W] only, not clips "
                             "[n, F, H, W]; write the ContinuousRecording the clips were cut from instead")
        kind = "flashed"
    else:
        raise TypeError(f"write_nwb needs a Recording or ContinuousRecording, got {type(recording).__name__}")
    if metadata is not None and not isinstance(metadata, NWBMetadata):
        raise TypeError(f"write_nwb: metadata must be an NWBMetadata, got {type(metadata).__name__}")
    prov = recording.provenance
    md = metadata if metadata is not None else (default_metadata(prov) or NWBMetadata())
    desc = f"neurocode recording '{recording.name}'"
    if prov.get("dataset"):
        desc += f" ({prov['dataset']})"
    notes = ["Written by neurocode (neurocode.data.nwb.write_nwb)."]
    if md.session_start_time is None:
        notes.append("session_start_time is a placeholder: the acquisition date is not recorded in the source.")
    if md.notes:
        notes.append(md.notes)
    general = {key: getattr(md, key) or None for key in ("experiment_description", "lab", "institution",
                                                         "session_id")}
    general.update({key: list(getattr(md, key)) or None for key in ("experimenter", "keywords",
                                                                   "related_publications")})
    nwb = pynwb.NWBFile(
        session_description=md.session_description or desc,
        identifier=str(uuid.uuid4()),
        # a recording without an acquisition date gets the Unix epoch, and notes say it is a placeholder
        session_start_time=md.session_start_time or PLACEHOLDER_START_TIME,
        notes=" ".join(notes),
        source_script="neurocode.data.nwb.write_nwb",
        source_script_file_name="neurocode/data/nwb.py",
        subject=None if md.subject is None else Subject(**{k: v for k, v in dataclasses.asdict(md.subject).items()
                                                           if v is not None}),
        **{k: v for k, v in general.items() if v is not None},
    )
    if md.subject is None:
        warnings.warn(NWBMetadataWarning(
            f"{path}: written without a subject (species, age, sex, id): nwbinspector reports that as CRITICAL and "
            "DANDI refuses it; pass metadata=NWBMetadata(subject=NWBSubject(...)) (CLI: --metadata FILE.json)"),
            stacklevel=2)
    resolution = spike_time_resolution(recording, md)
    meta: dict[str, Any] = {"format": "neurocode", "version": 1, "kind": kind, "name": recording.name,
                            "provenance": prov}
    if kind == "flashed":
        _write_flashed(nwb, recording, meta, resolution)
    else:
        _write_continuous(nwb, recording, meta, resolution)
    nwb.add_scratch(json.dumps(_jsonable(meta), sort_keys=True), name=SCRATCH_NAME,
                    description="neurocode metadata (JSON): recording name, provenance, test stimuli, session")
    # built in memory and written in one piece (neurocode._io.atomic_h5): a full disk is a
    # WriteError naming the file, never a crash of HDF5 closing a half-written file
    with atomic_h5(path, overwrite=overwrite) as f, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not end in '.nwb'")  # the in-memory file's name
        io = pynwb.NWBHDF5IO(mode="w", file=f)
        io.write(nwb)  # not io.close(): that would close the in-memory file before it is written out
    return path


def _compressed(data: np.ndarray, chunks=None):
    from hdmf.backends.hdf5.h5_utils import H5DataIO

    return H5DataIO(np.ascontiguousarray(data), compression="gzip", compression_opts=4, shuffle=True,
                    chunks=chunks)


def spike_time_resolution(recording, metadata: NWBMetadata | None = None) -> float:
    """The smallest possible difference between two spike times of ``recording``, s.

    In order: ``metadata.spike_time_resolution``; the time step of a simulated recording
    (``provenance["simulated"]["dt"]``: its spikes are resolved to bins); the coarsest of
    :data:`RESOLUTION_GRIDS` (1 ms, 10/20/25/30/100 kHz) on which every spike time lies (to
    1e-6 of the grid step); else 1 µs, the precision to which neurocode matches NWB times.
    Pass the acquisition system's ``1 / sampling rate`` in ``metadata`` where it is known.
    """
    if metadata is not None and metadata.spike_time_resolution is not None:
        return float(metadata.spike_time_resolution)
    sim = recording.provenance.get("simulated")
    if isinstance(sim, dict) and isinstance(sim.get("dt"), (int, float)) and sim["dt"] > 0:
        return float(sim["dt"])
    t = np.asarray(recording.spike_times_flat, dtype=np.float64)
    if t.size:
        for q in RESOLUTION_GRIDS:
            steps = t / q
            if np.all(np.abs(steps - np.round(steps)) <= 1e-6):
                return float(q)
    return TIME_TOL


def _add_units(nwb, trains: list[np.ndarray], rf: np.ndarray | None, exact: list[np.ndarray] | None,
               resolution: float) -> None:
    from pynwb.misc import Units

    nwb.units = Units(name="units", description="one row per recorded cell: its spike times (s, session clock)",
                      resolution=float(resolution))
    if rf is not None:
        nwb.add_unit_column(RF_COLUMN, "receptive-field contour of the cell: [2, n_points] (x row, y row) in "
                                       "display pixels")
    if exact is not None:
        nwb.add_unit_column(EXACT_COLUMN, "neurocode: each spike's time relative to the stimulus onset of the trial "
                                          "that contains it (s), same order as spike_times, at full precision",
                            index=True)
    for c, t in enumerate(trains):
        kw: dict[str, Any] = {"spike_times": t}
        if rf is not None:
            kw[RF_COLUMN] = rf[c]
        if exact is not None:
            kw[EXACT_COLUMN] = exact[c]
        nwb.add_unit(**kw)


def _write_flashed(nwb, rec, meta: dict, resolution: float) -> None:
    from pynwb.base import ImageReferences, Images
    from pynwb.image import GrayscaleImage, IndexSeries

    w0, w1 = rec.window
    step = math.ceil(2.0 * (w1 - w0 + TRIAL_GAP)) / 2.0  # a multiple of 0.5 s: onsets are exact
    base = math.ceil(2.0 * max(0.0, -w0)) / 2.0  # trial starts (onset + w0) stay >= 0
    counts = rec.trial_counts
    n_tr = int(counts.sum())
    onsets = base + np.arange(n_tr, dtype=np.float64) * step
    stim_of_trial = np.repeat(np.arange(rec.n_stimuli, dtype=np.int64), counts)
    # global trial index of every spike: trials are numbered stimulus-major, then trial
    s, c, k = rec._train_coords()
    first_trial = np.concatenate([[0], np.cumsum(counts)[:-1]])
    trial_of_train = first_trial[s] + k
    lengths = np.diff(rec.spike_offsets)
    t_rel = rec.spike_times_flat
    trial_of_spike = np.repeat(trial_of_train, lengths)
    cell_of_spike = np.repeat(c, lengths)
    t_abs = onsets[trial_of_spike] + t_rel
    # for one cell the trains are stored in increasing trial order, so each cell's times are sorted
    trains = [t_abs[cell_of_spike == j] for j in range(rec.n_cells)]
    exact = [t_rel[cell_of_spike == j] for j in range(rec.n_cells)]
    _add_units(nwb, trains, rec.receptive_fields, exact, resolution)
    if rec.stimuli is not None:
        width = max(3, len(str(rec.n_stimuli - 1)))
        imgs = [GrayscaleImage(name=f"stimulus_{i:0{width}d}", data=_compressed(rec.stimuli[i]),
                               description=f"stimulus {i}") for i in range(rec.n_stimuli)]
        images = Images(name="stimuli", images=imgs, description="flashed stimulus images, in stimulus order",
                        order_of_images=ImageReferences(name="order_of_images", data=imgs))
        nwb.add_stimulus_template(images)
        nwb.add_stimulus(IndexSeries(name="presentations", data=stim_of_trial.astype(np.uint32), unit="N/A",
                                     indexed_images=images, starting_time=base, rate=1.0 / step,
                                     description="index (into stimulus_template/stimuli) of the image flashed at "
                                                 "each onset"))
    nwb.add_trial_column(STIMULUS_COLUMN, "index of the stimulus shown (order of stimulus_template/stimuli)")
    nwb.add_trial_column(WINDOW_COLUMNS[0], "start of the response window relative to the stimulus onset (s)")
    nwb.add_trial_column(WINDOW_COLUMNS[1], "end of the response window relative to the stimulus onset (s)")
    for i in range(n_tr):
        nwb.add_trial(start_time=float(onsets[i] + w0), stop_time=float(onsets[i] + w1),
                      stimulus_index=int(stim_of_trial[i]), window_start=float(w0), window_stop=float(w1))
    if rec.test_stimuli is not None:
        meta["test_stimuli"] = rec.test_stimuli.tolist()


def _write_continuous(nwb, rec, meta: dict, resolution: float) -> None:
    from pynwb.image import ImageSeries

    if rec.session[0] < 0 or rec.n_spikes and rec.spike_times_flat.min() < 0:
        raise ValueError(f"{rec.source}: NWB times must be >= 0; the session starts at {rec.session[0]:g} s "
                         "(shift the recording's clock first)")
    _add_units(nwb, rec.spike_times, rec.receptive_fields, None, resolution)
    ft = rec.frame_times
    timing: dict[str, Any] = {"timestamps": ft}
    # regular to 1 ns (nwbinspector's test): a rate, and the exact onsets in scratch if the rate misses a bit
    if ft.size > 2 and np.unique(np.round(np.diff(ft), 9)).size == 1:
        rate = (ft.size - 1) / (ft[-1] - ft[0])
        timing = {"starting_time": float(ft[0]), "rate": float(rate)}
        if not np.array_equal(ft[0] + np.arange(ft.size) / rate, ft):
            nwb.add_scratch(np.asarray(ft, dtype=np.float64), name=FRAME_TIMES_NAME,
                            description="neurocode: exact onset of every frame (s); stimulus/frames has them to "
                                        "rounding as starting_time + i / rate")
    nwb.add_stimulus(ImageSeries(name="frames", data=_compressed(rec.frames, chunks=(1,) + rec.frame_shape),
                                 unit="n.a.", format="raw", **timing,
                                 description="stimulus frames [n_frames, H, W] (grey levels); frame i is on "
                                             "screen from its onset until the next frame's"))
    if rec.repeats is not None:
        for start, stop in rec.repeats:
            nwb.add_trial(start_time=float(start), stop_time=float(stop))
    meta["session"] = [float(v) for v in rec.session]


register_writer("nwb", write_nwb)


# ---------------------------------------------------------------------- import
def import_nwb(nwb_path: str | os.PathLike, out_h5: str | os.PathLike, name: str | None = None,
               overwrite: bool = False, *, stimulus_column: str | None = None, stimulus: str | None = None) -> Path:
    """Read an NWB file (:func:`read_nwb`) and save it as group ``name`` of a neurocode HDF5 file.

    ``stimulus_column`` and ``stimulus`` are :func:`read_nwb`'s options.

    Returns
    -------
    pathlib.Path
        ``out_h5``.
    """
    rec = read_nwb(nwb_path, stimulus_column=stimulus_column, stimulus=stimulus)
    return rec.save(out_h5, name, overwrite=overwrite)
