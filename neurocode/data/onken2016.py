"""Loader for the original Dryad layout of Onken et al. (2016), doi:10.5061/dryad.4ch10.

Package layout (see ``datasets/README.md``)::

    NeuralData/Spikes/<Name>.mat           variable ``Spikes``: int32 ms after stimulus onset
    NeuralData/ReceptiveFields/<Name>.mat  variable ``ReceptiveFields``: (1, n_cells) of (2, n)
    Stimuli/NaturalImages/imageNNN.raw     uint8 frames, no header, column-major

Spike files come in three shapes:

* flashed stimuli (``NaturalImages*``, ``Gratings*``): ``Spikes`` is ``(n_stimuli, 1)`` of
  ``(n_cells, n_trials)`` arrays of spike-time vectors;
* movies (``Movie*Exp*``): ``Spikes`` is ``(n_cells, n_trials)``; one "stimulus";
* shifted images (``Shifts*``): ``(n_shifts, n_images)`` of ``(n_cells, n_trials)``,
  flattened to ``n_shifts * n_images`` stimuli in C order (``s = shift * n_images + image``).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from neurocode._io import sha256_file
from neurocode.data.errors import DataFormatError
from neurocode.data.recording import Recording

__all__ = ["load_onken2016", "read_raw_frame", "sha256_file", "CITATION", "DATA_DOI", "LICENCE"]

DATA_DOI = "10.5061/dryad.4ch10"
PAPER_DOI = "10.1371/journal.pcbi.1005189"
LICENCE = "CC0 1.0"
CITATION = (
    "Onken A, Liu JK, Karunasekara PPCR, Delis I, Gollisch T, Panzeri S (2016). Using Matrix and "
    "Tensor Factorizations for the Single-Trial Analysis of Population Spike Trains. PLoS Comput "
    "Biol 12(11): e1005189. doi:10.1371/journal.pcbi.1005189. Data: Dryad doi:10.5061/dryad.4ch10 (CC0)."
)

#: Response window of the flashed stimuli (s): spikes are 1..300 ms after the flash.
FLASH_WINDOW = (0.0, 0.3)
#: Non-integer movie spike times all below this value are taken for seconds (see ``_check_unit``).
MOVIE_MIN_S = 60.0


def _kind(path: Path, spikes: np.ndarray) -> str:
    stem = path.stem
    if stem.startswith(("NaturalImages", "Gratings")):
        return "flashed"
    if stem.startswith("Movie"):
        return "movie"
    if stem.startswith("Shifts"):
        return "shifts"
    # Unknown name: decide from the structure (object entries hold per-stimulus arrays).
    if spikes.dtype == object and spikes.size and isinstance(spikes.flat[0], np.ndarray) and spikes.flat[0].dtype == object:
        return "flashed" if spikes.ndim == 2 and spikes.shape[1] == 1 else "shifts"
    return "movie"


def _loadmat(path: Path, variable: str) -> np.ndarray:
    """``variable`` of a MATLAB 5/7 file, after checking the file's structure (:func:`_check_mat5`)."""
    import io

    import scipy.io

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    names = _check_mat5(raw, path, variable)
    if variable not in names:
        found = sorted(k for k in names if not k.startswith("__"))
        raise DataFormatError(f"{path}: variable {variable!r} not found (found: {found})")
    try:
        mat = scipy.io.loadmat(io.BytesIO(raw), variable_names=[variable])
    except NotImplementedError as e:  # MATLAB v7.3 files are HDF5
        raise DataFormatError(f"{path}: unsupported MATLAB file version ({e})") from None
    except Exception as e:  # noqa: BLE001 - scipy raises many types on truncated/corrupt files
        raise DataFormatError(f"{path}: cannot read MATLAB file ({type(e).__name__}: {e})") from None
    if variable not in mat or isinstance(mat[variable], str):  # scipy puts "Read error: ..." strings
        raise DataFormatError(f"{path}: cannot read variable {variable!r} ({mat.get(variable)})")
    return mat[variable]


