"""LearnableNoisyLIF (noise scale trained by NDL) and the count-valued output of the RF NSNN:
the checks every NDL neuron passes (rate = F within a binomial CI, gradient = noise density),
the sigma gradient against the exact derivative of the firing probability, and sigma > 0
under training."""

from __future__ import annotations

import math

import pytest
import torch

from neurocode.neurons import LearnableNoisyLIF, NoisyLIF
from neurocode.neurons.counter_rng import SeededGaussian, draw_seeds
from neurocode.noise import Gaussian

DT = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_firing_probability_is_the_cdf_of_each_neurons_sigma():
    """T = 1, constant ubar: neuron k fires with Phi((ubar - v_th) / sigma_k) within a binomial CI."""
    n = 20_000
    sigmas = torch.tensor([0.05, 0.2, 0.5, 1.0], dtype=DT)
    neuron = LearnableNoisyLIF(4, 0.2).double()
    with torch.no_grad():
        neuron.log_sigma.copy_(sigmas.log())
    for ubar in (0.7, 0.95, 1.0, 1.15):
        spikes = neuron(torch.full((1, n, 4), ubar, dtype=DT), generator=gen(0))
        assert set(spikes.unique().tolist()) <= {0.0, 1.0}
        p_hat = spikes[0].mean(0)
        p = torch.special.ndtr((ubar - 1.0) / sigmas)
        tol = 4 * torch.sqrt(p * (1 - p) / n) + 1.0 / n
        assert torch.all((p_hat - p).abs() <= tol), (ubar, p_hat, p)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_firing_probability_per_step_given_ubar(reset):
    """T > 1 with resets: given the realised ubar, every step fires with Phi((ubar - v_th) / sigma)."""
    T, n = 6, 20_000
    neuron = LearnableNoisyLIF(None, 0.3, reset=reset).double()
    spikes, ubar = neuron(torch.full((T, n), 0.9, dtype=DT), generator=gen(1), return_potential=True)
    p = neuron.firing_probability(ubar).detach()
    resid = (spikes - p).sum().item()
    assert abs(resid) <= 4 * math.sqrt((p * (1 - p)).sum().item()) + 1


