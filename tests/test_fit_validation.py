"""Validation, best checkpoint, RF-aware fits, the LN reference, and the test images kept out of training."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from neurocode.cli import main
from neurocode.data import Recording
from neurocode.fitting import FitConfig, load_checkpoint, make_config, prepare_data, train, validation_split
from neurocode.pipeline import fit

TINY_RF = dict(preset="quick", epochs=3, input_size=16, eval_trials=4, model_trials=2, threads=1, val_every=1,
               val_trials=2, rf={"channels": (2, 3), "kernel_sizes": (3, 3)})


def _tiny_settings(model: str) -> dict:
    """TINY_RF's settings of a ``model`` fit (a rate model has no spiking settings)."""
    drop = ("preset",) if model in ("nsnn", "dsnn") else ("preset", "model_trials")
    return {k: v for k, v in TINY_RF.items() if k not in drop}


def _without_rfs(rec: Recording, stimuli=None) -> Recording:
    sub = rec.subset(stimuli) if stimuli is not None else rec
    return Recording(name=sub.name, spike_times_flat=sub.spike_times_flat, spike_offsets=sub.spike_offsets,
                     shape=sub.shape, window=sub.window, stimuli=sub.stimuli, receptive_fields=None)


def test_validation_split_is_seeded_disjoint_and_complete():
    train_idx = np.arange(48) * 2 + 1
    fit_idx, val_idx = validation_split(train_idx, 1 / 6, seed=3)
    assert len(val_idx) == 8 and len(fit_idx) == 40
    assert not set(fit_idx) & set(val_idx) and set(fit_idx) | set(val_idx) == set(train_idx)
    again = validation_split(train_idx, 1 / 6, seed=3)
    assert np.array_equal(again[1], val_idx)
    assert not np.array_equal(validation_split(train_idx, 1 / 6, seed=4)[1], val_idx)
    assert len(validation_split(np.arange(5), 0.01, 0)[1]) == 1  # at least one
    with pytest.raises(ValueError, match="at least 3"):
        validation_split(np.arange(2), 0.5, 0)


@pytest.mark.parametrize("model", ["nsnn", "cnn"])
def test_training_never_reads_the_test_images(model, natural_recording):
    """Poison the test images and their responses: training gives bit-identical weights."""
    torch.set_num_threads(1)
    config = make_config(model, **_tiny_settings(model))
    clean = prepare_data(config, natural_recording)
    poisoned = prepare_data(config, natural_recording)
    test = torch.as_tensor(poisoned.test_idx)
    poisoned.images[test] = float("nan")
    poisoned.counts[test] = 1e6
    assert not set(clean.test_idx) & set(clean.train_idx)
    assert set(clean.fit_idx) | set(clean.val_idx) == set(clean.train_idx)
    m1, h1 = train(config, clean, progress=False)
    m2, h2 = train(config, poisoned, progress=False)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(a, b), k
    assert h1 == h2
    assert any("val_rate_cc" in h for h in h1)


@pytest.fixture(scope="module")
def rf_run(tmp_path_factory):
    return fit("nsnn", out=tmp_path_factory.mktemp("runs") / "rf", progress=False, **TINY_RF)


def test_rf_fit_records_validation_rfs_and_ln(rf_run):
    d, m = rf_run.run_dir, rf_run.metrics
    hist = json.loads((d / "history.json").read_text())
    val = [h for h in hist if "val_rate_cc" in h and "epoch" in h]
    assert [h["epoch"] for h in val] == [1, 2, 3]
    best = max(val, key=lambda h: h["val_rate_cc"])
    assert m["best_epoch"] == best["epoch"] == hist[-1]["best_epoch"]
    assert m["val_rate_cc"] == pytest.approx(best["val_rate_cc"])
    assert m["n_validation_images"] == 8 and m["n_train_images"] == 48
    assert not set(m["validation_stimuli"]) & set(m["test_stimuli"])
    assert m["architecture"] == "rf" and m["rf_source"] == "stored"
    assert isinstance(m["rf_method"], str) and "contour" in m["rf_method"]
    rfs = json.loads((d / "receptive_fields.json").read_text())
    assert rfs["source"] == "stored" and len(rfs["centres"]) == 49
    assert -1 <= m["ln_rate_cc"] <= 1 and -1 <= m["ln_count_cc"] <= 1
    with h5py.File(d / "predictions.h5") as f:
        assert f["spikes"].shape == (12, 30, 4, 49) and f["rates"].shape == (12, 30, 49)
        rates, spikes = f["rates"][()], f["spikes"][()]
    # expected spikes per 10-ms bin: at most one per output substep
    substeps = json.loads((d / "config.json").read_text())["rf"]["output_substeps"]
    assert rates.min() >= 0 and rates.max() <= substeps and spikes.max() <= substeps
    assert "LN" in str(rf_run) and "validation rate CC" in str(rf_run)


