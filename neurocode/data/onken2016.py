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

import hashlib
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

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


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    import scipy.io

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        mat = scipy.io.loadmat(str(path))
    except NotImplementedError as e:  # MATLAB v7.3 files are HDF5
        raise DataFormatError(f"{path}: unsupported MATLAB file version ({e})") from None
    except Exception as e:  # noqa: BLE001 - scipy raises many types on truncated/corrupt files
        raise DataFormatError(f"{path}: cannot read MATLAB file ({type(e).__name__}: {e})") from None
    if variable not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataFormatError(f"{path}: variable {variable!r} not found (found: {found})")
    return mat[variable]


def _train(entry: Any, path: Path, where: str) -> np.ndarray:
    """One spike-time vector in ms -> float64 s, sorted."""
    a = np.asarray(entry)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise DataFormatError(f"{path}: variable 'Spikes' {where}: expected numeric spike times, got {a.dtype}")
    if a.size and a.size != max(a.shape):
        raise DataFormatError(f"{path}: variable 'Spikes' {where}: expected a vector, got shape {a.shape}")
    t = a.ravel().astype(np.float64)
    if np.isnan(t).any():
        raise DataFormatError(f"{path}: variable 'Spikes' {where}: NaN in spike times")
    return np.sort(t) / 1000.0  # ms -> s; sorted as the Recording contract requires


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
        outside the window, non-square frames, cell-count mismatch; names file and field.
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
        "spike_time_units_in_source": "ms (int32), converted to s as ms / 1000",
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
