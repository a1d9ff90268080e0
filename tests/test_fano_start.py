"""The output noise scale set per cell at the start so that each cell's Fano factor matches its recorded one
(:class:`neurocode.models.parts.outputs.FanoStart`, :func:`neurocode.models.retina.calibrate_output_fano`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurocode.data.receptive_fields import ReceptiveFields
from neurocode.models import RetinaModel, RFConfig, calibrate_spiking, rf_model_spec
from neurocode.models.parts.outputs import FanoStart
from neurocode.models.retina import calibrate_output_fano, window_fano

S, N, T, B = 16, 3, 6, 8
RATE = 0.4  # target spikes per bin of every cell: a mean window count of 2.4
TARGET_FF = (0.15, 0.3, 0.7)


def _model(output: str = "noisy_lif_fano") -> RetinaModel:
    rfs = ReceptiveFields(centres=np.array([[5.0, 6.0], [9.0, 10.0], [11.0, 4.0]]),
                          covariances=np.stack([np.eye(2) * 2.0] * N), image_shape=(S, S), source="stored",
                          method="test")
    # a deterministic core: the output's noise is the only source of trial-to-trial variability, so each
    # cell's Fano factor runs from ~0 (sigma -> 0) to about that of a Bernoulli count (large sigma)
    config = RFConfig(input_size=S, n_cells=N, n_steps=T, channels=(2, 3), kernel_sizes=(3, 3), output_substeps=3,
                      core_neuron={"family": "lif"}, output_neuron={"sigma": 0.35})
    torch.manual_seed(0)
    return RetinaModel(rf_model_spec(config, "spiking", output), rfs, torch.Generator().manual_seed(1))


def _recorded(target_ff, R: int = 20) -> torch.Tensor:
    """``[B, R, N]`` window counts with mean 2.4 and population variance FF x 2.4 in every (image, cell) pair."""
    mean = RATE * T
    sign = torch.tensor([1.0, -1.0]).repeat(R // 2)  # half the trials above the mean, half below
    spread = torch.tensor([math.sqrt(f * mean) for f in target_ff])
    return (mean + sign[:, None] * spread).expand(B, R, N).clone()


def _model_ff(model: RetinaModel, images: torch.Tensor, K: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's Fano factor of its window count on fresh trials (a new noise seed), and its rate per bin."""
    model.output.neuron.generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        spikes = model(images, n_trials=K)  # [T, K, B, N]
    counts = spikes.sum(0).transpose(0, 1)  # [B, K, N]
    ff = window_fano(counts, torch.ones(B, N, dtype=torch.bool)).numpy()
    return ff, spikes.mean((0, 1, 2)).numpy()


K_CAL, K_EVAL = 64, 256  # model trials per image in a calibration and in the check after it


def _at_rate(output: str, rate: float) -> tuple[RetinaModel, torch.Tensor]:
    """A synthetic model (``_model(output)``) with its biases at ``rate`` spikes per bin, and its images."""
    model = _model(output)
    images = torch.rand(B, 1, S, S, generator=torch.Generator().manual_seed(2))
    model.front_end.prepare(images)
    calibrate_spiking(model, images, hidden_rate=0.1, output_rate=torch.full((T, N), rate), n_trials=4)
    return model, images


def _ff_sem(target: np.ndarray) -> np.ndarray:
    """The sampling error of a Fano factor from K trials is about FF * sqrt(2 / (K - 1)); averaged over B
    pairs, from the calibration's trials and from the check's fresh ones."""
    return target * np.sqrt(2 / (K_CAL - 1) / B + 2 / (K_EVAL - 1) / B)


def test_the_calibration_moves_each_cells_fano_factor_to_its_recorded_one():
    model, images = _at_rate("noisy_lif_fano", RATE)
    rate = torch.full((T, N), RATE)
    before, _ = _model_ff(model, images, K_EVAL, seed=10)
    fitted = calibrate_output_fano(model, images, _recorded(TARGET_FF), rate, n_trials=K_CAL, iterations=10,
                                   bound=2.0, seed=3)
    after, after_rate = _model_ff(model, images, K_EVAL, seed=11)
    target = np.array(TARGET_FF)
    assert np.allclose(fitted["target_ff"], target, atol=1e-5)
    sem = _ff_sem(target)
    assert np.all(np.abs(after - target) < 4 * sem), (after, target, 4 * sem)
    # the start (one sigma for all cells) misses at least two of the targets by more than that
    assert (np.abs(before - target) > 4 * sem).sum() >= 2, (before, target)
    # the noise scale follows the target: the least variable cell gets the smallest sigma
    sigma = np.array(fitted["sigma"])
    assert np.all(np.diff(sigma) > 0), sigma
    assert np.allclose(sigma, model.output.neuron.sigma.detach().numpy())
    # the rate stays at its target: the bias was re-calibrated with sigma (binomial SE of the mean per bin)
    n = K_EVAL * B * T
    assert np.all(np.abs(after_rate - RATE) < 4 * math.sqrt(RATE * 3 / n) + 0.02), after_rate


