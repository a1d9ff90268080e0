"""Model recovery on an in-silico white-noise experiment, end to end through the CLI.

20 LN-Poisson cells, 10 min of 40×40 binary checkerboard at 30 Hz and a 10-s segment repeated
20 times (:func:`neurocode.simulate.white_noise_experiment`). The NSNN fitted from the
command line (movie preset, 40-px input, one bin per frame) must predict the repeats nearly
as well as the ground-truth model itself, and its spike-triggered average must show each
cell's true receptive field.
"""

import json

import numpy as np
import pytest

from neurocode.cli import main
from neurocode.simulate import white_noise, white_noise_experiment

pytestmark = pytest.mark.slow
BIN = 1 / 30


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("white_noise")
    rec, truth, _ = white_noise_experiment(seed=0)
    rec.save(tmp / "wn.h5")
    run = tmp / "run"
    assert main(["fit", "--model", "nsnn", "--data", str(tmp / "wn.h5"), "--input-size", "40", "--bin-size",
                 repr(BIN), "--epochs", "4", "--threads", "2", "--out", str(run), "--no-progress"]) == 0
    return run, truth


def test_nsnn_predicts_the_repeats_nearly_as_well_as_the_ground_truth(fitted):
    from neurocode.analysis.scores import compute_metrics
    from neurocode.pipeline import load_run

    run, truth = fitted
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["preset"] == "movie" and metrics["stimulus"] == "clips"
    config, _, data = load_run(run)
    # the ground truth's own expected rates on the same test clips and bins
    info = data.recording.provenance["clips"]
    T = info["n_bins"]
    first = [int(round(o / truth.dt)) for o in info["test_clip_offsets"]]
    truth_rates = np.stack([truth.repeat_rates[f: f + T] for f in first]).astype(np.float32)
    gt = compute_metrics(data.test_counts(), truth_rates, data.psth(data.train_idx).numpy(), False, BIN)
    assert gt["rate_cc"] > 0.85
    assert metrics["rate_cc"] >= 0.9 * gt["rate_cc"], (metrics["rate_cc"], gt["rate_cc"])
    # and it is scored against the LN model, the baseline (the mean rate: ~0) and the ceiling
    assert metrics["ln_rate_cc"] is not None and abs(metrics["baseline_rate_cc"]) < 0.2


def test_nsnn_spike_triggered_average_shows_each_true_rf(fitted):
    from neurocode.fitting import predict_stimuli
    from neurocode.pipeline import load_run

    run, truth = fitted
    config, model, data = load_run(run)
    # 1000 s of fresh white noise the model never saw, cut into clips with the fit's history;
    # the STA of the model's sampled spikes (4 trials per clip)
    frames = white_noise(30000, (40, 40), seed=123)
    T, F = 30, data.n_lags - 1 + 30
    starts = np.arange(0, len(frames) - F, T)
    clips = np.stack([frames[s: s + F] for s in starts])
    spikes = predict_stimuli(config, model, data, clips, n_trials=4)  # [n, T, K, N] counts
    assert spikes.dtype == np.uint8
    rates = spikes.sum(axis=2).astype(np.float64)
    z = (clips.astype(np.float64) - 127.5) / 127.5
    r = rates - rates.mean((0, 1))
    best = []
    for lag in range(data.n_lags):
        sta = np.einsum("ntc,nthw->chw", r, z[:, F - T - lag: F - lag])
        best.append(sta)
    sta = np.stack(best)  # [lag, cell, H, W]
    peak = np.abs(sta).reshape(len(best), sta.shape[1], -1).max(-1).argmax(0)  # per cell
    true = truth.spatial_filters
    cc = [abs(np.corrcoef(sta[peak[c], c].ravel(), true[c].ravel())[0, 1]) for c in range(true.shape[0])]
    assert min(cc) >= 0.8, np.round(cc, 3)
