"""Reliability of the checks (issue 32, groups 4 and 5): one line where a traceback was, and no
nonsense accepted.

A window or bin size that would allocate more than the machine has is refused before
allocating; float64 frames beyond float32 are named as such; ``predict --trials 0``,
``analyze coding`` on unequal trial counts, ``sweep --set`` keys that collide with the sweep's
own options and a broken ``metrics.json`` in a sweep each get a clear answer.
"""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from neurocode.analysis import bin_spike_times, fano_factor, prediction_cosine_similarity
from neurocode.cli import main
from neurocode.data import ContinuousRecording, DataFormatError, Recording
from neurocode.sweep import SweepError, sweep


def _recording(window=(0.0, 0.3), n_stim=4, n_cells=3, trials=(2,), stimuli=None, seed=0, name="r"):
    rng = np.random.default_rng(seed)
    w = window[1] - window[0]
    spikes = [[[np.sort(rng.uniform(0, min(w, 0.3), rng.poisson(3))) for _ in range(trials[s % len(trials)])]
               for _ in range(n_cells)] for s in range(n_stim)]
    return Recording.from_spike_times(spikes, window, name=name, stimuli=stimuli)


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neurocode: error: ") and "\n" not in err and "Traceback" not in err
    return err


# --------------------------------------------------------------------------- huge arrays (group 4)
def test_a_1e9_s_window_is_refused_before_allocating():
    rec = _recording(window=(0.0, 1e9))
    with pytest.raises(ValueError, match=r"bin_size=0\.01 s over a window of 1e\+09 s: .*\[4, 100000000000, 2, 3\] "
                                         r"would need 17\.5 TiB, more than this machine's memory"):
        rec.binned(0.01)
    with pytest.raises(ValueError, match="TiB"):
        rec.psth(0.01)


def test_a_tiny_bin_size_is_refused_before_allocating():
    rec = _recording()
    with pytest.raises(ValueError, match=r"bin_size=1e-12 s over a window of 0\.3 s: .*would need 52\.4 TiB"):
        rec.binned(1e-12)
    with pytest.raises(ValueError, match=r"bin_size=1e-300 s over a window of 0\.3 s gives 3e\+299 bins"):
        rec.binned(1e-300)
    with pytest.raises(ValueError, match="--bin-size"):
        bin_spike_times([[np.array([0.1])]], 1e-13, 0.0, 1.0)


def test_a_continuous_recording_binned_over_a_huge_span_is_refused():
    frames = np.zeros((3, 4, 4), dtype=np.uint8)
    rec = ContinuousRecording("c", frames, np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.5]), np.array([0, 1, 2]),
                              session=(0.0, 3.0))
    with pytest.raises(ValueError, match=r"bin_size=1e-12 s over a window of 3 s: the counts \[bins, cells\]"):
        rec.binned(1e-12)
    assert rec.binned(1.0).sum() == 2  # a sane bin still counts every spike
    long = ContinuousRecording("c", frames, np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.5]), np.array([0, 1, 2]),
                               session=(0.0, 1e9))
    with pytest.raises(ValueError, match=r"bin_size=0\.033 s over a window of 1e\+09 s: the clip frames"):
        long.to_clips(1.0, 0.033)  # before tiling a billion clips
    assert long.binned(1e6).sum() == 2


def test_cli_fit_with_bin_size_1e_9_is_one_line_naming_the_argument(capsys, tmp_path):
    out = tmp_path / "run"
    err = _one_line_error(capsys, ["fit", "--model", "ln", "--bin-size", "1e-9", "--out", str(out), "--no-progress"])
    assert "bin_size=1e-09 s" in err and "--bin-size" in err and "TiB" in err
    assert not out.exists()


def test_float64_frames_beyond_float32_are_named_not_nan():
    frames = np.full((4, 8, 8), 1e300)
    frames[0, 0, 0] = 0.0
    with pytest.raises(DataFormatError, match=r"'stimuli' holds values up to 1e\+300, outside the float32 range"):
        _recording(stimuli=frames)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow in a cast on the way
        with pytest.raises(DataFormatError, match="outside the float32 range"):
            ContinuousRecording("c", np.full((3, 4, 4), -1e300), np.array([0.0, 1.0, 2.0]), np.array([0.5]),
                                np.array([0, 1]), session=(0.0, 3.0))
    ok = _recording(stimuli=np.full((4, 8, 8), 3e38))  # inside float32: kept
    assert np.isfinite(ok.stimuli).all()