def test_ndl_gradients_T1_are_the_density_and_the_sigma_derivative():
    """d o / d ubar = f_sigma(ubar - v_th); d o / d log sigma = d Phi(d / sigma) / d log sigma."""
    sigmas = torch.tensor([0.1, 0.2, 0.4], dtype=DT)
    neuron = LearnableNoisyLIF(3, 0.2).double()
    with torch.no_grad():
        neuron.log_sigma.copy_(sigmas.log())
    x = (1 + 0.3 * torch.randn(1, 64, 3, generator=gen(2), dtype=DT)).requires_grad_()
    up = torch.randn(1, 64, 3, generator=gen(3), dtype=DT)
    neuron(x, generator=gen(4)).backward(up)
    d = x.detach() - 1.0
    density = torch.stack([Gaussian(float(s)).pdf(d[..., k]) for k, s in enumerate(sigmas)], -1)
    torch.testing.assert_close(x.grad, up * density, rtol=1e-12, atol=0)
    # the exact derivative of the expected spike Phi(d / sigma) with respect to log sigma
    log_sigma = sigmas.log().requires_grad_()
    (up * torch.special.ndtr(d / log_sigma.exp())).sum().backward()
    torch.testing.assert_close(neuron.log_sigma.grad, log_sigma.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_same_stream_and_spikes_as_noisylif_at_equal_sigma(reset):
    """Started at sigma = 0.25 (exact in binary) it draws NoisyLIF's numbers: the same spikes."""
    x = 0.6 + 0.6 * torch.rand(30, 16, 49, generator=gen(5))
    ref = NoisyLIF(Gaussian(0.25), reset=reset)(x, generator=gen(6))
    mine = LearnableNoisyLIF(49, 0.25, reset=reset)(x, generator=gen(6))
    assert torch.equal(ref, mine)
    assert not torch.equal(ref, NoisyLIF(Gaussian(0.25), reset="subtract" if reset == "zero" else "zero")(
        x, generator=gen(6)))


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_reset_recurrence_gradient_matches_noisylif(reset):
    """With the sigma fixed, the input gradient through resets is NoisyLIF's (the same NDL recurrence)."""
    x = (0.7 + 0.5 * torch.rand(7, 32, 3, generator=gen(8), dtype=DT)).requires_grad_()
    up = torch.randn(7, 32, 3, generator=gen(9), dtype=DT)
    NoisyLIF(Gaussian(0.25), tau=0.5, reset=reset)(x, generator=gen(10)).backward(up)
    ref = x.grad.clone()
    x.grad = None
    neuron = LearnableNoisyLIF(3, 0.25, tau=0.5, reset=reset).double()
    with torch.no_grad():
        neuron.log_sigma.fill_(math.log(0.25))  # float64's log, not float32's
    neuron(x, generator=gen(10)).backward(up)
    torch.testing.assert_close(x.grad, ref, rtol=1e-10, atol=1e-12)


def test_sigma_learns_towards_the_target_variability_and_stays_positive():
    """Trained to match a spike probability that only a smaller sigma gives (at fixed ubar), sigma
    decreases; pushed towards determinism hard (lr 1, 300 steps) it stays > 0 and finite."""
    ubar = torch.full((1, 4096, 1), 1.1)
    target = float(torch.special.ndtr(torch.tensor(0.1 / 0.05)))  # Phi(d / 0.05) at d = 0.1
    neuron = LearnableNoisyLIF(1, 0.3)
    opt = torch.optim.Adam(neuron.parameters(), lr=0.05)
    for step in range(200):
        p = neuron(ubar, generator=gen(100 + step)).mean()
        loss = (p - target) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert 0.0 < float(neuron.sigma) < 0.1, float(neuron.sigma)
    hard = LearnableNoisyLIF(1, 0.3)
    opt = torch.optim.SGD(hard.parameters(), lr=1.0)
    for step in range(300):
        loss = -hard(ubar, generator=gen(500 + step)).mean()  # always fire: sigma -> 0 is best
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert bool(torch.isfinite(hard.log_sigma).all()) and float(hard.sigma) > 0


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_without_gradient_is_the_differentiable_sequence_bit_for_bit(reset, dtype):
    """Prediction and calibration take the fused path (thresholds formed once); training the Python
    loop: the two give the same spikes, potentials and last state, NaN propagated the same way."""
    n = LearnableNoisyLIF(7, sigma=0.3, reset=reset).to(dtype)
    with torch.no_grad():
        n.log_sigma.copy_(torch.linspace(-2.0, 0.0, 7))
    x = (torch.randn(40, 16, 7, generator=gen(1)) * 0.6 + 0.4).to(dtype)
    x[5, 3, 2] = math.nan
    u0 = torch.randn(16, 7, generator=gen(2)).to(dtype)
    trained = n(x.clone().requires_grad_(True), u0, generator=gen(3), return_potential=True, return_state=True)
    with torch.no_grad():
        predicted = n(x, u0, generator=gen(3), return_potential=True, return_state=True)
    assert torch.isnan(predicted[0]).any() and 0 < float(predicted[0].nan_to_num(0).mean()) < 1
    for a, b in zip(trained, predicted):
        assert torch.equal(a.detach().nan_to_num(-7.0), b.nan_to_num(-7.0))


def test_given_noise_is_the_noise_the_generator_would_draw():
    n = LearnableNoisyLIF(5, sigma=0.4)
    x = torch.randn(12, 8, 5, generator=gen(4)) + 0.5
    z = n.draw_noise(x, gen(6))
    assert z.shape == x.shape and abs(float(z.mean())) < 4 / math.sqrt(z.numel())
    assert torch.equal(n(x, noise=z), n(x, generator=gen(6)))
    assert not torch.equal(n(x, noise=z), n(x, noise=-z))
    with pytest.raises(ValueError, match="noise shape"):
        n(x, noise=z[:-1])


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="sigma"):
        LearnableNoisyLIF(3, 0.0)
    with pytest.raises(ValueError, match="n_neurons"):
        LearnableNoisyLIF(0, 0.2)
    with pytest.raises(ValueError, match="last dimension"):
        LearnableNoisyLIF(3, 0.2)(torch.zeros(2, 4, 5))


