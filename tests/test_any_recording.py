"""The user's own recordings from the command line: any frame size, window, bin and trial counts,
NWB files written by plain pynwb, predictions for new stimuli and digital twins.

Every recording here is in silico (:mod:`neurocode.simulate`), so the tests know what is in it.
"""

import json
from datetime import datetime, timezone

import h5py
import numpy as np
import pytest

from neurocode.cli import main
from neurocode.data import load_recording
from neurocode.simulate import LNPoisson, flashes, simulate_flashes

pytestmark = pytest.mark.slow


def _gratings(n, shape, seed=0):
    """Static sinusoidal gratings of random orientation, period and phase, uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    out = []
    for _ in range(n):
        th, period, phase = rng.uniform(0, np.pi), rng.uniform(60, 200), rng.uniform(0, 2 * np.pi)
        out.append(127.5 * (1 + np.sin(2 * np.pi * (xx * np.cos(th) + yy * np.sin(th)) / period + phase)))
    return np.round(out).astype(np.uint8)


def _fit(tmp_path, data, *extra, model="nsnn", name="run"):
    out = tmp_path / name
    argv = ["fit", "--model", model, "--data", str(data), "--out", str(out), "--threads", "1", "--no-progress",
            "--epochs", "1", *extra]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text()), out


def test_gratings_600px_fit_with_input_size(tmp_path, capsys):
    images = _gratings(40, (600, 600))
    cells = LNPoisson.random(6, (600, 600), seed=1, rf_sigma_px=60)
    simulate_flashes(cells, images, n_trials=8, seed=2).save(tmp_path / "g.h5", "gratings")
    m, _ = _fit(tmp_path, tmp_path / "g.h5", "--input-size", "60")
    assert m["preprocessing"] == "600x600 frames, area-resampled to 60x60"
    assert m["n_cells"] == 6 and m["n_bins"] == 30 and m["rate_cc"] is not None
    assert "LN" in capsys.readouterr().out


def test_non_square_frames_are_letterboxed_not_squashed(tmp_path):
    images = flashes(40, (96, 128), seed=3)
    cells = LNPoisson.random(5, (96, 128), seed=4, rf_sigma_px=8)
    simulate_flashes(cells, images, n_trials=8, seed=5).save(tmp_path / "w.h5")
    m, run = _fit(tmp_path, tmp_path / "w.h5", "--input-size", "32", model="ln")
    assert m["preprocessing"].startswith("96x128 frames letterboxed to 128x128")
    # the RFs were estimated on the letterboxed frames: a centre keeps its column, its row moves by 16
    rfs = json.loads((run / "receptive_fields.json").read_text())
    assert rfs["image_shape"] == [128, 128]
    true = cells.rfs.centres + np.array([0.0, 16.0])
    est = np.asarray(rfs["centres"])
    assert np.median(np.linalg.norm(est - true, axis=1)) < 8.0


def test_other_window_bin_and_trial_counts_fit_without_code_changes(tmp_path):
    images = flashes(40, (32, 32), seed=6)
    cells = LNPoisson.random(4, (32, 32), seed=7, rf_sigma_px=3)
    counts = np.random.default_rng(8).integers(4, 13, 40)
    rec = simulate_flashes(cells, images, window=(0.0, 0.5), dt=0.01, seed=9, trial_counts=counts)
    assert rec.trial_counts.tolist() == counts.tolist()
    rec.save(tmp_path / "r.h5")
    for model in ("nsnn", "cnn", "ln"):
        m, _ = _fit(tmp_path, tmp_path / "r.h5", "--input-size", "32", "--bin-size", "0.02", "--window", "0.1",
                    "0.5", model=model, name=model)
        assert m["window"] == [0.1, 0.5] and m["n_bins"] == 20 and m["bin_size"] == 0.02
        # scores use the trials every test stimulus has
        assert m["test_trials"] == int(counts[m["test_stimuli"]].min())


def _plain_pynwb_flashes(path, rec):
    """The standard layout written with pynwb alone: Images + IndexSeries + trials + units."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.base import ImageReferences, Images
    from pynwb.image import GrayscaleImage, IndexSeries

    nwb = NWBFile(session_description="flashes", identifier="plain",
                  session_start_time=datetime(2024, 5, 1, tzinfo=timezone.utc))
    imgs = [GrayscaleImage(name=f"image{i:03d}", data=im) for i, im in enumerate(rec.stimuli)]
    images = Images(name="flashes", images=imgs, order_of_images=ImageReferences(name="order_of_images", data=imgs))
    nwb.add_stimulus_template(images)
    onsets, order = [], []
    nwb.add_trial_column("stimulus_index", "index of the flashed image")
    spikes = [[] for _ in range(rec.n_cells)]
    t = 1.0
    for s in range(rec.n_stimuli):
        for k in range(rec.trial_counts[s]):
            onsets.append(t)
            order.append(s)
            nwb.add_trial(start_time=t, stop_time=t + 0.3, stimulus_index=s)
            for c in range(rec.n_cells):
                spikes[c].extend(t + rec.spike_times[s][c][k])
            t += 0.5
    nwb.add_stimulus(IndexSeries(name="flash_sequence", data=np.asarray(order, dtype=np.uint32),
                                 indexed_images=images, unit="N/A", timestamps=np.asarray(onsets)))
    for c in range(rec.n_cells):
        nwb.add_unit(spike_times=np.asarray(spikes[c]))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def test_plain_pynwb_file_fits_and_imports_from_the_cli(tmp_path):
    pytest.importorskip("pynwb")
    images = flashes(30, (32, 32), seed=10)
    rec = simulate_flashes(LNPoisson.random(4, (32, 32), seed=11, rf_sigma_px=3), images, n_trials=6, seed=12)
    _plain_pynwb_flashes(tmp_path / "plain.nwb", rec)
    m, _ = _fit(tmp_path, tmp_path / "plain.nwb", "--input-size", "32", model="ln")
    assert m["n_cells"] == 4 and m["n_test_images"] == 6 and m["window"] == [0.0, pytest.approx(0.3)]
    assert main(["data", "import", str(tmp_path / "plain.nwb"), "--out", str(tmp_path / "plain.h5"),
                 "--name", "flashes"]) == 0
    back = load_recording(tmp_path / "plain.h5", "flashes")
    np.testing.assert_array_equal(back.stimuli, rec.stimuli)
    np.testing.assert_array_equal(back.binned(0.01), rec.binned(0.01))


