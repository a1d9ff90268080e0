"""The neurocode HDF5 file format: schema constants, atomic group writes, reading and listing.

The layout (``schema_version`` 2; version-1 files still load) is documented in
``datasets/README.md``. :func:`save_recording` writes a :class:`~neurocode.data.Recording` or
:class:`~neurocode.data.ContinuousRecording` as a group through :func:`save_group` (it is the
``"hdf5"`` writer of :mod:`neurocode.data.formats`, which ``rec.save(...)`` calls);
:func:`load_recording` reads either kind (and NWB files, via :mod:`neurocode.data.nwb`). This
module imports the in-memory classes; they never import it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from neurocode._io import atomic_h5, file_lock
from neurocode.data.continuous import ContinuousRecording
from neurocode.data.errors import DataFormatError
from neurocode.data.formats import register_writer
from neurocode.data.recording import Recording

__all__ = [
    "SCHEMA_VERSION",
    "READABLE_VERSIONS",
    "FILE_FORMAT",
    "BUNDLED_FILENAME",
    "DEFAULT_RECORDING",
    "bundled_path",
    "save_group",
    "save_recording",
    "list_recordings",
    "load_recording",
]

#: Version of the HDF5 layout written by :meth:`Recording.save`.
SCHEMA_VERSION = 2
#: Versions this reader accepts (1: equal trial counts, flashed frames only).
READABLE_VERSIONS = (1, 2)
#: Value of the root attribute ``format`` that marks a neurocode recordings file.
FILE_FORMAT = "neurocode-recordings"
BUNDLED_FILENAME = "onken2016_retina2.h5"
#: Recording returned by :func:`load_recording` when ``name`` is None.
DEFAULT_RECORDING = "natural_images"



def bundled_path() -> Path:
    """Path of the bundled prepared recording file.

    Returns ``<repo>/datasets/onken2016_retina2.h5`` in a source checkout (or an editable
    install), ``<site-packages>/neurocode/datasets/onken2016_retina2.h5`` in an installed wheel
    (the same file, shipped as package data), or the value of the environment variable
    ``NEUROCODE_DATA`` if set (a file, or a folder that contains ``onken2016_retina2.h5``).

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
        package = Path(__file__).resolve().parents[1]
        installed = package / "datasets" / BUNDLED_FILENAME
        path = installed if installed.is_file() else package.parent / "datasets" / BUNDLED_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: bundled recording file not found. Build it from the original Onken et al. "
            "2016 package (Dryad doi:10.5061/dryad.4ch10) with `python datasets/build_onken2016.py "
            "--source <package folder> --out datasets/onken2016_retina2.h5`, or point the "
            "NEUROCODE_DATA environment variable at an existing file."
        )
    return path


# track_times=False and JSON with sorted keys keep the file byte-reproducible.
H5_OPTS = dict(compression="gzip", compression_opts=9, shuffle=True, track_times=False)


def save_group(path: str | os.PathLike, name: str, write: Any, *, overwrite: bool = False) -> Path:
    """Atomically (re)write group ``name`` of a neurocode file with ``write(group, name)``, keeping the others.

    The file's lock (:func:`neurocode._io.file_lock`, ``.FILE.lock`` beside it) is held from
    reading the other groups to writing the new file: two processes adding recordings to one
    file at once both land, the second waiting for the first.
    """
    path = Path(path)
    if not name or "/" in name or name.startswith(".") or "\x00" in name or not _utf8(name):
        raise ValueError(f"invalid recording name {name!r}: must be non-empty text, without '/' or NUL, "
                         "not starting with '.'")
    with file_lock(path):
        return _rewrite_with_group(path, name, write, overwrite)


def _rewrite_with_group(path: Path, name: str, write: Any, overwrite: bool) -> Path:
    import h5py

    existing = path.exists()
    if existing:
        others = list_recordings(path)
        if name in others and not overwrite:
            raise ValueError(f"{path}: recording {name!r} already exists (pass overwrite=True to replace it)")
    # Built in memory and written out in one piece (neurocode._io.atomic_h5): a full disk or a
    # read-only folder is a WriteError naming the file, and the previous file stays as it was.
    with atomic_h5(path, track_order=False) as f:
        f.attrs["format"] = FILE_FORMAT
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        if existing:
            other = "?"
            try:
                with h5py.File(path, "r") as old:
                    for other in others:
                        if other != name:
                            old.copy(old[other], f, name=other)
            except Exception as e:  # noqa: BLE001 - a damaged group surfaces as many types
                raise DataFormatError(f"{path}: cannot copy recording '{other}' into the new file "
                                      f"({type(e).__name__}: {e})") from None
        write(f.create_group(name), name)
    return path


