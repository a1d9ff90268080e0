"""Retina models composed of parts: the registries, the spec's errors, and weights of the model classes
the parts replaced (written by that code) loading into the composed models with the same response."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurocode.checkpoints import CheckpointError, load_weights, restore_training
from neurocode.data.receptive_fields import ReceptiveFields
from neurocode.fitting import FIT_CHECKPOINT
from neurocode.models import CNNConfig, ModelSpec, RetinaModel, RFConfig, SNNConfig, paper_cnn_spec, \
    paper_snn_spec, rf_model_spec
from neurocode.models.parts import outputs as output_parts

LEGACY = Path(__file__).parent / "data" / "legacy_retina_models.pt"
S, N, T, L = 16, 3, 6, 4
#: The tiny models of tests/data/legacy_retina_models.pt, written by RetinaLN / RetinaRFSNN / RetinaRFCNN /
#: ClipLN / ClipSNN / ClipCNN / RetinaSNN / RetinaCNN (commit 82ad49d) and a CountOutputModel of a
#: RetinaRFCNN with a CMP output (cnn_cmp, commit b46ba1c) with these settings, each with its
#: weights moved off their start, with its response to a fixed input (spiking: generator seed 5).
LEGACY_MODELS = {
    "flash_ln": (dict(), None, "rectified"),
    "flash_nsnn": (dict(core_norm=True, readout={"time_weights": True}), "spiking", "noisy_lif"),
    "flash_dsnn": (dict(noisy=False, readout_units=4), "spiking", "lif_population"),
    "flash_cnn": (dict(), "relu", "softplus_poisson"),
    "clips_ln": (dict(), None, "softplus"),
    "clips_nsnn": (dict(output_substeps=2), "spiking", "noisy_lif"),
    "clips_dsnn": (dict(noisy=False, readout_units=4), "spiking", "lif_population"),
    "clips_cnn": (dict(), "relu", "softplus_poisson"),
    "flash_cnn_cmp": (dict(), "relu", "cmp"),
    "paper_nsnn": (dict(hidden=(4,)), "spiking", None),
    "paper_dsnn": (dict(noisy=False, pool=2, hidden=(4, 4), readout_units=3, readout="mean"), "spiking", None),
    "paper_cnn": (dict(), "relu", None),
}


def _rfs():
    return ReceptiveFields(centres=np.array([[5.0, 6.0], [9.0, 10.0], [11.0, 4.0]]),
                           covariances=np.stack([np.eye(2) * 2.0] * N), image_shape=(S, S), source="stored",
                           method="test")


def _model(name: str) -> RetinaModel:
    options, core, output = LEGACY_MODELS[name]
    if name.startswith("paper"):
        shape = dict(input_size=S, channels=(2, 3), kernel_sizes=(5, 3), n_cells=N, n_steps=T)
        if core == "relu":
            return RetinaModel(paper_cnn_spec(CNNConfig(**shape)))
        config = SNNConfig(**shape, **options)
        return RetinaModel(paper_snn_spec(config), None, torch.Generator() if config.noisy else None)
    config = RFConfig(input_size=S, n_cells=N, n_steps=T, channels=(2, 3), kernel_sizes=(3, 3), **options)
    return RetinaModel(rf_model_spec(config, core, output, L if name.startswith("clips") else 0), _rfs(),
                       torch.Generator() if output == "noisy_lif" else None)


@pytest.mark.parametrize("name", sorted(LEGACY_MODELS))
def test_weights_of_the_replaced_model_classes_load_and_respond_as_they_did(name):
    legacy = torch.load(LEGACY, weights_only=True)
    old = legacy[name]["weights"]
    model = load_weights(_model(name), old, LEGACY).eval()
    assert not any(k.startswith("front_end.") for k in old)  # really the old layout
    x = legacy["inputs"]["clips" if name.startswith("clips") else "flash"]
    with torch.no_grad():
        if model.spiking:
            model.generator = torch.Generator().manual_seed(5) if model.generator is not None else None
            response = model(x, n_trials=3)
        else:
            response = model(x)
    assert torch.equal(response, legacy[name]["output"])
    # plain load_state_dict maps the old names too (the LN reference's cache file is read that way)
    fresh = _model(name)
    fresh.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_training_cannot_resume_from_a_checkpoint_of_the_replaced_classes():
    old = torch.load(LEGACY, weights_only=True)["flash_nsnn"]["weights"]
    model = _model("flash_nsnn")
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2)
    state = {"model": old, "best": None, "optimizer": {}, "scheduler": {}, "rng": {}, "history": [], "epoch": 1}
    with pytest.raises(CheckpointError, match=r"ckpt\.pt: written before the retina models were composed of parts"
                                              r".*training cannot resume.*refit with `neurocode fit"):
        restore_training("ckpt.pt", state, FIT_CHECKPOINT, model, optimizer, scheduler, {})


def test_a_new_output_is_one_class_and_its_registry_line(monkeypatch):
    """A toy exponential-rate output registered by name composes with the existing parts and trains."""

    class ExpRate(nn.Module):
        spiking = False
        reports_rates = True

        def __init__(self, n_cells, neuron=None, generator=None):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(n_cells))

        def forward(self, current):
            return torch.exp(self.gain * current)  # current [T, B, N]

    monkeypatch.setitem(output_parts.OUTPUTS, "exp_rate", ExpRate)
    config = RFConfig(input_size=S, n_cells=N, n_steps=T, channels=(2, 3), kernel_sizes=(3, 3))
    spec = dataclasses.replace(rf_model_spec(config, "relu", "softplus_poisson"), output="exp_rate")
    model = RetinaModel(spec, _rfs())
    with torch.no_grad():
        model.front_end.time_bias.fill_(0.5)
    images = torch.randn(4, 1, S, S, generator=torch.Generator().manual_seed(0))
    rates = model(images)
    assert rates.shape == (T, 4, N) and bool((rates > 0).all())
    rates.sum().backward()
    assert model.output.gain.grad is not None and float(model.output.gain.grad.abs().sum()) > 0


@pytest.mark.parametrize("change, message", [
    (dict(core="lstm"), r"ModelSpec.core must be one of \['relu', 'spiking'\], got 'lstm'"),
    (dict(output="poisson_glm"), "ModelSpec.output must be one of"),
    (dict(core_options={"norm": True, "dropout": 0.1}), "ModelSpec.core_options for 'relu': .*dropout"),
])
def test_a_bad_spec_names_the_part(change, message):
    config = RFConfig(input_size=S, n_cells=N, n_steps=T, channels=(2, 3), kernel_sizes=(3, 3))
    with pytest.raises(ValueError, match=message):
        RetinaModel(dataclasses.replace(rf_model_spec(config, "relu", "softplus_poisson"), **change), _rfs())


def test_mixed_parts_compose():
    """A ReLU core under a noisy LIF output and a spiking core under a softplus-Poisson output are specs, not classes."""
    config = RFConfig(input_size=S, n_cells=N, n_steps=T, channels=(2, 3), kernel_sizes=(3, 3))
    images = torch.randn(2, 1, S, S, generator=torch.Generator().manual_seed(0))
    relu_lif = RetinaModel(dataclasses.replace(rf_model_spec(config, "spiking", "noisy_lif"), core="relu",
                                               core_options={}), _rfs(), torch.Generator().manual_seed(1))
    spikes, probability = relu_lif.eval()(images, n_trials=5, return_probability=True)
    assert spikes.shape == probability.shape == (T, 5, 2, N) and set(spikes.unique().tolist()) <= {0.0, 1.0}
    spiking_rate = RetinaModel(dataclasses.replace(rf_model_spec(config, "spiking", "noisy_lif"),
                                                   output="softplus_poisson", output_options={}),
                               _rfs(), torch.Generator().manual_seed(1))
    assert spiking_rate(images).shape == (T, 2, N) and isinstance(spiking_rate.spec, ModelSpec)


def test_configs_written_with_the_ablation_fields_load_as_the_parts_options():
    """readout_time_weights / readout_synapse (RFConfig) and probability_loss / count_weight / cell_mmd_weight (FitConfig)
    became the readout's and the loss's own options; a config.json written before loads as them."""
    from neurocode.fitting import FitConfig, make_config

    stored = make_config("nsnn", "quick").to_dict()
    assert {"probability_loss", "count_weight"}.isdisjoint(stored)
    assert {"readout_time_weights", "readout_synapse"}.isdisjoint(stored["rf"])
    stored.pop("loss_options")
    stored["rf"].pop("readout")
    stored.update(probability_loss=True, count_weight=0.05, cell_mmd_weight=1.0)
    stored["rf"].update(readout_time_weights=True, readout_synapse=0.0)
    config = FitConfig.from_dict(stored)
    assert config == make_config("nsnn", "quick", loss_options={"probability": True, "count_weight": 0.05},
                                 rf={"readout": {"time_weights": True}})
    defaults = {**stored, "probability_loss": False, "count_weight": 0.0}
    cell = FitConfig.from_dict({**defaults, "loss": "mmd_linear+gaussian_cell", "cell_mmd_weight": 10.0})
    assert cell.loss_options == {"cell_mmd_weight": 10.0}
    assert FitConfig.from_dict(defaults).loss_options is None
    with pytest.raises(ValueError, match="loss_options must be a dict of 'probability'"):
        make_config("nsnn", "quick", loss_options={"probabilty": True})
    with pytest.raises(ValueError, match="'count_weight' applies to spiking models"):
        make_config("cnn", "quick", loss_options={"count_weight": 0.1})


def test_mixed_models_are_one_line_configs_that_fit(tmp_path):
    """``parts=`` in the fit's config swaps a family's part by name: a ReLU core under the NSNN's noisy
    LIF output, a noisy spiking core under the CNN's softplus-Poisson output; both fit and score."""
    from neurocode.fitting import make_config
    from neurocode.pipeline import fit, load_run

    tiny = dict(epochs=1, input_size=16, eval_trials=4, threads=1, progress=False)
    relu_lif = fit("nsnn", out=tmp_path / "a", parts={"core": "relu"}, model_trials=2, **tiny)
    model = load_run(relu_lif.run_dir)[1]
    assert type(model.core).__name__ == "ReLUCore" and model.output.spiking
    assert -1 <= relu_lif.metrics["rate_cc"] <= 1
    spiking_rate = fit("cnn", out=tmp_path / "b", parts={"core": "spiking"},
                       rf={"core_norm": True, "core_neuron": {"family": "noisy_lif"}}, **tiny)
    model = load_run(spiking_rate.run_dir)[1]
    assert model.core.spiking and not model.output.spiking
    # the core samples its noise: two forward passes of the same images differ
    images = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.equal(model(images), model(images))
    assert -1 <= spiking_rate.metrics["rate_cc"] <= 1
    # the family's own parts are untouched without parts=, and nonsense is named
    assert make_config("cnn").parts is None
    for bad, word in ((dict(parts={"core": "gru"}), "parts['core']"), (dict(parts={"readout": "rf"}), "keys"),
                      (dict(parts={"output": "softplus_poisson"}), "spikes")):
        with pytest.raises(ValueError, match=re.escape(word)):
            make_config("nsnn", **bad)
