"""One neuron spec and one factory: every spiking layer of a fit and of a classifier comes from them.

The acceptance test of the design: a new noise family is a class in a test file (as it would be
in noise.py) and a fit selects it through its public config, with nothing else touched.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurocode.fitting import build_model, make_config, prepare_data, train
from neurocode.neurons import LIF, LearnableNoisyLIF, NeuronSpec, NoisyLIF, make_neuron
from neurocode.noise import ERF, NOISE_FAMILIES, Gaussian, Logistic, NoiseModel, Sigmoid, check_noise_model

TINY = dict(epochs=1, input_size=16, eval_trials=4, model_trials=2, threads=1, val_every=1, val_trials=2)


class ToyLaplace(NoiseModel):
    """A noise family the package does not have: Laplace noise, registered by its family name."""

    family = "toy_laplace"
    surrogate_name = "exponential"
    draws = 0

    def __init__(self, scale):
        self.scale = float(scale)

    def cdf(self, x):
        z = x / self.scale
        return torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0)), 1 - 0.5 * torch.exp(-z.clamp(min=0)))

    def pdf(self, x):
        return torch.exp(-(x / self.scale).abs()) / (2 * self.scale)

    def icdf(self, p):
        return -self.scale * torch.sign(p - 0.5) * torch.log1p(-2 * (p - 0.5).abs())

    def variance(self):
        return 2 * self.scale ** 2

    def sample(self, shape, generator=None, **kwargs):
        type(self).draws += 1
        return super().sample(shape, generator, **kwargs)


def test_toy_noise_family_is_registered_and_consistent():
    assert NOISE_FAMILIES["toy_laplace"] is ToyLaplace
    check_noise_model(ToyLaplace(0.2))


def test_a_new_noise_family_fits_one_epoch_through_the_public_config(natural_recording):
    torch.set_num_threads(1)
    # the quick preset learns a Gaussian output noise scale per cell; the toy family's is fixed
    config = make_config("nsnn", "quick", **TINY, rf={"channels": (2, 3), "kernel_sizes": (3, 3),
                                                      "noise": "toy_laplace", "noise_sigma": 0.25,
                                                      "output_neuron": None})
    data = prepare_data(config, natural_recording)
    ToyLaplace.draws = 0
    model, history = train(config, data, progress=False)
    noises = [n.noise for n in model.neurons]
    assert all(isinstance(n, ToyLaplace) and n.scale == 0.25 for n in noises)
    # the fit sampled its spikes from the toy family and learnt from its density
    assert ToyLaplace.draws > 0
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 1 and math.isfinite(losses[0])
    fresh = build_model(config, data.n_cells, torch.Generator().manual_seed(0), data.rfs, n_steps=data.n_steps)
    moved = [name for name, p in model.named_parameters() if not torch.equal(p.cpu(), fresh.state_dict()[name])]
    assert moved, "one epoch with the toy noise changed no parameter"


def test_an_unknown_noise_family_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="RFConfig.noise must be one of"):
        make_config("nsnn", "quick", rf={"noise": "cauchy"})
    with pytest.raises(ValueError, match="NeuronSpec.noise"):
        NeuronSpec(noise="cauchy")


@pytest.mark.parametrize("spec, cls", [
    (NeuronSpec(), NoisyLIF),
    (NeuronSpec(family="lif"), LIF),
    (NeuronSpec(learnable="layer"), LearnableNoisyLIF),
    (NeuronSpec(learnable="neuron"), LearnableNoisyLIF),
])
def test_make_neuron_builds_the_family_the_spec_names(spec, cls):
    neuron = make_neuron(spec, torch.Generator().manual_seed(0), n_neurons=5)
    assert type(neuron) is cls
    assert neuron.tau == spec.tau and neuron.v_th == spec.v_th
    if spec.learnable == "neuron":
        assert neuron.log_sigma.shape == (5,)
    if spec.learnable == "layer":
        assert neuron.log_sigma.shape == ()


def test_make_neuron_passes_noise_scale_placement_and_surrogate():
    noisy = make_neuron(NeuronSpec(noise="logistic", sigma=0.3, placement="membrane"))
    assert isinstance(noisy.noise, Logistic) and noisy.noise.scale == 0.3 and noisy.placement == "membrane"
    gauss = make_neuron(NeuronSpec(sigma=0.4))
    assert isinstance(gauss.noise, Gaussian) and gauss.noise.sigma == 0.4
    assert make_neuron(NeuronSpec(family="lif", surrogate_width=0.5)).surrogate == ERF(0.5)
    assert make_neuron(NeuronSpec(family="lif", surrogate="sigmoid", surrogate_width=4.0)).surrogate == Sigmoid(4.0)


@pytest.mark.parametrize("spec", [NeuronSpec(reset="subtract"), NeuronSpec(family="lif", reset="subtract"),
                                  NeuronSpec(learnable="neuron", reset="subtract")], ids=["noisy", "lif", "learnable"])
def test_make_neuron_passes_the_reset(spec):
    neuron = make_neuron(spec, torch.Generator().manual_seed(0), n_neurons=5)
    assert neuron.reset == "subtract" and make_neuron(NeuronSpec(family=spec.family), n_neurons=5).reset == "zero"
    x = torch.full((4, 1, 5), 1.3)
    kw = {} if spec.family == "lif" else {"generator": torch.Generator().manual_seed(1)}
    s, ubar = neuron(x, return_potential=True, **kw)
    assert s.sum() > 0
    # the charge above the threshold carries to the next step
    torch.testing.assert_close(ubar[1:], x[1:] + spec.tau * (ubar[:-1] - spec.v_th * s[:-1]))


def test_an_unknown_reset_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="NeuronSpec.reset must be one of"):
        NeuronSpec(reset="soft")
    with pytest.raises(ValueError, match="RFConfig.output_neuron: NeuronSpec.reset"):
        make_config("nsnn", "quick", rf={"output_neuron": {"reset": "half"}})


def test_learnable_noise_other_than_gaussian_escape_is_refused():
    with pytest.raises(ValueError, match="learnable applies to Gaussian escape noise"):
        NeuronSpec(noise="logistic", learnable="layer")
    with pytest.raises(ValueError, match="n_neurons"):
        make_neuron(NeuronSpec(learnable="neuron"))


def test_a_dsnn_population_sits_at_the_noise_families_quantiles():
    """The DSNN's frozen-noise population: its units' offsets are the quantiles of the config's
    noise family, whichever family that is (the Gaussian's exactly as torch's Normal gives them)."""
    for noise, family in (("gaussian", Gaussian), ("logistic", Logistic)):
        config = make_config("dsnn", "quick", input_size=16, rf={"channels": (2, 3), "kernel_sizes": (3, 3),
                                                                 "noise": noise, "noise_sigma": 0.3})
        model = build_model(config, 3, None, None, n_steps=4)
        units = config.arch.readout_units
        offsets = model.output.unit_offsets.view(3, units)
        q = (torch.arange(units, dtype=torch.float64) + 0.5) / units
        np.testing.assert_allclose(offsets[1].numpy(), family(0.3).icdf(q).numpy(), rtol=0, atol=1e-6)
        assert torch.equal(offsets[0], offsets[2])
    normal = torch.distributions.Normal(0.0, 0.2).icdf((torch.arange(32, dtype=torch.float64) + 0.5) / 32).float()
    assert torch.equal(Gaussian(0.2).quantiles(32), normal)


def test_recognition_layers_use_the_same_factory():
    from neurocode.recognition.layers import NeuronSpec as Switch

    nsnn, dsnn = Switch("nsnn", noise_sigma=0.25).make(), Switch("dsnn", surrogate_width=0.7).make()
    assert isinstance(nsnn, NoisyLIF) and nsnn.noise.sigma == 0.25
    assert isinstance(dsnn, LIF) and dsnn.surrogate == ERF(0.7)
    assert Switch("nsnn").layer_neuron() == NeuronSpec(sigma=0.3)


def test_configs_written_before_the_parts_neuron_options_load_as_those_options():
    from neurocode.fitting import FitConfig
    from neurocode.models.rf import RFConfig

    old = {"core_noisy": False, "core_noise_sigma": 0.4, "learn_sigma": True, "learn_core_sigma": False}
    rf = RFConfig.from_dict(old)
    assert rf.core_neuron == {"family": "lif", "sigma": 0.4} and rf.output_neuron == {"learnable": "neuron"}
    defaults = RFConfig.from_dict({"core_noisy": True, "core_noise_sigma": None, "learn_sigma": False,
                                   "learn_core_sigma": True})
    assert defaults.core_neuron == {"learnable": "layer"} and defaults.output_neuron is None
    # a config of the quick preset before its output noise scale was learnt per cell
    plain = make_config("nsnn", "quick", rf={"output_neuron": None})
    stored = plain.to_dict()
    stored["rf"] = {k: v for k, v in stored["rf"].items() if k not in ("core_neuron", "output_neuron", "noise")}
    stored["rf"].update(core_noisy=True, core_noise_sigma=None, learn_sigma=False, learn_core_sigma=False)
    assert FitConfig.from_dict(stored) == plain


def test_a_parts_neuron_options_reach_only_that_part():
    config = make_config("nsnn", "quick", input_size=16, rf={"channels": (2, 3), "kernel_sizes": (3, 3),
                                                             "core_neuron": {"family": "lif", "surrogate_width": 0.5},
                                                             "output_neuron": {"noise": "logistic", "sigma": 0.3}})
    model = build_model(config, 3, torch.Generator().manual_seed(0), None, n_steps=4)
    core1, core2, out = model.neurons
    assert isinstance(core1, LIF) and core1.surrogate == ERF(0.5) and isinstance(core2, LIF)
    assert isinstance(out, NoisyLIF) and isinstance(out.noise, Logistic) and out.noise.scale == 0.3
    assert core1.reset == core2.reset == out.reset == "zero"
    subtract = make_config("nsnn", "quick", input_size=16, rf={"channels": (2, 3), "kernel_sizes": (3, 3),
                                                               "output_neuron": {"reset": "subtract"}})
    core1, core2, out = build_model(subtract, 3, torch.Generator().manual_seed(0), None, n_steps=4).neurons
    assert (core1.reset, core2.reset, out.reset) == ("zero", "zero", "subtract")
    with pytest.raises(ValueError, match="RFConfig.core_neuron: unknown neuron option"):
        make_config("nsnn", "quick", rf={"core_neuron": {"sigmaa": 0.3}})