def test_window_fano_counts_only_the_active_pairs_and_the_present_trials():
    counts = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [math.nan, 0.0]],
                           [[2.0, 4.0], [2.0, 0.0], [2.0, 2.0]]])  # [B=2, K=3, N=2]
    active = torch.tensor([[True, True], [True, False]])
    # cell 0: pair (0) trials 1, 3 -> var 1, mean 2 -> 0.5; pair (1) 2, 2, 2 -> 0. Cell 1: pair (0) mean 0 left out,
    # pair (1) inactive: no counted pair
    ff = window_fano(counts, active)
    assert ff[0].item() == pytest.approx(0.25) and math.isnan(ff[1].item())


def test_a_frozen_fano_start_keeps_its_sigma_and_a_bad_option_is_named():
    frozen = _model("noisy_lif_fano_frozen")
    learnt = _model("noisy_lif_fano")
    narrow = _model("noisy_lif_fano_narrow")
    assert narrow.output.fano_start.bound < learnt.output.fano_start.bound and narrow.output.fano_start.learnt
    assert not frozen.output.neuron.log_sigma.requires_grad and learnt.output.neuron.log_sigma.requires_grad
    assert frozen.output.neuron.log_sigma.shape == (N,)  # one noise scale per cell, whatever the spec said
    with pytest.raises(ValueError, match="FanoStart.n_trials"):
        FanoStart(n_trials=1)
    with pytest.raises(ValueError, match="one unit per cell"):
        RetinaModel(rf_model_spec(RFConfig(input_size=S, n_cells=N, n_steps=T, channels=(2, 3), kernel_sizes=(3, 3),
                                           readout_units=4), "spiking", "noisy_lif_fano"))


@pytest.mark.slow
def test_a_fit_with_a_fano_start_records_it_and_a_frozen_sigma_stays(tmp_path):
    """``parts={"output": "noisy_lif_fano_frozen"}`` is a one-line config: the start sets a sigma per cell
    (recorded in the history), training leaves it there; the learnt variant trains it on."""
    from neurocode.pipeline import fit, load_run

    tiny = dict(epochs=1, input_size=16, eval_trials=4, model_trials=2, threads=1, progress=False)
    sigmas = {}
    for output in ("noisy_lif_fano_frozen", "noisy_lif_fano"):
        run = fit("nsnn", out=tmp_path / output, parts={"output": output}, **tiny)
        start = next(h["fano_start"] for h in run.history if "fano_start" in h)
        model = load_run(run.run_dir)[1]
        sigmas[output] = (np.array(start["sigma"]), model.output.neuron.sigma.detach().numpy())
        assert len(start["target_ff"]) == model.spec.n_cells and -1 <= run.metrics["rate_cc"] <= 1
    calibrated, trained = sigmas["noisy_lif_fano_frozen"]
    assert np.allclose(calibrated, trained, rtol=1e-6) and calibrated.std() > 0
    calibrated, trained = sigmas["noisy_lif_fano"]
    assert not np.allclose(calibrated, trained, rtol=1e-6)


def test_fano_again_names_its_epochs():
    assert FanoStart(again=(6, 18)).again == (6, 18)
    for bad in ((0,), (True,), [6], (2.5,)):
        with pytest.raises(ValueError, match="FanoStart.again"):
            FanoStart(again=bad)