# ---------------------------------------------------------------------- MAT 5 structure check
# scipy.io.loadmat is not hardened against damaged files (its docstring says so): a flipped
# byte can make it read past a buffer and crash the process (e.g. a numeric array flagged
# complex without an imaginary part). The check below walks the file's element tree first
# and accepts only a well-formed one: every size consistent with its parent, numeric data
# of exactly prod(dims) items, cell arrays of exactly prod(dims) matrices.
_MI_ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8}  # miINT8 .. miUINT64
_MI_TEXT = {1: 1, 2: 1, 4: 2, 16: 1, 17: 2, 18: 4}  # char data: int8, uint8, uint16, utf8/16/32
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MX_CELL, _MX_CHAR = 1, 4
_MAX_DEPTH = 16


class _Mat5:
    def __init__(self, path: Path, endian: str):
        import struct

        self.path = path
        self.u32 = struct.Struct(endian + "I")
        self.two = struct.Struct(endian + "II").unpack_from
        self.i32 = endian + "i"
        self.struct = struct
        self._dims: dict[int, Any] = {}

    def dims(self, n: int):
        """Unpacker of ``n`` int32 dimensions."""
        if n not in self._dims:
            self._dims[n] = self.struct.Struct(f"{self.i32[0]}{n}i").unpack_from
        return self._dims[n]

    def bad(self, what: str) -> DataFormatError:
        return DataFormatError(f"{self.path}: cannot read MATLAB file (damaged MATLAB 5/7 structure: {what})")

    def tag(self, buf, pos: int, end: int) -> tuple[int, int, int, int]:
        """(type, n_bytes, data start, next element) of the element at ``pos`` (inside ``[pos, end)``)."""
        start = pos + 8
        if start > end:
            raise self.bad(f"element header at byte {pos} runs past its container")
        first, nbytes = self.two(buf, pos)
        if first >> 16:  # small data element: type and size in one word, data in the next 4 bytes
            if first >> 16 > 4:
                raise self.bad(f"small element at byte {pos} claims {first >> 16} bytes")
            return first & 0xFFFF, first >> 16, pos + 4, start
        stop = start + nbytes
        if stop > end:
            raise self.bad(f"element at byte {pos} claims {nbytes} bytes, {end - start} are left")
        stop += (-nbytes) % 8
        return first, nbytes, start, stop if stop < end else end

    def matrix(self, buf, pos: int, end: int, deep: bool, depth: int = 0) -> str:
        """Check the miMATRIX content ``buf[pos:end]``; return its name."""
        if pos == end:
            return ""  # an empty matrix (e.g. an empty cell entry)
        if depth > _MAX_DEPTH:
            raise self.bad("cell arrays nested too deeply")
        mtype, nbytes, start, pos = self.tag(buf, pos, end)
        if mtype != 6 or nbytes != 8:
            raise self.bad("array flags missing")
        flags = self.u32.unpack_from(buf, start)[0]
        cls, complex_ = flags & 0xFF, bool(flags & 0x800)
        mtype, nbytes, start, pos = self.tag(buf, pos, end)
        if mtype not in (5, 6) or nbytes % 4 or nbytes < 8:
            raise self.bad("array dimensions missing")
        dims = self.dims(nbytes // 4)(buf, start)
        if min(dims) < 0:
            raise self.bad(f"negative array dimension {dims}")
        mtype, nbytes, start, pos = self.tag(buf, pos, end)
        if mtype not in (1, 16):
            raise self.bad("array name missing")
        name = bytes(buf[start:start + nbytes]).decode("latin1") if depth == 0 else ""
        if not deep:
            return name
        n = 1
        for d in dims:
            n *= d
        if 6 <= cls <= 15:  # numeric: the real part, and the imaginary part of a complex array
            for part in range(1 + complex_):
                mtype, nbytes, start, pos = self.tag(buf, pos, end)
                size = _MI_ITEMSIZE.get(mtype)
                if size is None or nbytes != n * size:
                    raise self.bad(f"{('real', 'imaginary')[part]} part of a {list(dims)} array holds {nbytes} "
                                   f"bytes of type {mtype}")
        elif cls == _MX_CELL and not complex_:
            for _ in range(n):
                mtype, nbytes, start, pos = self.tag(buf, pos, end)
                if mtype != _MI_MATRIX:
                    raise self.bad(f"cell array entry of type {mtype}, expected a matrix")
                self.matrix(buf, start, start + nbytes, True, depth + 1)
        elif cls == _MX_CHAR and not complex_:
            mtype, nbytes, start, pos = self.tag(buf, pos, end)
            size = _MI_TEXT.get(mtype)
            if size is None or (mtype in (1, 2, 4) and nbytes != n * size):
                raise self.bad(f"character data of type {mtype} does not fit a {list(dims)} array")
        else:
            raise self.bad(f"array class {cls}{' (complex)' if complex_ else ''} is not numeric, cell or char")
        if end - pos >= 8:
            raise self.bad(f"{end - pos} unexpected bytes after array {name!r}")
        return name


def _check_mat5(raw: bytes, path: Path, variable: str) -> list[str]:
    """Names of the file's variables; DataFormatError unless the file (up to ``variable``) is well formed.

    ``variable`` is checked element by element; the variables before it only as far as
    scipy reads them when it skips them (the matrix header).
    """
    import zlib

    if len(raw) >= 128 and raw[124:126] in (b"\x00\x02", b"\x02\x00"):
        raise DataFormatError(f"{path}: unsupported MATLAB file version (7.3, HDF5-based): save it with "
                              "-v7 or -v6")
    if len(raw) < 128 or raw[126:128] not in (b"IM", b"MI") or 0 in raw[:4]:
        raise DataFormatError(f"{path}: cannot read MATLAB file (not a MATLAB 5/7 file: bad header)")
    reader = _Mat5(path, "<" if raw[126:128] == b"IM" else ">")
    if reader.struct.unpack_from(reader.i32[0] + "H", raw, 124)[0] != 0x0100:
        raise DataFormatError(f"{path}: cannot read MATLAB file (not a MATLAB 5/7 file: version field)")
    buf = memoryview(raw)
    names: list[str] = []
    pos, end = 128, len(raw)
    while pos < end:
        if end - pos < 8 and not any(raw[pos:end]):
            break  # trailing padding
        mtype, nbytes, start, _ = reader.tag(buf, pos, end)
        nxt = start + nbytes  # top-level elements are not padded beyond their size
        if nbytes == 0:
            raise reader.bad(f"empty variable at byte {pos}")
        if mtype == _MI_COMPRESSED:
            inflater = zlib.decompressobj()
            try:
                inner = inflater.decompress(buf[start:nxt]) + inflater.flush()
            except zlib.error as e:
                raise reader.bad(f"compressed variable at byte {pos}: {e}") from None
            if not inflater.eof:
                raise reader.bad(f"compressed variable at byte {pos} is cut short")
            body = memoryview(inner)
            mtype, nbytes, start, _ = reader.tag(body, 0, len(body))
        else:
            body = buf
        if mtype != _MI_MATRIX:
            raise reader.bad(f"variable at byte {pos} is of type {mtype}, expected a matrix")
        name = reader.matrix(body, start, start + nbytes, deep=False)
        names.append(name)
        if name == variable:
            reader.matrix(body, start, start + nbytes, deep=True)
            break
        pos = nxt
    return names


def _train(entry: Any, path: Path, where: str) -> np.ndarray:
    """One spike-time vector as stored (ms in the original package) -> float64, sorted."""
    a = np.asarray(entry)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataFormatError(f"{path}: variable 'Spikes' {where}: expected numeric spike times, got {a.dtype}")
    if a.size and a.size != max(a.shape):
        raise DataFormatError(f"{path}: variable 'Spikes' {where}: expected a vector, got shape {a.shape}")
    t = a.ravel().astype(np.float64)
    if np.isnan(t).any():
        raise DataFormatError(f"{path}: variable 'Spikes' {where}: NaN in spike times")
    return np.sort(t)  # sorted as the Recording contract requires


def _check_unit(trains: list[np.ndarray], path: Path, kind: str, window: tuple[float, float] | None,
                time_unit: str | None) -> str:
    """The unit of the stored spike times: ``time_unit``, or "ms" after checking they are not seconds.

    The package stores int32 milliseconds after stimulus onset (1..300 for a 0.3-s flash, up to
    18000 for an 18-s movie). Times in seconds read as ms would shrink every train 1000-fold
    without any other error, so non-integer spike times are refused when

    * they all fit inside the response window *in seconds* (``window``, else 0.3 s for
      flashed stimuli and 60 s for a movie: a movie lasts far longer than 60 ms), or
    * the median interval between successive spikes of a train is below 1 (read as ms: a
      cell firing above 1 kHz), over at least 20 intervals.
    """
    if time_unit in ("ms", "s"):
        return time_unit
    if time_unit is not None:
        raise ValueError(f"time_unit must be 'ms', 's' or None (ms, checked), got {time_unit!r}")
    times = np.concatenate(trains) if trains else np.zeros(0)
    if times.size == 0 or np.all(times == np.rint(times)):
        return "ms"
    if window is not None:
        limit, what = float(window[1]), f"fit the response window {tuple(window)} s in seconds"
    elif kind == "movie":
        limit, what = MOVIE_MIN_S, f"fit the first {MOVIE_MIN_S:g} s of a movie in seconds"
    else:
        limit, what = FLASH_WINDOW[1], f"fit the {FLASH_WINDOW[1]:g}-s response window of a flash in seconds"
    largest = float(np.abs(times).max())
    isi = np.concatenate([np.diff(t) for t in trains if t.size > 1] or [np.zeros(0)])
    median_isi = float(np.median(isi)) if isi.size >= 20 else None
    if largest <= limit or (median_isi is not None and median_isi < 1.0):
        why = what if largest <= limit else f"have a median inter-spike interval of {median_isi:g} (over 1 kHz as ms)"
        raise DataFormatError(
            f"{path}: variable 'Spikes' holds non-integer spike times (at most {largest:g}) that {why}: they look "
            f"like seconds, but the format stores milliseconds after stimulus onset (int32, e.g. 1..300 for a "
            f"0.3-s flash), and read as ms they would be 1000 times too short. Store the times in ms, or pass "
            f"time_unit='s' (time_unit='ms' if they are ms)"
        )
    return "ms"


def _cells_trials(block: Any, path: Path, where: str) -> np.ndarray:
    b = np.asarray(block)
    if b.dtype != object or b.ndim != 2:
        raise DataFormatError(
            f"{path}: variable 'Spikes' {where}: expected a (cells, trials) cell array, got {b.dtype} {b.shape}"
        )
    return b


def read_raw_frame(path: str | os.PathLike) -> np.ndarray:
    """Read one square ``.raw`` frame (uint8, no header, column-major).

    Returns
    -------
    np.ndarray
        uint8 ``[H, W]`` in display orientation: ``fromfile(...).reshape(n, n).T``, because
        the files were written by MATLAB in column-major order.

    Raises
    ------
    DataFormatError
        If the byte count is not a perfect square (truncated or foreign file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data = np.fromfile(path, dtype=np.uint8)
    n = math.isqrt(data.size)
    if data.size == 0 or n * n != data.size:
        raise DataFormatError(f"{path}: {data.size} bytes is not a square image")
    return data.reshape(n, n).T


def _read_frames(stimulus_dir: Path, n_stimuli: int) -> tuple[np.ndarray, list[Path]]:
    if not stimulus_dir.is_dir():
        raise FileNotFoundError(f"{stimulus_dir}: no such stimulus folder")
    files = sorted(stimulus_dir.glob("*.raw"))
    numbered: dict[int, Path] = {}
    for p in files:
        m = re.search(r"(\d+)\.raw$", p.name)
        if m is None:
            raise DataFormatError(f"{p}: frame file name has no stimulus number")
        numbered[int(m.group(1))] = p
    expected = list(range(1, n_stimuli + 1))
    if sorted(numbered) != expected:
        missing = sorted(set(expected) - set(numbered))
        extra = sorted(set(numbered) - set(expected))
        raise DataFormatError(
            f"{stimulus_dir}: expected frame files numbered 1..{n_stimuli} for {n_stimuli} stimuli; "
            f"missing {missing[:10]}, unexpected {extra[:10]}"
        )
    # imageNNN.raw is stimulus NNN-1 (verified pairing, see datasets/README.md).
    ordered = [numbered[i] for i in expected]
    frames = [read_raw_frame(p) for p in ordered]
    for p, fr in zip(ordered, frames):
        if fr.shape != frames[0].shape:
            raise DataFormatError(
                f"{p}: frame is {fr.shape[0]}x{fr.shape[1]} but {ordered[0].name} is "
                f"{frames[0].shape[0]}x{frames[0].shape[1]}"
            )
    return np.stack(frames), ordered


def _read_receptive_fields(path: Path, n_cells: int, spike_file: Path) -> np.ndarray:
    rf = _loadmat(path, "ReceptiveFields")
    if rf.dtype != object:
        raise DataFormatError(f"{path}: variable 'ReceptiveFields': expected a cell array, got {rf.dtype} {rf.shape}")
    entries = list(rf.ravel())
    if len(entries) != n_cells:
        raise DataFormatError(
            f"{path}: variable 'ReceptiveFields': {len(entries)} cells in receptive-field file {path} "
            f"but {n_cells} in spike file {spike_file}"
        )
    out = []
    for c, e in enumerate(entries):
        a = np.asarray(e)
        if a.dtype == object or a.ndim != 2 or a.shape[0] != 2:
            raise DataFormatError(f"{path}: variable 'ReceptiveFields' cell {c}: expected a (2, n) contour, got {a.shape}")
        if a.shape[1] != np.asarray(entries[0]).shape[1]:
            raise DataFormatError(
                f"{path}: variable 'ReceptiveFields' cell {c}: {a.shape[1]} contour points, cell 0 has "
                f"{np.asarray(entries[0]).shape[1]}"
            )
        a = a.astype(np.float64)
        if not np.isfinite(a).all():
            raise DataFormatError(f"{path}: variable 'ReceptiveFields' cell {c}: NaN or infinite contour point")
        out.append(a)
    return np.stack(out)


def _package_relpath(p: Path, root: Path | None) -> str:
    """Path inside the Dryad package (machine-independent, for provenance)."""
    if root is not None:
        try:
            return p.resolve().relative_to(root).as_posix()
        except ValueError:
            pass
    return p.name


def load_onken2016(
    spike_file: str | os.PathLike,
    stimulus_dir: str | os.PathLike | None = None,
    receptive_field_file: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    window: tuple[float, float] | None = None,
    time_unit: str | None = None,
) -> Recording:
    """Load one spike file of the Onken et al. (2016) package as a :class:`Recording`.

    Parameters
    ----------
    spike_file : path-like
        ``NeuralData/Spikes/<Name>.mat`` (variable ``Spikes``, int32 ms after onset).
    stimulus_dir : path-like, optional
        Folder of ``*NNN.raw`` frames, one per stimulus (``imageNNN.raw`` is stimulus
        NNN-1); size inferred from the file size (must be square, all equal). Only for
        flashed and shifted-image files; the movie frames are not supported because the
        movie presentation timing is undocumented and unrecoverable.
    receptive_field_file : path-like, optional
        ``NeuralData/ReceptiveFields/<Name>.mat`` (variable ``ReceptiveFields``); its cell
        count must match the spike file.
    name : str, optional
        Recording name; default the file stem.
    window : (float, float), optional
        Response window in s. Default: (0, 0.3) for flashed/shifted images; for movies
        (0, ceil(last spike in s)) — 18 s for the retina-2 movies (times 0..18000 ms).
    time_unit : {"ms", "s"}, optional
        Unit of the stored spike times. Default (None): milliseconds, as in the package,
        after checking that they are not seconds: non-integer times that all fit inside the
        response window in seconds (a movie without ``window``: inside 60 s), or whose median
        inter-spike interval is below 1 (over 1 kHz as ms), raise DataFormatError instead of
        being read 1000-fold too small.

    Returns
    -------
    Recording
        ``spike_times[s][c][k]`` in s (float64, sorted); ``stimuli`` uint8 ``[n, H, W]`` or
        None; ``receptive_fields`` float64 ``[n_cells, 2, n_points]`` or None.

    Raises
    ------
    FileNotFoundError
        A named file or folder is missing.
    DataFormatError
        Unreadable/corrupt file, missing variable, ragged cell/trial counts, NaN, spike times
        outside the window or apparently in seconds, non-square frames, cell-count mismatch;
        names file and field.
    """
    spike_file = Path(spike_file)
    spikes = _loadmat(spike_file, "Spikes")
    kind = _kind(spike_file, spikes)
    if spikes.dtype != object:
        raise DataFormatError(f"{spike_file}: variable 'Spikes': expected a cell array, got {spikes.dtype} {spikes.shape}")

    if kind == "movie":
        blocks = [_cells_trials(spikes, spike_file, "")]
        grid = (1,)
    elif kind == "flashed":
        if spikes.ndim != 2 or spikes.shape[1] != 1:
            raise DataFormatError(f"{spike_file}: variable 'Spikes': expected (n_stimuli, 1), got {spikes.shape}")
        blocks = [_cells_trials(spikes[i, 0], spike_file, f"stimulus {i}") for i in range(spikes.shape[0])]
        grid = (spikes.shape[0],)
    else:
        if spikes.ndim != 2:
            raise DataFormatError(f"{spike_file}: variable 'Spikes': expected (n_shifts, n_images), got {spikes.shape}")
        blocks = [
            _cells_trials(spikes[i, j], spike_file, f"shift {i}, image {j}")
            for i in range(spikes.shape[0])
            for j in range(spikes.shape[1])
        ]
        grid = tuple(spikes.shape)
    if not blocks:
        raise DataFormatError(f"{spike_file}: variable 'Spikes' is empty")
    n_c, n_t = blocks[0].shape
    if n_c == 0 or n_t == 0:
        raise DataFormatError(f"{spike_file}: variable 'Spikes': no cells or no trials (shape {blocks[0].shape})")

    trains: list[np.ndarray] = []
    for s, b in enumerate(blocks):
        if b.shape != (n_c, n_t):
            raise DataFormatError(
                f"{spike_file}: variable 'Spikes' stimulus {s}: {b.shape[0]} cells x {b.shape[1]} trials, "
                f"stimulus 0 has {n_c} x {n_t}"
            )
        for c in range(n_c):
            for k in range(n_t):
                trains.append(_train(b[c, k], spike_file, f"stimulus {s}, cell {c}, trial {k}"))
    lengths = np.fromiter((t.size for t in trains), dtype=np.int64, count=len(trains))
    times = np.concatenate(trains)
    unit = _check_unit(trains, spike_file, kind, window, time_unit)
    if unit == "ms":
        times = times / 1000.0  # ms -> s

    if window is None:
        if kind == "movie":
            last = float(times.max()) if times.size else 0.0
            window = (0.0, float(max(1, math.ceil(last - 1e-9))))
        else:
            window = FLASH_WINDOW

    # Provenance: package-relative paths and checksums only (no absolute paths, no dates),
    # so a rebuild on another machine gives identical content.
    root = spike_file.resolve().parents[2] if spike_file.resolve().parent.name == "Spikes" else None
    files = {_package_relpath(spike_file, root): sha256_file(spike_file)}

    stimuli = None
    if stimulus_dir is not None:
        if kind == "movie":
            raise ValueError(
                f"{spike_file}: movie frames are not supported - the movie presentation timing is "
                "undocumented and could not be recovered; load movie recordings without stimulus_dir"
            )
        stimuli, frame_files = _read_frames(Path(stimulus_dir), len(blocks))
        for p in frame_files:
            files[_package_relpath(p, root)] = sha256_file(p)

    rf = None
    if receptive_field_file is not None:
        rff = Path(receptive_field_file)
        rf = _read_receptive_fields(rff, n_c, spike_file)
        files[_package_relpath(rff, root)] = sha256_file(rff)

    provenance: dict[str, Any] = {
        "dataset": "Onken et al. 2016, salamander retina",
        "stimulus_kind": kind,
        "stimulus_grid_shape": list(grid),
        "source_files_sha256": dict(sorted(files.items())),
        "citation": CITATION,
        "licence": LICENCE,
        "doi": DATA_DOI,
        "paper_doi": PAPER_DOI,
        "spike_time_units_in_source": "ms (int32), converted to s as ms / 1000" if unit == "ms" else "s",
    }
    if kind == "flashed" and stimuli is not None:
        provenance["stimulus_pairing"] = "stimuli[i] is imageNNN.raw with NNN = i + 1"
    if kind == "movie":
        provenance["note"] = (
            "movie presentation timing undocumented and unrecoverable: use for stimulus-free analyses only"
        )
    return Recording(
        name=name if name is not None else spike_file.stem,
        spike_times_flat=times,
        spike_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        shape=(len(blocks), n_c, n_t),
        window=window,
        stimuli=stimuli,
        receptive_fields=rf,
        provenance=provenance,
        source=str(spike_file),
    )