# ----------------------------------------------------------------------------------- the RF NSNN
def _rf_model(**rf):
    from neurocode.data.receptive_fields import ReceptiveFields
    from neurocode.models import RetinaModel, RFConfig, rf_model_spec

    n = 3
    rfs = ReceptiveFields(centres=torch.tensor([[20.0, 20.0], [32.0, 40.0], [44.0, 30.0]]).numpy(),
                          covariances=(torch.eye(2) * 16.0).expand(n, 2, 2).numpy(), image_shape=(64, 64),
                          source="fallback", method="test placement")
    torch.manual_seed(0)
    return RetinaModel(rf_model_spec(RFConfig(n_cells=n, n_steps=10, **rf), "spiking", "noisy_lif"), rfs,
                       generator=gen(11))


def test_count_output_emits_up_to_substeps_spikes_and_its_probability_is_the_expected_count():
    """output_substeps = 3: counts in {0..3} per bin; the Rao-Blackwellised rate (the sum of the
    substeps' firing probabilities) is the expected count: pooled residual within its CI."""
    model = _rf_model(output_substeps=3, output_neuron={"learnable": "neuron"})
    with torch.no_grad():
        model.front_end.time_bias.fill_(0.9)  # high drive: counts above 1 must occur
    images = torch.randn(4, 1, 64, 64, generator=gen(12))
    with torch.no_grad():
        spikes, prob = model(images, n_trials=200, return_probability=True)
    assert spikes.shape == prob.shape == (10, 200, 4, 3)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0} and spikes.max() >= 2
    assert bool((prob >= 0).all() and (prob <= 3).all())
    resid = float((spikes - prob).sum())
    # each substep is a Bernoulli given its potential: the variance is at most n_values * 3 / 4
    assert abs(resid) <= 4 * math.sqrt(spikes.numel() * 3 * 0.25)


def test_learnt_sigma_receives_the_loss_gradient_in_a_model():
    model = _rf_model(output_neuron={"learnable": "neuron"})
    sigma = model.neurons[-1].log_sigma
    assert sigma.shape == (3,) and torch.allclose(sigma.exp(), torch.full((3,), 0.2))
    with torch.no_grad():
        model.front_end.time_bias.fill_(0.9)
    images = torch.randn(2, 1, 64, 64, generator=gen(13))
    _, prob = model(images, n_trials=4, return_probability=True)
    prob.sum().backward()
    assert sigma.grad is not None and bool(torch.isfinite(sigma.grad).all()) and float(sigma.grad.abs().sum()) > 0


def test_deterministic_core_and_core_norm():
    from neurocode.neurons import LIF

    model = _rf_model(core_neuron={"family": "lif"}, core_norm=True)
    assert [type(n).__name__ for n in model.neurons] == ["LIF", "LIF", "NoisyLIF"]
    assert isinstance(model.neurons[0], LIF) and model.generator is model.neurons[2].generator
    assert isinstance(model.front_end.norm, torch.nn.BatchNorm2d) and model.core.layer_bias(1) is model.core.norm.bias
    spikes = model(torch.randn(2, 1, 64, 64, generator=gen(14)), n_trials=3)
    assert spikes.shape == (10, 3, 2, 3)


def test_readout_synapse_filters_the_core_readout():
    """readout synapse a: y(t) = a y(t-1) + (1 - a) r(t) of the unfiltered readout r."""
    plain, filtered = _rf_model(), _rf_model(readout={"synapse": 0.6})
    filtered.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for p_plain, p_filtered in zip(plain.readout.parameters(), filtered.readout.parameters()):
            p_plain.normal_(generator=gen(15))
            p_filtered.copy_(p_plain)
    x = (torch.rand(10, 2 * 3, 16, 32, 32, generator=gen(16)) < 0.1).float()
    r = plain.readout.core_current(x, 2, 3)
    y = filtered.readout.core_current(x, 2, 3)
    expect, prev = [], torch.zeros_like(r[0])
    for t in range(10):
        prev = 0.6 * prev + 0.4 * r[t]
        expect.append(prev)
    torch.testing.assert_close(y, torch.stack(expect))


