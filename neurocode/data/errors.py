"""Exceptions raised by :mod:`neurocode.data`."""

from __future__ import annotations

__all__ = ["DataFormatError"]


class DataFormatError(ValueError):
    """A data file exists but its content is not what the format requires.

    The message always names the file and the field (variable, dataset, attribute or
    spike-train index) at fault, so that a bad input is never turned into a silently
    wrong recording. Subclasses :class:`ValueError` so generic handlers still catch it.
    """
