"""Atomic file writes: a result or checkpoint is either the old file or the complete new one.

Every file neurocode writes goes through :func:`atomic_path` (directly, or through
:func:`write_bytes`, :func:`write_json`, :func:`write_text` and :func:`atomic_h5`):

* the content is written to a hidden temporary file next to the target and moved onto it
  with :func:`os.replace`, so a reader sees the old file or the complete new one;
* the temporary file is created with the permissions of the process umask (as ``open``
  would give the target), never owner-only;
* a failed write (disk full, read-only file system, no permission, file too large) raises
  :class:`WriteError`, an :class:`OSError` whose message is one line naming the target
  (``cannot write runs/x/metrics.json: No space left on device``); the temporary file is
  removed and the previous file is left untouched.

HDF5 files are built in memory (:func:`atomic_h5`, h5py's ``core`` driver without a backing
store) and written out as bytes: HDF5 itself then never writes to disk. When h5py writes a
file directly and the disk fills up, closing the file fails, the half-closed file id stays
in the library and the process crashes at exit (h5py issues #914 and #2160); written from
memory, a full disk is an ordinary ``OSError`` of our own ``write``.
"""

from __future__ import annotations

import errno as _errno
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["WriteError", "atomic_path", "atomic_h5", "write_bytes", "write_json", "write_text", "printable",
           "printable_lines", "file_lock", "FileBusy"]

#: Bytes per ``os.write`` call (the fault-injection tests replace :data:`_write`).
_CHUNK = 1 << 20
_write = os.write


class WriteError(OSError):
    """A file could not be written (disk full, read-only file system, no permission, ...).

    ``str(exc)`` is one line naming the file and the reason, e.g. ``cannot write
    runs/a/predictions.h5: No space left on device``; ``errno`` is the system error
    (None when unknown) and ``filename`` the file that could not be written.
    """

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


def _write_error(path: Path, exc: BaseException) -> WriteError:
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or (os.strerror(code) if code else None) or str(exc)
    reason = " ".join(str(reason).split()) or type(exc).__name__
    return WriteError(code, f"cannot write {path}: {reason}", str(path))


def _create_temp(path: Path) -> Path:
    """An empty hidden file next to ``path``, created with mode 0o666 minus the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask, as for any new file
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(_errno.EEXIST, "no free temporary file name", str(path.parent))


def _is_torch_write_failure(exc: BaseException) -> bool:
    """torch.save to a path reports a failed write as a RuntimeError of its zip writer."""
    text = str(exc)
    return type(exc) is RuntimeError and any(
        key in text for key in ("PytorchStreamWriter", "inline_container", "file write failed"))


def _probe_write(directory: Path) -> OSError | None:
    """The error a 1 MiB write into ``directory`` gives now (None if it succeeds)."""
    probe = None
    try:
        probe = _create_temp(directory / "write-probe")
        fd = os.open(probe, os.O_WRONLY)
        try:
            _write_all(fd, bytes(_CHUNK))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return exc
    finally:
        if probe is not None:
            try:
                probe.unlink()
            except OSError:
                pass
    return None


def _remove(tmp: Path) -> None:
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # e.g. the folder became read-only: nothing more we can do
        pass


@contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; move it onto ``path`` on success.

    Parameters
    ----------
    path : path-like
        The file to (re)write; its folder is created if needed.
    overwrite : bool
        False: refuse to replace an existing ``path`` (FileExistsError), also when the file
        appears while the body runs.

    Raises
    ------
    WriteError
        The folder, the temporary file or the move failed with an :class:`OSError` (disk
        full, read-only, permission, file too large, ...), or the body did; the message
        names ``path``. The temporary file is removed and ``path`` is left as it was.
    FileExistsError
        ``overwrite`` is False and ``path`` exists.

    The temporary file is removed whatever the body raises, so an interrupted write never
    leaves a truncated ``path`` (nor a stray temporary) behind.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise ValueError("cannot write to an empty path")
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(_errno.EEXIST, f"{path}: file exists (pass overwrite=True to replace it)", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(path)
    except FileExistsError as exc:
        raise _write_error(path, exc) from None
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        try:
            yield tmp
        except WriteError:
            raise
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno is None:
                raise
            raise _write_error(path, exc) from None
        except Exception as exc:
            if not _is_torch_write_failure(exc):
                raise
            # the probe runs while the partial temporary file still takes its space
            raise _write_error(path, _probe_write(path.parent) or exc) from None
        try:
            if overwrite:
                os.replace(tmp, path)
            else:
                _place_new(tmp, path)
        except FileExistsError:
            raise FileExistsError(_errno.EEXIST, f"{path}: file exists (pass overwrite=True to replace it)",
                                  str(path)) from None
        except OSError as exc:
            raise _write_error(path, exc) from None
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)


def _place_new(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (atomically where hard links work)."""
    try:
        os.link(tmp, path)  # fails with FileExistsError if path exists, atomically
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system
        if os.path.lexists(path):
            raise FileExistsError(_errno.EEXIST, "file exists", str(path)) from None
        os.replace(tmp, path)
        return
    _remove(tmp)


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view.nbytes:
        n = _write(fd, view[:_CHUNK])
        if n <= 0:
            raise OSError(_errno.EIO, "write returned no progress")
        view = view[n:]


