"""The file formats a recording can be written in: a registry that the format modules fill.

The in-memory classes (:class:`~neurocode.data.Recording`,
:class:`~neurocode.data.ContinuousRecording`) know no file format: ``rec.save(...)`` and
``rec.to_nwb(...)`` look their writer up here by name. The format modules depend on the
classes, never the other way round: :mod:`neurocode.data.hdf5` registers ``"hdf5"`` and
:mod:`neurocode.data.nwb` registers ``"nwb"`` when they are imported, and the package
``neurocode.data`` imports both, so both are registered before any recording exists.

A new format is a module that registers its writer (``register_writer("zarr", write_zarr)``)
and is imported by ``neurocode/data/__init__.py``.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["register_writer", "writer", "formats"]

_WRITERS: dict[str, Callable] = {}


def register_writer(name: str, write: Callable) -> None:
    """Make ``write(recording, path, ...)`` the writer of format ``name`` (a later registration replaces it)."""
    _WRITERS[name] = write


def writer(name: str) -> Callable:
    """The writer registered for format ``name``.

    Raises
    ------
    LookupError
        If no module registered that format (the message lists those registered).
    """
    try:
        return _WRITERS[name]
    except KeyError:
        raise LookupError(f"no writer for the file format {name!r} (registered: {formats()}); the module "
                          f"neurocode.data.{name} registers it when imported") from None


def formats() -> list[str]:
    """Names of the registered formats, sorted."""
    return sorted(_WRITERS)