def test_best_epoch_weights_are_the_result(rf_run):
    """The returned model is the best validation epoch's, not the last epoch's."""
    from neurocode.pipeline import load_run

    config, model, data = load_run(rf_run.run_dir)
    ckpt = torch.load(rf_run.run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["best"]["epoch"] == rf_run.metrics["best_epoch"]
    for k, v in ckpt["best"]["model"].items():
        assert torch.equal(model.state_dict()[k], v), k


def test_ln_fit_chooses_its_ridge_on_validation(tmp_path, capsys):
    rc = main(["fit", "--model", "ln", "--out", str(tmp_path / "ln"), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "ln" / "metrics.json").read_text())
    assert m["model"] == "ln" and m["ln_ridge"] in make_config("ln").ln_ridge
    assert m["rate_cc"] == m["ln_rate_cc"] and m["rate_cc"] > m["baseline_rate_cc"] + 0.1
    hist = json.loads((tmp_path / "ln" / "history.json").read_text())
    chosen = max(hist[:-1], key=lambda h: h["val_rate_cc"])
    assert hist[-1]["chosen_ridge"] == chosen["ridge"] == m["ln_ridge"]
    assert "LN" in out and "ridge" in out


def test_recording_without_rfs_estimates_them_from_training_images(natural_recording):
    config = make_config("nsnn", **{k: v for k, v in TINY_RF.items() if k != "preset"})
    data = prepare_data(config, _without_rfs(natural_recording))
    assert data.rfs.source == "estimated" and data.rfs.n_cells == 49


def test_recording_without_rfs_and_few_images_falls_back_and_says_so(natural_recording):
    config = make_config("nsnn", **{k: v for k, v in TINY_RF.items() if k != "preset"})
    small = _without_rfs(natural_recording, np.arange(15))
    with pytest.warns(UserWarning, match="too few"):
        data = prepare_data(config, small)
    assert data.rfs.source == "fallback"


def test_probability_loss_trains_on_the_same_samples(natural_recording):
    """loss_options {"probability": True} swaps the output spikes for their firing probabilities in the loss:
    same sampled network, different loss values, both finite and both learn."""
    torch.set_num_threads(1)
    kw = {k: v for k, v in TINY_RF.items() if k != "preset"}
    histories = {}
    for flag in (False, True):
        config = make_config("nsnn", **{**kw, "loss_options": {"probability": flag}})
        data = prepare_data(config, natural_recording)
        _, histories[flag] = train(config, data, progress=False)
    losses = {flag: [h["loss"] for h in h_ if "loss" in h] for flag, h_ in histories.items()}
    assert all(np.isfinite(v).all() for v in losses.values())
    assert losses[True] != losses[False]


def test_model_kinds_decide_losses_and_trials():
    from neurocode.fitting import MODEL_KINDS, MODELS, make_config

    assert set(MODELS) == set(MODEL_KINDS)
    for name, kind in MODEL_KINDS.items():
        config = make_config(name, "quick")
        assert config.kind is kind and config.loss == kind.default_loss and kind.default_loss in kind.losses
    assert MODEL_KINDS["nsnn"].trials(8) == 8 and MODEL_KINDS["dsnn"].trials(8) == 1
    with pytest.raises(ValueError, match="does not apply to model 'cnn'"):
        make_config("cnn", "quick", loss="mmd_linear")


def test_train_and_predict_go_through_the_model_kind_only(natural_recording, monkeypatch):
    """A kind's protocol is all train() and predict() use: a subclass that records its calls and
    scales the loss changes the fit, and train() holds no test of a model's name."""
    import inspect
    import re

    import neurocode.fitting as fitting
    from neurocode.kinds import MODEL_KINDS, CNNKind

    calls = []

    class Recorded(CNNKind):
        def build(self, *args, **kwargs):
            calls.append("build")
            return super().build(*args, **kwargs)

        def training_items(self, config, data):
            calls.append("training_items")
            items, per_step = super().training_items(config, data)
            return items, 2 * per_step

        def loss(self, *args):
            calls.append("loss")
            return 2 * super().loss(*args)

        def start(self, *args):
            calls.append("start")
            return super().start(*args)

        def respond(self, *args):
            calls.append("respond")
            return super().respond(*args)

    torch.set_num_threads(1)
    config = make_config("cnn", **_tiny_settings("cnn") | {"epochs": 1})
    data = prepare_data(config, natural_recording)
    _, plain = train(config, data, progress=False)
    monkeypatch.setitem(MODEL_KINDS, "cnn", Recorded(name="cnn"))
    assert isinstance(config.kind, Recorded)
    _, recorded = train(config, data, progress=False)
    steps = -(-len(data.fit_idx) // (2 * config.batch_images))
    assert calls[0] == "build" and set(calls[1:4]) == {"start", "training_items"}
    assert calls.count("loss") == steps
    assert calls.count("respond") == len(data.val_idx)  # the validation predictions
    assert recorded[-2]["loss"] != pytest.approx(plain[-2]["loss"])
    source = inspect.getsource(fitting.train)
    assert not re.search(r"""(model|kind\.name|loss)\s*[!=]=\s*["']""", source)


def test_run_folder_refuses_another_run_before_writing(tmp_path):
    from neurocode.fitting import make_config
    from neurocode.runs import RunFolder, RunFolderError

    config = make_config("nsnn", "quick", epochs=3)
    folder = RunFolder(tmp_path / "run")
    folder.check(config, resume=False, load_checkpoint=load_checkpoint)
    assert not folder.path.exists()  # checking writes nothing
    folder.write_config(config, neurocode_version="test")
    with pytest.raises(FileExistsError, match="already holds a run"):
        folder.check(config, resume=False, load_checkpoint=load_checkpoint)
    folder.check(make_config("nsnn", "quick", epochs=3, threads=2), resume=True, load_checkpoint=load_checkpoint)  # where it runs may change
    with pytest.raises(RunFolderError, match=r"epochs: stored 3, now 4"):
        folder.check(make_config("nsnn", "quick", epochs=4), resume=True, load_checkpoint=load_checkpoint)
    with pytest.raises(RunFolderError, match="holds a nsnn run, not dsnn"):
        folder.check(make_config("dsnn", "quick", epochs=3), resume=True, load_checkpoint=load_checkpoint)
    assert folder.read_config(FitConfig).to_dict() == config.to_dict()