@pytest.mark.slow
def test_the_calibration_repeated_after_an_epoch_sees_the_trained_model(tmp_path, monkeypatch):
    """``noisy_lif_fano_again``: after the named epoch each cell's sigma is searched again around the spec's
    (recorded in the history), on the trained model, with BatchNorm's running statistics left alone."""
    from neurocode.models.parts.outputs import AgainFanoStartOutput
    from neurocode.pipeline import fit, load_run

    assert AgainFanoStartOutput.start.again == (6, 18)
    monkeypatch.setattr(AgainFanoStartOutput, "start", FanoStart(again=(1,)))
    seen = {}
    real = calibrate_output_fano

    def spy(model, *args, **kwargs):
        seen.setdefault("training", []).append(model.training)
        seen.setdefault("bn", []).append({k: v.clone() for k, v in model.state_dict().items() if "running" in k})
        seen.setdefault("sigma0", []).append(model.output.neuron.sigma.detach().clone())
        out = real(model, *args, **kwargs)
        seen.setdefault("bn_after", []).append({k: v.clone() for k, v in model.state_dict().items() if "running" in k})
        return out

    monkeypatch.setattr("neurocode.kinds.calibrate_output_fano", spy)
    run = fit("nsnn", out=tmp_path / "again", parts={"output": "noisy_lif_fano_again"}, epochs=2, input_size=16,
              eval_trials=4, model_trials=2, threads=1, progress=False, rf={"core_norm": True})
    again = [h for h in run.history if "fano_again" in h]
    assert [h["epoch"] for h in again] == [1]
    start = next(h["fano_start"] for h in run.history if "fano_start" in h)
    spec_sigma = load_run(run.run_dir)[1].spec.output_options["neuron"].sigma
    sigma = np.array(again[0]["fano_again"]["sigma"])
    # searched around the spec's sigma again (not around the start's result), within the bound
    assert torch.allclose(seen["sigma0"][1], torch.full_like(seen["sigma0"][1], spec_sigma))
    assert np.all(np.abs(np.log(sigma / spec_sigma)) <= math.log(2.0) + 1e-6)
    assert not np.allclose(sigma, start["sigma"])  # the trained model calibrates to other values
    assert seen["training"] == [True, False]  # the repeat runs the model as it predicts
    for k, v in seen["bn"][1].items():
        assert torch.equal(v, seen["bn_after"][1][k]), k


def test_the_calibration_can_keep_the_models_own_rate():
    """``output_rate=None`` (the Fano end's): sigma moves each cell's Fano factor to its recorded one while
    the bias holds the rate the model had (0.55 spikes per bin), not the recorded one (0.4)."""
    own = 0.55
    model, images = _at_rate("noisy_lif_fano_end", own)
    _, before_rate = _model_ff(model, images, K_EVAL, seed=10)
    fitted = calibrate_output_fano(model, images, _recorded(TARGET_FF), None, n_trials=K_CAL, iterations=10,
                                   bound=2.0, seed=3)
    after, after_rate = _model_ff(model, images, K_EVAL, seed=11)
    target = np.array(TARGET_FF)
    assert np.all(np.abs(after - target) < 4 * _ff_sem(target)), (after, target)
    n = K_EVAL * B * T
    se = 4 * math.sqrt(own * 3 / n)
    assert np.all(np.abs(before_rate - own) < se + 0.02), before_rate
    assert np.all(np.abs(after_rate - before_rate) < 2 * se + 0.02), (after_rate, before_rate)
    assert np.all(np.diff(fitted["sigma"]) > 0), fitted["sigma"]


def test_a_fano_end_is_a_noisy_output_with_a_sigma_per_cell():
    from neurocode.models.parts.outputs import FanoEnd

    model = _model("noisy_lif_fano_end")
    assert model.output.fano_end == FanoEnd() and model.output.fano_start is None
    assert model.output.neuron.log_sigma.shape == (N,) and model.output.neuron.log_sigma.requires_grad
    with pytest.raises(ValueError, match="FanoEnd.bound"):
        FanoEnd(bound=0.0)
    with pytest.raises(ValueError, match="fano_end applies to a noisy output"):
        RetinaModel(rf_model_spec(RFConfig(input_size=S, n_cells=N, n_steps=T, channels=(2, 3), kernel_sizes=(3, 3),
                                           readout_units=4), "spiking", "noisy_lif_fano_end"))