def save_recording(recording: Recording | ContinuousRecording, path: str | os.PathLike, name: str | None = None,
                   *, overwrite: bool = False) -> Path:
    """Write ``recording`` as group ``name`` (default: its name) of the neurocode HDF5 file ``path``.

    Other groups already in the file are kept. The write is atomic: a new file is written
    next to ``path`` (other groups copied over) and moved into place with
    :func:`os.replace`, so an interruption never leaves a corrupt file. ``overwrite``
    replaces a group of the same name (otherwise ValueError). Returns ``path``.
    """
    if isinstance(recording, ContinuousRecording):
        write = _write_continuous_group
    elif isinstance(recording, Recording):
        write = _write_recording_group
    else:
        raise TypeError(f"save_recording needs a Recording or ContinuousRecording, got {type(recording).__name__}")
    return save_group(path, recording.name if name is None else str(name), lambda g, n: write(recording, g, n),
                      overwrite=overwrite)


def _write_recording_group(rec: Recording, g, name: str) -> None:
    opts = H5_OPTS
    g.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
    g.attrs["kind"] = "stimulus_trials"
    g.attrs["name"] = name
    g.attrs["window"] = np.asarray(rec.window, dtype=np.float64)
    g.attrs["shape"] = np.asarray(rec.shape, dtype=np.int64)
    g.attrs["provenance"] = json.dumps(rec.provenance, sort_keys=True)
    for key in ("citation", "licence", "doi"):  # plain-text copies for HDF5 browsers (the JSON is the record)
        value = str(rec.provenance.get(key, ""))
        if key in rec.provenance and "\x00" not in value and _utf8(value):  # else HDF5 cannot store it
            g.attrs[key] = value
    d = g.create_dataset("spike_times", data=rec.spike_times_flat, **opts)
    d.attrs["units"] = "s"
    d = g.create_dataset("spike_offsets", data=rec.spike_offsets, **opts)
    d.attrs["order"] = "stimulus, then cell, then trial (trial_counts[s] trials of stimulus s)"
    g.create_dataset("trial_counts", data=rec.trial_counts, **opts)
    if rec.stimuli is not None:
        d = g.create_dataset("stimuli", data=rec.stimuli, chunks=(1,) + rec.stimuli.shape[1:], **opts)
        d.attrs["units"] = "grey level 0-255" if rec.stimuli.dtype == np.uint8 else "intensity"
        if rec.frame_interval is not None:
            d.attrs["frame_interval"] = float(rec.frame_interval)
            d.attrs["stimulus_start"] = float(rec.stimulus_start)
    if rec.test_stimuli is not None:
        g.create_dataset("test_stimuli", data=rec.test_stimuli, **opts)
    if rec.receptive_fields is not None:
        d = g.create_dataset("receptive_fields", data=rec.receptive_fields, **opts)
        d.attrs["units"] = "display pixels (x row, y row)"


def _write_continuous_group(rec: ContinuousRecording, g, name: str) -> None:
    g.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
    g.attrs["kind"] = "continuous"
    g.attrs["name"] = name
    g.attrs["session"] = np.asarray(rec.session, dtype=np.float64)
    g.attrs["provenance"] = json.dumps(rec.provenance, sort_keys=True)
    g.create_dataset("frames", data=rec.frames, chunks=(1,) + rec.frames.shape[1:], **H5_OPTS)
    d = g.create_dataset("frame_times", data=rec.frame_times, **H5_OPTS)
    d.attrs["units"] = "s"
    d = g.create_dataset("spike_times", data=rec.spike_times_flat, **H5_OPTS)
    d.attrs["units"] = "s"
    d = g.create_dataset("spike_offsets", data=rec.spike_offsets, **H5_OPTS)
    d.attrs["order"] = "cell"
    if rec.repeats is not None:
        d = g.create_dataset("repeats", data=rec.repeats, **H5_OPTS)
        d.attrs["units"] = "s (start, stop)"
    if rec.receptive_fields is not None:
        g.create_dataset("receptive_fields", data=rec.receptive_fields, **H5_OPTS)