def test_recording_flag_predict_and_digital_twin(tmp_path, capsys):
    from neurocode.pipeline import simulate_run

    images = flashes(30, (32, 32), seed=13)
    cells = LNPoisson.random(3, (32, 32), seed=14, rf_sigma_px=3)
    simulate_flashes(cells, images, n_trials=6, seed=15).save(tmp_path / "two.h5", "a")
    simulate_flashes(cells, images, n_trials=4, seed=16).save(tmp_path / "two.h5", "b")
    # a file with several recordings needs --recording, and the error says so
    assert main(["fit", "--data", str(tmp_path / "two.h5"), "--out", str(tmp_path / "x")]) == 2
    assert "--recording" in capsys.readouterr().err and not (tmp_path / "x").exists()
    m, run = _fit(tmp_path, tmp_path / "two.h5", "--recording", "b", "--input-size", "32")
    assert m["recording"] == "b"
    new = flashes(5, (64, 48), seed=17)  # another size: letterboxed and resampled like the training frames
    np.save(tmp_path / "new.npy", new)
    assert main(["predict", str(run), "--stimuli", str(tmp_path / "new.npy"), "--trials", "3"]) == 0
    with h5py.File(run / "predictions_new.h5") as f:
        assert f["rates"].shape == (5, 30, 3) and f["spikes"].shape == (5, 30, 3, 3)
        assert np.isfinite(f["rates"][()]).all()
    assert main(["predict", str(run), "--stimuli", str(tmp_path / "nope.npy")]) == 2
    from neurocode.fitting import predict, predict_stimuli
    from neurocode.pipeline import load_run

    config, model, data = load_run(run)
    np.testing.assert_array_equal(predict(config, model, data, new, n_trials=3, seed=5),
                                  predict_stimuli(config, model, data, new, n_trials=3, seed=5))
    # the recording's own test images, given as frames, predict as by index
    np.testing.assert_array_equal(predict(config, model, data, data.recording.stimuli[data.test_idx], seed=5),
                                  predict(config, model, data, data.test_idx, seed=5))
    twin = simulate_run(run, new, n_trials=7, seed=1)
    assert twin.shape == (5, 3, 7) and twin.window == (0.0, pytest.approx(0.3))
    np.testing.assert_array_equal(twin.stimuli, new)