@pytest.mark.slow
@pytest.mark.parametrize("output", ["noisy_lif_fano_end", "noisy_lif_fano_end_gain"])
def test_a_fano_end_sets_sigma_once_after_training_and_the_run_keeps_it(tmp_path, monkeypatch, output):
    """``noisy_lif_fano_end``: after the last epoch, on the weights the fit keeps, each cell's sigma is set
    (recorded in the history); the run folder's model has those sigmas, and a resumed fit does not set
    them again."""
    from neurocode.pipeline import fit, load_run

    calls = []
    real = calibrate_output_fano

    def spy(model, *args, **kwargs):
        calls.append((model.training, args[2]))
        return real(model, *args, **kwargs)

    monkeypatch.setattr("neurocode.kinds.calibrate_output_fano", spy)
    tiny = dict(epochs=2, input_size=16, eval_trials=4, model_trials=2, threads=1, progress=False)
    run = fit("nsnn", out=tmp_path / "end", parts={"output": output}, **tiny)
    assert calls == [(False, None)]  # once, as the model predicts, keeping the model's own rate
    end = [h for h in run.history if "fano_end" in h]
    assert len(end) == 1 and run.history[-1].get("best_epoch") is not None
    sigma = np.array(end[0]["fano_end"]["sigma"])
    spec_sigma = load_run(run.run_dir)[1].spec.output_options["neuron"].sigma
    assert sigma.std() > 0 and np.all(np.abs(np.log(sigma / spec_sigma)) <= 2 * math.log(2.0) + 1e-6)
    model = load_run(run.run_dir)[1]
    assert np.allclose(model.output.neuron.sigma.detach().numpy(), sigma, rtol=1e-6)
    if output.endswith("gain"):  # each cell's drive gain, one of those tried, is the run's too
        gain = np.array(end[0]["fano_end"]["gain"])
        assert np.allclose(model.output.drive_gain.numpy(), gain)
        assert np.all(np.abs(gain[:, None] - np.array(model.output.end.gains)).min(1) < 1e-6)
    noise = run.metrics["output_noise_set"]  # in metrics.json and the printout
    assert noise["r_sigma_recorded_ff"] == end[0]["fano_end"]["r_sigma_target"]
    assert noise["sigma_min"] == pytest.approx(sigma.min()) and ("gain_min" in noise) == output.endswith("gain")
    again = fit("nsnn", out=tmp_path / "end", resume=True, parts={"output": output}, **tiny)
    assert len(calls) == 1 and again.metrics["rate_cc"] == pytest.approx(run.metrics["rate_cc"])


def test_a_fano_end_with_gains_keeps_each_cells_psth_better_than_sigma_alone():
    """``FanoEnd.gains``: each cell keeps the drive gain (with its sigma and bias) whose PSTH is nearest the
    model's before the calibration; on fresh trials its PSTH is nearer it than sigma alone leaves it, and
    the Fano factors still reach their targets."""
    from neurocode.models.parts.outputs import FanoEnd

    def calibrated(gains):
        model, images = _at_rate("noisy_lif_fano_end_gain" if gains else "noisy_lif_fano_end", 0.55)
        model.output.neuron.generator = torch.Generator().manual_seed(10)
        with torch.no_grad():
            before = model(images, n_trials=K_EVAL).mean(1)
        fitted = calibrate_output_fano(model, images, _recorded(TARGET_FF), None, n_trials=K_CAL, iterations=10,
                                       bound=2.0, seed=3, gains=gains)
        ff, _ = _model_ff(model, images, K_EVAL, seed=11)
        model.output.neuron.generator = torch.Generator().manual_seed(12)
        with torch.no_grad():
            after = model(images, n_trials=K_EVAL).mean(1)
        return fitted, ff, (after - before).square().mean((0, 1)).numpy(), model, images

    _, ff_alone, err_alone, plain, images = calibrated(())
    fitted, ff, err, model, _ = calibrated((0.4, 0.6, 1.0))
    gain = np.array(fitted["gain"])
    assert np.all(np.abs(gain[:, None] - np.array([0.4, 0.6, 1.0])).min(1) < 1e-6)
    assert np.allclose(gain, model.output.drive_gain.numpy())
    assert "output.drive_gain" in model.state_dict() and "output.drive_gain" not in plain.state_dict()
    target = np.array(TARGET_FF)
    assert np.all(np.abs(ff - target) < 4 * _ff_sem(target)), (ff, target)
    # the cells whose sigma moved most (the least variable) keep their PSTH better with a gain of their own
    assert err.mean() < 0.8 * err_alone.mean(), (err, err_alone)
    with pytest.raises(ValueError, match="FanoEnd.gains"):
        FanoEnd(gains=(0.5, -1.0))
    with pytest.raises(ValueError, match="drive gain per cell"):
        calibrate_output_fano(plain, images, _recorded(TARGET_FF), None, gains=(0.5,))


def test_the_fano_end_summary_of_a_run():
    from neurocode.pipeline import _fano_end_summary

    record = {"target_ff": [0.5, 0.3, None], "model_ff": [0.6, 0.25, None], "sigma": [0.2, 0.1, 0.35],
              "r_sigma_target": 0.9, "gain": [0.5, 1.5, 1.0]}
    got = _fano_end_summary([{"epoch": 0}, {"after_training": True, "fano_end": record}])
    assert got == {"sigma_min": 0.1, "sigma_max": 0.35, "r_sigma_recorded_ff": 0.9, "cells": 2,
                   "train_ff_abs_diff": pytest.approx(0.075), "gain_min": 0.5, "gain_max": 1.5}
    assert _fano_end_summary([{"epoch": 0, "initial_rates": [0.1]}]) is None