def write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the move).

    Raises :class:`WriteError` naming ``path`` when the write fails (module docstring).
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_BINARY", 0))
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    return Path(path)


@contextmanager
def atomic_h5(path: str | os.PathLike, *, overwrite: bool = True, **kwargs: Any):
    """Yield a new in-memory :class:`h5py.File`; write it to ``path`` atomically on success.

    The file is built with h5py's ``core`` driver without a backing store, so HDF5 never
    writes to disk (module docstring); its image is then written with :func:`write_bytes`.
    ``kwargs`` go to :class:`h5py.File` (e.g. ``track_order``). Nothing is written if the
    body raises.

    Raises
    ------
    WriteError
        The file could not be written; the message names ``path``.
    """
    import h5py

    path = Path(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(_errno.EEXIST, f"{path}: file exists (pass overwrite=True to replace it)", str(path))
    # a unique name: HDF5 identifies open files by name, and none is created on disk
    f = h5py.File(f"neurocode-in-memory-{secrets.token_hex(8)}.h5", "w", driver="core", backing_store=False,
                  **kwargs)
    try:
        yield f
        f.flush()
        image = f.id.get_file_image()
    finally:
        f.close()
    write_bytes(path, image, overwrite=overwrite)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN written as null)."""
    text = json.dumps(_jsonable(obj), indent=2, sort_keys=False, allow_nan=False)
    return write_bytes(path, (text + "\n").encode())


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return write_bytes(path, text.encode())


def _jsonable(obj: Any) -> Any:
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1-MB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def printable(text: Any) -> str:
    """``text`` with control characters (terminal escapes, newlines) shown as escapes, not executed.

    Every string a file provides (a recording name, a cell id, an attribute) goes through this
    before it reaches a terminal: an ESC character is shown as the four characters ``\\x1b``.
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def printable_lines(text: Any) -> str:
    """:func:`printable` line by line: a multi-line report keeps its lines, loses its escapes."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


class FileBusy(WriteError):
    """Another process held a file's lock for longer than the wait allowed."""


@contextmanager
def file_lock(path: str | os.PathLike, timeout: float = 600.0) -> Iterator[Path]:
    """Hold the OS-level lock of ``path`` (the file ``.NAME.lock`` beside it) for the block.

    A read-modify-write of a shared file (a recording file that several ``data import`` add
    groups to) takes it, so the second writer waits and then reads the first one's result.

    Raises
    ------
    FileBusy
        The lock was not free within ``timeout`` seconds; the message names ``path``.
    """
    from filelock import FileLock, Timeout

    resolved = Path(path).resolve()
    lock = FileLock(resolved.parent / f".{resolved.name}.lock", timeout=timeout)
    try:
        resolved.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise FileBusy(_errno.EBUSY, f"{path}: another neurocode process has been writing this file for "
                                     f"{timeout:g} s; try again when it has finished", str(path)) from None
    except OSError as exc:  # a read-only or missing folder: the file could not be written either
        raise _write_error(Path(path), exc) from None
    try:
        yield resolved
    finally:
        lock.release()
