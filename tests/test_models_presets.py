"""Every preset's model keeps its size: a refactor of how models are put together must not change them.

The counts are those of the models as fitted before the models were composed from parts
(commit c7dbc1d): flashed images of the bundled recording (49 cells, T = 30 bins of 10 ms) and,
for the movie preset, clips of 10 frame lags for 20 cells (the white-noise experiment's shape).
"""

from __future__ import annotations

import pytest
import torch

from neurocode.fitting import MODELS, PRESETS, build_model, make_config
from neurocode.models import parameter_count

PARAMETERS = {
    # the NSNN's output noise scale is one parameter per cell
    ("quick", "nsnn"): 16269 + 49, ("quick", "dsnn"): 16269, ("quick", "cnn"): 17333, ("quick", "ln"): 10290,
    # the dispersion CNN: the CNN's network and one dispersion nu per cell
    ("quick", "cnn_cmp"): 17333 + 49, ("paper", "cnn_cmp"): 21255928 + 49, ("movie", "cnn_cmp"): 167292 + 20,
    ("paper", "nsnn"): 1929199, ("paper", "dsnn"): 2222464, ("paper", "cnn"): 21255928, ("paper", "ln"): 10290,
    ("movie", "nsnn"): 167220, ("movie", "dsnn"): 167220, ("movie", "cnn"): 167292, ("movie", "ln"): 162240,
}


def test_every_preset_and_model_is_pinned():
    assert set(PARAMETERS) == {(p, m) for p in PRESETS for m in MODELS}


@pytest.mark.parametrize("preset, model", sorted(PARAMETERS))
def test_preset_parameter_count(preset, model):
    config = make_config(model, preset)
    clips = preset == "movie"
    with torch.random.fork_rng(devices=[]):
        net = build_model(config, 20 if clips else 49, None, None, n_steps=30, n_lags=10 if clips else 0)
    assert parameter_count(net) == PARAMETERS[preset, model]
