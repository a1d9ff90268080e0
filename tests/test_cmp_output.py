"""The Conway-Maxwell-Poisson count output and the dispersion CNN (``cnn_cmp``) built on it."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch

from neurocode.models.outputs import OUTPUTS, CMPOutput, PoissonOutput, count_bound


def cmp_output(nu, max_count: int) -> CMPOutput:
    nu = torch.as_tensor(nu, dtype=torch.float64).reshape(-1)
    out = CMPOutput(len(nu), max_count).double()
    out.set_nu(nu)
    return out


def enumerated_moments(lam: float, nu: float, max_count: int) -> tuple[float, float, float]:
    """Mean, variance and fourth central moment of the truncated CMP, by the direct formula."""
    w = np.array([lam ** k / math.factorial(k) ** nu for k in range(max_count + 1)])
    p = w / w.sum()
    k = np.arange(max_count + 1)
    mean = float((p * k).sum())
    var = float((p * (k - mean) ** 2).sum())
    return mean, var, float((p * (k - mean) ** 4).sum())


def test_log_pmf_matches_the_formula_by_hand():
    # lam = 1.5, nu = 2, k = 0..4: P(k) = 1.5^k / (k!)^2 / Z with Z the sum of those five terms
    terms = [1.0, 1.5, 2.25 / 4, 3.375 / 36, 5.0625 / 576]
    z = sum(terms)
    out = cmp_output([2.0], 4)
    lam = torch.tensor([1.5], dtype=torch.float64)
    log_pmf = out.log_pmf(lam)[0]
    np.testing.assert_allclose(log_pmf.detach().numpy(), np.log(np.array(terms) / z), rtol=1e-12)
    for k in range(5):
        got = out.log_prob(lam, torch.tensor([float(k)], dtype=torch.float64))
        assert float(got.detach()) == pytest.approx(math.log(terms[k] / z), rel=1e-12)


def test_nu_one_is_the_poisson_likelihood():
    lam = torch.tensor([[0.05, 0.3, 1.0], [2.0, 2.6, 4.0]], dtype=torch.float64)
    counts = torch.tensor([[0.0, 1.0, 3.0], [2.0, 5.0, 1.0]], dtype=torch.float64)
    # K = 40: the Poisson mass above it is below 1e-20 at these rates
    out = cmp_output([1.0, 1.0, 1.0], 40)
    want = torch.distributions.Poisson(lam).log_prob(counts)
    torch.testing.assert_close(out.log_prob(lam, counts), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(PoissonOutput(3).log_prob(lam, counts), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.mean(lam), lam, rtol=1e-10, atol=1e-12)
    assert set(OUTPUTS) == {"poisson", "cmp"}


@pytest.mark.parametrize("nu, dispersed", [(2.0, "under"), (0.5, "over")])
def test_samples_have_the_enumerated_mean_and_fano_factor(nu, dispersed):
    lam, K, n = 1.8, 30, 40_000
    mean, var, mu4 = enumerated_moments(lam, nu, K)
    assert (var / mean < 1) if dispersed == "under" else (var / mean > 1)
    out = cmp_output([nu], K)
    samples = out.sample(torch.tensor([lam], dtype=torch.float64), n, torch.Generator().manual_seed(3))[:, 0].numpy()
    assert samples.min() >= 0 and samples.max() <= K and np.all(samples == np.round(samples))
    # the sample mean's and variance's standard errors from the enumerated moments, 4 SE
    se_mean = math.sqrt(var / n)
    se_var = math.sqrt((mu4 - var ** 2 * (n - 3) / (n - 1)) / n)
    assert abs(samples.mean() - mean) < 4 * se_mean
    ff, want_ff = samples.var(ddof=1) / samples.mean(), var / mean
    se_ff = want_ff * math.sqrt((se_var / var) ** 2 + (se_mean / mean) ** 2)
    assert abs(ff - want_ff) < 4 * se_ff
    # the model's own moments agree with the enumeration
    torch.testing.assert_close(out.mean(torch.tensor([lam], dtype=torch.float64)),
                               torch.tensor([mean], dtype=torch.float64))
    torch.testing.assert_close(out.variance(torch.tensor([lam], dtype=torch.float64)),
                               torch.tensor([var], dtype=torch.float64))


def test_gradient_wrt_nu():
    # d log P(k) / d nu = -log k! + E[log k!]; the parameter is log nu / LOG_NU_SCALE, so times nu × the scale
    lam, nu, K = 2.3, 1.7, 25
    out = cmp_output([nu], K)
    w = np.array([lam ** k / math.factorial(k) ** nu for k in range(K + 1)])
    p = w / w.sum()
    log_fact = np.array([math.lgamma(k + 1) for k in range(K + 1)])
    for k in (0, 2, 5):
        out.zero_grad()
        lam_t, k_t = torch.tensor([lam], dtype=torch.float64), torch.tensor([float(k)], dtype=torch.float64)
        out.log_prob(lam_t, k_t).sum().backward()
        want = nu * out.LOG_NU_SCALE * (-log_fact[k] + (p * log_fact).sum())
        assert float(out.nu_parameter.grad[0]) == pytest.approx(want, rel=1e-9)


def test_count_bound():
    assert count_bound(0) == 8 and count_bound(3) == 8 and count_bound(7) == 14
    with pytest.raises(ValueError, match="largest recorded count"):
        count_bound(-1)


def _cmp_model(n_cells: int, max_count: int, nu) -> "RetinaModel":
    """A tiny RF-aware CNN with a CMP output (the cnn_cmp family's parts) on 16-px images, its weights
    moved off their start so that its intensity differs per stimulus, bin and cell."""
    from neurocode.data.receptive_fields import ReceptiveFields
    from neurocode.models import RetinaModel, RFConfig, rf_model_spec

    rng = np.random.default_rng(0)
    rfs = ReceptiveFields(centres=rng.uniform(4, 12, (n_cells, 2)), covariances=np.stack([np.eye(2) * 2.0] * n_cells),
                          image_shape=(16, 16), source="stored", method="test")
    config = RFConfig(input_size=16, n_cells=n_cells, n_steps=4, channels=(2, 3), kernel_sizes=(3, 3))
    torch.manual_seed(0)
    model = RetinaModel(rf_model_spec(config, "relu", "cmp"), rfs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    model.output.distribution.set_max_count(max_count)
    model.output.distribution.set_nu(torch.as_tensor(nu))
    return model


def test_loss_is_the_nll_of_every_present_trial(natural_recording):
    """Each recorded trial's count enters the loss (not the trial mean); absent trials do not."""
    from neurocode.fitting import FitData
    from neurocode.kinds import MODEL_KINDS

    g = torch.Generator().manual_seed(0)
    n, T, R, N = 3, 4, 5, 2
    counts = torch.randint(0, 4, (n, T, R, N), generator=g).float()
    mask = torch.ones(n, R, dtype=torch.bool)
    mask[1, 3:] = False
    counts[1, :, 3:] = 0
    images = torch.randn(n, 1, 16, 16, generator=g)
    data = FitData(images=images, counts=counts, train_idx=np.arange(n), test_idx=np.arange(0), bin_size=0.01,
                   recording=natural_recording, trial_mask=mask)
    model = _cmp_model(N, 10, [1.5, 0.7])
    out = model.output.distribution
    with torch.no_grad():
        lam = model.output.intensity(model.readout(model.front_end.linear(images),
                                                   model.core(model.front_end.drive(images))[0], None))  # [T, n, N]
    assert float(lam.std(1).min()) > 0  # the stimuli's intensities differ
    kind = MODEL_KINDS["cnn_cmp"]
    items = torch.tensor([0, 1, 2])
    loss = kind.loss(None, model, data, items, torch.device("cpu"), g)
    terms = [-out.log_prob(lam[:, s], counts[s, :, r]) for s in range(n) for r in range(R) if mask[s, r]]
    want = torch.stack(terms).mean()
    torch.testing.assert_close(loss, want)
    # the trial mean's NLL is another number: the loss sees the trial-to-trial spread
    mean_counts = counts.sum(2) / mask.sum(1)[:, None, None]
    assert abs(float(loss) + float(out.log_prob(lam.transpose(0, 1), mean_counts).mean())) > 1e-3


@pytest.mark.slow
def test_one_epoch_cli_fit_scores_the_sampled_distribution(tmp_path):
    from neurocode.cli import main

    run = tmp_path / "cmp"
    assert main(["fit", "--model", "cnn_cmp", "--epochs", "1", "--out", str(run), "--no-progress",
                 "--threads", "1"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == "cnn_cmp" and metrics["distribution_sampling"] == "trials"
    for key in ("mmd2", "mmd2_floor", "ff_abs_diff", "ff_corr", "model_ff", "rate_cc", "count_cc"):
        assert metrics[key] is not None and math.isfinite(metrics[key]), key
    assert metrics["model_trials"] == 64
    with h5py.File(run / "predictions.h5", "r") as f:
        spikes, rates = f["spikes"][()].astype(float), f["rates"][()]
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    max_count = int(state["output.distribution.max_count"])
    assert max_count >= 8 and spikes.max() <= max_count
    # the sampled counts' trial mean is the model's rate E[k], within the sampling error
    n_trials = spikes.shape[2]
    diff = spikes.mean(2) - rates
    se = np.sqrt(spikes.var(2, ddof=1).sum() / n_trials) / diff.size  # SE of the mean difference
    assert abs(diff.mean()) < 4 * max(se, 1e-6)
    assert not torch.allclose(state["output.distribution.nu_parameter"], torch.zeros(1)), \
        "one epoch moved nu away from 1"
    # evaluate rescores the stored trials: the same distribution scores
    from neurocode.pipeline import evaluate

    again = evaluate(run)
    for key in ("mmd2", "ff_abs_diff", "ff_corr", "rate_cc", "fano_corr"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-12), key


def test_sampled_trials_follow_the_generator():
    """predict() seeds the model's generator with the run's seed: same seed, same trials."""
    model = _cmp_model(3, 12, [2.0, 1.0, 0.5])
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))

    def draw(seed):
        model.generator = torch.Generator().manual_seed(seed)
        return model.sample(x, 16)[0]

    a, b, c = draw(0), draw(0), draw(1)
    assert a.shape == (4, 16, 1, 3) and torch.equal(a, b) and not torch.equal(a, c)