def _continuous_from_h5(name: str, attrs: dict, data: dict, provenance: dict, source: str) -> ContinuousRecording:
    for key in ("frames", "frame_times"):
        if key not in data:
            raise DataFormatError(f"{source}: dataset '{name}/{key}' missing")
    return ContinuousRecording(name=name, frames=data["frames"], frame_times=data["frame_times"],
                               spike_times_flat=data["spike_times"], spike_offsets=data["spike_offsets"],
                               session=tuple(np.asarray(attrs["session"]).tolist()), repeats=data.get("repeats"),
                               receptive_fields=data.get("receptive_fields"), provenance=provenance, source=source)


register_writer("hdf5", save_recording)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


# ---------------------------------------------------------------------- reading
def _plain(value: Any) -> str:
    """Attribute value for messages: 99 rather than np.int64(99) (at most 80 characters)."""
    if value is None:
        return "missing"
    try:
        text = repr(np.asarray(value).tolist())
    except Exception:  # noqa: BLE001
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _version_ok(ver: Any) -> bool:
    """Only an integer scalar in READABLE_VERSIONS: not 1.0, 1.7, "1", True or [1]."""
    if isinstance(ver, np.ndarray):
        if ver.ndim != 0:
            return False
        ver = ver[()]
    if isinstance(ver, (bool, np.bool_)) or not isinstance(ver, (int, np.integer)):
        return False
    return int(ver) in READABLE_VERSIONS


def _is_number_array(a: np.ndarray, integer: bool = False) -> bool:
    if a.dtype == bool:
        return False
    return np.issubdtype(a.dtype, np.integer) or (not integer and np.issubdtype(a.dtype, np.floating))


def _int_tuple(value: Any, path: Path, field_: str, n: int, what: str) -> tuple[int, ...]:
    a = np.asarray(value)
    if a.shape != (n,) or not _is_number_array(a, integer=True):
        raise DataFormatError(f"{path}: attribute '{field_}' is {_plain(value)} ({a.dtype} {a.shape}), expected "
                              f"{n} integers {what}")
    return tuple(int(v) for v in a)


def _float_tuple(value: Any, path: Path, field_: str, n: int, what: str) -> tuple[float, ...]:
    a = np.asarray(value)
    if a.shape != (n,) or not _is_number_array(a) or not np.isfinite(a.astype(np.float64)).all():
        raise DataFormatError(f"{path}: attribute '{field_}' is {_plain(value)} ({a.dtype} {a.shape}), expected "
                              f"{n} finite numbers {what}")
    return tuple(float(v) for v in a)


def _float_scalar(value: Any, path: Path, field_: str, what: str) -> float | None:
    if value is None:
        return None
    a = np.asarray(value)
    if a.ndim != 0 or not _is_number_array(a) or not np.isfinite(float(a)):
        raise DataFormatError(f"{path}: attribute '{field_}' is {_plain(value)} ({a.dtype} {a.shape}), expected "
                              f"one finite number {what}")
    return float(a)