@pytest.mark.parametrize("field, value", [("readout", {"synapse": 1.0}), ("readout", {"synapse": -0.1}),
                                          ("readout", {"synaps": 0.5}),
                                          ("core_neuron", {"sigma": 0.0}),
                                          ("core_neuron", {"sigma_scale": 0.3}),
                                          ("output_neuron", {"noise": "logistic", "learnable": "neuron"})])
def test_rf_config_rejects_bad_noise_and_synapse_settings(field, value):
    from neurocode.models.rf import RFConfig

    with pytest.raises(ValueError, match=field):
        RFConfig(**{field: value})


def test_core_neuron_sigma_sets_the_core_layers_only():
    model = _rf_model(core_neuron={"sigma": 0.4})
    assert [n.noise.sigma for n in model.neurons] == [0.4, 0.4, 0.2]


def _straight_through_reference(neuron, x, u0, generator, detach_reset, reset="zero"):
    """The neuron as an autograd graph per step: the sampled spike forward, the gradient of the
    expected spike Phi((ubar - v_th) / sigma) backward (what NDL prescribes for ubar and sigma);
    the reset to 0 or by subtraction of v_th."""
    z = SeededGaussian(draw_seeds(x.shape[0], generator), 0.0, 1.0).materialize(x.shape, x.dtype, x.device)
    sigma, u, spikes, ubars = neuron.log_sigma.exp(), u0, [], []
    for t in range(x.shape[0]):
        ubar = x[t] + neuron.tau * u
        p = torch.special.ndtr((ubar - neuron.v_th) / sigma)
        o = (ubar >= neuron.v_th + sigma.detach() * z[t]).to(x.dtype) + (p - p.detach())
        fired = o.detach() if detach_reset else o
        u = ubar - neuron.v_th * fired if reset == "subtract" else ubar * (1 - fired)
        spikes.append(o)
        ubars.append(ubar)
    return torch.stack(spikes), torch.stack(ubars), u


@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_sequence_gradients_through_time_match_the_per_step_graph(detach_reset, reset):
    """The hand-written backward through time (resets, potentials, the last state, the start state)
    equals autograd over the per-step graph, for the inputs, the start state and each sigma."""
    T, B, N = 9, 40, 4
    x = (0.6 + 0.5 * torch.rand(T, B, N, generator=gen(20), dtype=DT)).requires_grad_()
    u0 = (0.3 * torch.rand(B, N, generator=gen(21), dtype=DT)).requires_grad_()
    ups = [torch.randn(*shape, generator=gen(22 + i), dtype=DT) for i, shape in enumerate([(T, B, N), (T, B, N), (B, N)])]
    grads = []
    for run in ("fused", "reference"):
        neuron = LearnableNoisyLIF(N, 0.3, tau=0.6, detach_reset=detach_reset, reset=reset).double()
        with torch.no_grad():
            neuron.log_sigma.copy_(torch.tensor([0.1, 0.2, 0.3, 0.5], dtype=DT).log())
        if run == "fused":
            outs = neuron(x, u0, generator=gen(30), return_potential=True, return_state=True)
        else:
            outs = _straight_through_reference(neuron, x, u0, gen(30), detach_reset, reset)
        sum((o * up).sum() for o, up in zip(outs, ups)).backward()
        grads.append((outs[0].detach(), x.grad.clone(), u0.grad.clone(), neuron.log_sigma.grad.clone()))
        x.grad = u0.grad = None
    (s1, *g1), (s2, *g2) = grads
    assert torch.equal(s1, s2) and 0 < s1.mean() < 1
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
