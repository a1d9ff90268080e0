"""The check of a config's per-part neuron options (fields of :class:`~neurocode.neurons.NeuronSpec`)."""

from __future__ import annotations

import dataclasses

from neurocode.neurons import NeuronSpec


def check_neuron_options(options: dict | None, name: str) -> None:
    """ValueError naming ``name`` unless ``options`` is None or valid :class:`NeuronSpec` fields."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise ValueError(f"{name} must be a dict of NeuronSpec fields or None, got {options!r}")
    known = {f.name for f in dataclasses.fields(NeuronSpec)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{name}: unknown neuron option(s) {unknown}; NeuronSpec has {sorted(known)}")
    try:
        NeuronSpec(**options)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