def _text(value: Any) -> str | None:
    """A string attribute (h5py gives str, or bytes for fixed-length strings), else None."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return None
    return str(value) if isinstance(value, (str, np.str_)) else None


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
    if _text(fmt) != FILE_FORMAT:
        f.close()
        raise DataFormatError(f"{path}: root attribute 'format' is {_plain(fmt)}, expected {FILE_FORMAT!r}")
    if not _version_ok(ver):
        f.close()
        raise DataFormatError(
            f"{path}: root attribute 'schema_version' is {_plain(ver)}, expected one of the integers "
            f"{list(READABLE_VERSIONS)} (the versions this neurocode reads)"
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


def load_recording(path: str | os.PathLike | None = None, name: str | None = None, *,
                   stimulus_column: str | None = None, stimulus: str | None = None):
    """Load one recording from a neurocode HDF5 file.

    Parameters
    ----------
    path : path-like, optional
        A neurocode HDF5 file, or an NWB file (``.nwb``, read by
        :func:`neurocode.data.nwb.read_nwb`; needs the ``[nwb]`` extra); None means the
        bundled file (:func:`bundled_path`).
    name : str, optional
        Group name; None means ``"natural_images"``, or the only recording in the file.
    stimulus_column, stimulus : str, optional
        NWB files only: :func:`~neurocode.data.nwb.read_nwb`'s options (the trials column
        with each trial's stimulus index; the stimulus object to read).

    Returns
    -------
    Recording or ContinuousRecording
        By the group's ``kind`` attribute ("stimulus_trials", the only kind of version-1
        files, or "continuous").

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
    import h5py

    path = bundled_path() if path is None else Path(path)
    if path.suffix.lower() == ".nwb":
        from neurocode.data.nwb import read_nwb

        if not path.exists():
            raise FileNotFoundError(f"{path}: no such NWB file")
        return read_nwb(path, stimulus_column=stimulus_column, stimulus=stimulus)
    given = [f"{k} ({v!r})" for k, v in (("stimulus_column", stimulus_column), ("stimulus", stimulus)) if v is not None]
    if given:
        raise ValueError(f"{path}: {' and '.join(given)} applies to NWB files (.nwb) only; this is a neurocode HDF5 "
                         "file, whose recordings are chosen by name (--recording)")
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
                raise KeyError(f"{path}: several recordings {names}; choose one with --recording NAME "
                               "(name= in Python)")
        if name not in names:
            raise KeyError(f"{path}: no recording {name!r} (found: {names})")
        g = f[name]
        field_ = name
        try:
            if not isinstance(g, h5py.Group):
                raise DataFormatError(f"{path}: '{name}' is a {type(g).__name__}, expected a recording group")
            field_ = f"{name}.attrs['schema_version']"
            ver = g.attrs.get("schema_version")
            if not _version_ok(ver):
                raise DataFormatError(f"{path}: attribute '{field_}' is {_plain(ver)}, expected one of the integers "
                                      f"{list(READABLE_VERSIONS)}")
            field_ = f"{name}.attrs['kind']"
            raw_kind = g.attrs.get("kind", "stimulus_trials")
            kind = _text(raw_kind)
            if kind not in ("stimulus_trials", "continuous"):
                raise DataFormatError(f"{path}: attribute '{field_}' is {_plain(raw_kind)}, expected "
                                      "'stimulus_trials' or 'continuous'")
            attrs: dict[str, Any] = {}
            required = ("window", "shape", "provenance") if kind == "stimulus_trials" else ("session", "provenance")
            for key in required:
                field_ = f"{name}.attrs['{key}']"
                if key not in g.attrs:
                    raise DataFormatError(f"{path}: attribute '{field_}' missing")
                attrs[key] = g.attrs[key]
            data: dict[str, Any] = {}
            for key in ("spike_times", "spike_offsets", "stimuli", "receptive_fields", "trial_counts", "test_stimuli",
                        "frames", "frame_times", "repeats"):
                field_ = f"{name}/{key}"
                if key in g:
                    if not isinstance(g[key], h5py.Dataset):
                        raise DataFormatError(f"{path}: '{field_}' is a {type(g[key]).__name__}, expected a dataset")
                    data[key] = g[key][()]
                    if key == "stimuli":
                        for a in ("frame_interval", "stimulus_start"):
                            field_ = f"{name}/stimuli.attrs['{a}']"
                            data[a] = _float_scalar(g[key].attrs.get(a), path, field_, "(s)")
                elif key in ("spike_times", "spike_offsets"):
                    raise DataFormatError(f"{path}: dataset '{field_}' missing")
            field_ = f"{name}.attrs['provenance']"
            prov = _text(attrs["provenance"])
            if prov is None:
                raise DataFormatError(f"{path}: attribute '{field_}' is {_plain(attrs['provenance'])} "
                                      f"({np.asarray(attrs['provenance']).dtype}), expected a JSON object as text")
            try:
                provenance = json.loads(prov)
            except (ValueError, RecursionError) as e:
                raise DataFormatError(f"{path}: attribute '{field_}' is not valid JSON ({type(e).__name__}: "
                                      f"{' '.join(str(e).split())})") from None
            if not isinstance(provenance, dict):
                raise DataFormatError(f"{path}: attribute '{field_}' is a JSON {type(provenance).__name__}, "
                                      "expected a JSON object")
            if kind == "stimulus_trials":
                field_ = f"{name}.attrs['shape']"
                shape = _int_tuple(attrs["shape"], path, field_, 3, "(n_stimuli, n_cells, n_trials)")
                field_ = f"{name}.attrs['window']"
                window = _float_tuple(attrs["window"], path, field_, 2, "(t_start, t_stop) in s")
            else:
                field_ = f"{name}.attrs['session']"
                attrs["session"] = _float_tuple(attrs["session"], path, field_, 2, "(t_start, t_stop) in s")
        except DataFormatError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated/corrupt data surfaces as many types
            raise DataFormatError(f"{path}: cannot read '{field_}' ({type(e).__name__}: "
                                  f"{' '.join(str(e).split())})") from None
    source = f"{path}:{name}"
    try:
        if kind == "continuous":
            return _continuous_from_h5(name, attrs, data, provenance, source)
        return Recording(
            name=name,
            spike_times_flat=data["spike_times"],
            spike_offsets=data["spike_offsets"],
            shape=shape,
            window=window,
            stimuli=data.get("stimuli"),
            receptive_fields=data.get("receptive_fields"),
            provenance=provenance,
            source=source,
            trial_counts=data.get("trial_counts"),
            frame_interval=data.get("frame_interval"),
            stimulus_start=data.get("stimulus_start"),
            test_stimuli=data.get("test_stimuli"),
        )
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - any other failure on file content is a format error too
        raise DataFormatError(f"{source}: inconsistent recording ({type(e).__name__}: "
                              f"{' '.join(str(e).split())})") from None