# --------------------------------------------------------------------------- analyze coding, unequal trials
def test_analyze_coding_on_unequal_trial_counts_uses_each_images_own_trials(capsys, tmp_path):
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (8, 8, 8), dtype=np.uint8)
    rec = _recording(n_stim=8, n_cells=6, trials=(6, 4), stimuli=frames)
    path = rec.save(tmp_path / "uneq.h5")
    assert main(["analyze", "coding", "--data", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "4-6 trials, each image's statistics from its own" in out
    padded = rec.binned(0.3, padded=True)[:, 0]  # [images, trials, cells], absent trials 0
    ff, cos = [], []
    for s, n in enumerate(rec.trial_counts):  # an image's own trials, never an absent one as 0 spikes
        ff.append(np.nanmean(fano_factor(padded[s, :n])))
        cos.append(prediction_cosine_similarity(padded[s, :n]))
    got = json.loads((tmp_path / "out" / "coding.json").read_text())
    np.testing.assert_allclose(got["mean_fano"], ff)
    np.testing.assert_allclose(got["cosine"], cos)
    assert got["r"] == pytest.approx(scipy.stats.pearsonr(ff, cos)[0]) and got["n_valid"] == 8


# --------------------------------------------------------------------------- a fitted run and a sweep
LN = dict(epochs=1, input_size=16)


@pytest.fixture(scope="module")
def ln_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sw"
    sweep(models="ln", folds=0, seeds=0, out=out, preset="quick", use_ray=False, figure=False, log=None, **LN)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("trials", ["0", "-5"])
def test_predict_trials_below_one_is_refused(capsys, tmp_path, ln_sweep, trials):
    stimuli = tmp_path / "s.npy"
    np.save(stimuli, np.random.default_rng(0).random((2, 20, 20)))
    out = tmp_path / "p.h5"
    err = _one_line_error(capsys, ["predict", str(ln_sweep / "runs" / "ln-fold0-seed0"), "--stimuli", str(stimuli),
                                   "--trials", trials, "--out", str(out)])
    assert f"--trials) must be an integer >= 1" in err and f"got {trials}" in err
    assert not out.exists()


@pytest.mark.slow
def test_predict_float64_stimuli_beyond_float32_are_refused(capsys, tmp_path, ln_sweep):
    stimuli = tmp_path / "big.npy"
    np.save(stimuli, np.full((2, 20, 20), 1e300))
    out = tmp_path / "p.h5"
    err = _one_line_error(capsys, ["predict", str(ln_sweep / "runs" / "ln-fold0-seed0"), "--stimuli", str(stimuli),
                                   "--out", str(out)])
    assert "stimuli hold values up to 1e+300, outside the float32 range" in err
    assert not out.exists()


@pytest.mark.slow
def test_a_broken_metrics_json_in_a_sweep_names_the_run_file(tmp_path, ln_sweep):
    out = tmp_path / "sw"
    shutil.copytree(ln_sweep, out)
    broken = out / "runs" / "ln-fold0-seed0" / "metrics.json"
    broken.write_text('{"rate_cc": 0.3')
    with pytest.raises(SweepError, match=rf"{broken}: broken metrics\.json, not JSON"):
        sweep(models="ln", folds=0, seeds=0, out=out, preset="quick", use_ray=False, figure=False, log=None, **LN)
    broken.write_text("[1, 2]")
    with pytest.raises(SweepError, match=rf"{broken}: broken metrics\.json, not a JSON object"):
        sweep(models="ln", folds=0, seeds=0, out=out, preset="quick", use_ray=False, figure=False, log=None, **LN)


@pytest.mark.parametrize("argv, key", [
    (["--set", "recording=a,b"], "'recording': recording is an axis of the sweep itself"),
    (["--set", "threads=1,2"], "'threads' is the sweep's own option (--threads"),
    (["--epochs", "2", "--set", "epochs=1,3"], "'epochs' is also a fixed option of the sweep (--epochs)"),
    (["--eval-trials", "4", "--search", "eval_trials=int:2:8"], "'eval_trials' is also a fixed option of the sweep "
                                                                "(--eval-trials)"),
])
def test_sweep_settings_that_collide_with_its_own_options_are_named(capsys, tmp_path, argv, key):
    out = tmp_path / "sw"
    err = _one_line_error(capsys, ["sweep", "--models", "ln", "--out", str(out), "--no-ray", *argv])
    assert key in err and "multiple values" not in err
    assert not out.exists()