def check_self_contained(path: str | os.PathLike) -> None:
    """Refuse an HDF5 file that reads data from other files, so that its SHA-256 covers all it holds.

    External links, virtual datasets and datasets with external raw storage are refused (a
    change in the other file would pass a provenance check of this one); soft links inside
    the file are fine. A file that is not HDF5 passes (its bytes are all it reads).

    Raises
    ------
    ValueError
        Naming the file and the first such object, e.g. ``rec.h5: object '/natural_images'
        is an external link to other.h5:/natural_images; ...``.
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        return
    with f:
        seen: set = set()
        stack = [f]
        while stack:
            group = stack.pop()
            for key in group:
                link = group.get(key, getlink=True)
                where = f"{group.name.rstrip('/')}/{key}"
                if isinstance(link, h5py.ExternalLink):
                    _refuse_external(path, where, f"an external link to {link.filename}:{link.path}")
                if isinstance(link, h5py.SoftLink):
                    continue  # a path inside this file: its target is visited as itself
                obj = group[key]
                addr = h5py.h5o.get_info(obj.id).addr
                if addr in seen:
                    continue
                seen.add(addr)
                if isinstance(obj, h5py.Group):
                    stack.append(obj)
                elif isinstance(obj, h5py.Dataset):
                    if obj.is_virtual:
                        _refuse_external(path, where, "a virtual dataset (its data lives in other files)")
                    if obj.external:
                        _refuse_external(path, where, f"a dataset stored in external file(s) "
                                                      f"{[e[0] for e in obj.external]}")


def _refuse_external(path: Path, where: str, what: str) -> None:
    raise ValueError(f"{path}: object {where!r} is {what}; neurocode reads only self-contained HDF5 files, "
                     "so that the recording's SHA-256 covers every byte a run reads (copy the linked data into the "
                     "file, e.g. with h5copy)")


def recording_key(data, recording) -> tuple[str, str | None]:
    """``(file, name)`` of the recording that fit settings ``data``/``recording`` select.

    ``data`` None is the bundled file, ``recording`` None the file's default recording
    ("natural_images", or its only one); an NWB file holds one recording (name None). Two
    settings that select the same recording get the same key.
    """
    path = (bundled_path() if data is None else Path(data).expanduser()).resolve()
    if path.suffix.lower() == ".nwb":
        return str(path), None
    name = recording
    if name is None:
        try:
            names = list_recordings(path)
        except Exception:  # noqa: BLE001 - an unreadable file fails where it is read, with its own message
            names = []
        name = names[0] if len(names) == 1 and DEFAULT_RECORDING not in names else DEFAULT_RECORDING
    return str(path), str(name)


def describe_recording(key: tuple[str, str | None]) -> str:
    """A :func:`recording_key` in words, for messages: ``recording 'NAME' of FILE``."""
    path, name = key
    return f"the recording of {path}" if name is None else f"recording {name!r} of {path}"
