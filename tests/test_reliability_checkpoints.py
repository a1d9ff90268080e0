"""Checkpoints and training histories a user (or a damaged disk) changed: the shared checkpoint
code of retina fits and recognition runs (neurocode.checkpoints) refuses them with one line
naming the file (reliability issue 32, groups 4 and 5), and checkpoints written in the layout
before the run skeleton was shared (issue 30 item 4) still load."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from neurocode import cli
from neurocode.checkpoints import CheckpointError, restore_training
from neurocode.pipeline import RunFolderError, evaluate, fit, load_run
from test_pipeline import TINY


class Stop(Exception):
    pass


def _stop_after_first_epoch(epoch, record):
    if epoch == 1:
        raise Stop


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory) -> Path:
    """A TINY NSNN fit interrupted after its first of 3 epochs (checkpoint.pt holds epoch 1)."""
    out = tmp_path_factory.mktemp("runs") / "partial"
    with pytest.raises(Stop):
        fit("nsnn", out=out, progress=False, on_epoch=_stop_after_first_epoch, **TINY)
    return out


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "finished"
    fit("nsnn", out=out, progress=False, **TINY)
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _edit_checkpoint(path: Path, edit) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    edit(state)
    torch.save(state, path)


def _drop_first_weight(state):
    del state["model"][next(iter(state["model"]))]


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


# ---------------------------------------------------------------- a tensor missing (group 4)
def test_fit_resume_refuses_a_checkpoint_missing_one_weight(partial_run, tmp_path):
    run = _copy(partial_run, tmp_path)
    _edit_checkpoint(run / "checkpoint.pt", _drop_first_weight)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: incomplete checkpoint, the model weights lack "
                                              r".*\(1 of \d+ tensors\); refit with `neurocode fit") as exc:
        fit("nsnn", out=run, resume=True, progress=False, **TINY)
    _one_line(exc)


def test_fit_resume_refuses_a_checkpoint_missing_one_optimiser_tensor(partial_run, tmp_path):
    run = _copy(partial_run, tmp_path)
    _edit_checkpoint(run / "checkpoint.pt", lambda s: s["optimizer"]["state"][0].pop("exp_avg"))
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: incomplete checkpoint, the optimiser state"):
        fit("nsnn", out=run, resume=True, progress=False, **TINY)


def test_predict_refuses_a_checkpoint_missing_one_weight(finished_run, tmp_path, capsys):
    from neurocode.data import load_recording

    run = _copy(finished_run, tmp_path)
    _edit_checkpoint(run / "checkpoint.pt", _drop_first_weight)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: incomplete checkpoint") as exc:
        load_run(run)
    assert "refit" in _one_line(exc)
    np.save(tmp_path / "new.npy", load_recording().stimuli[:2])
    before = _files(run)
    assert cli.main(["predict", str(run), "--stimuli", str(tmp_path / "new.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint.pt: incomplete checkpoint" in err[0], err
    assert _files(run) == before


# ---------------------------------------------------------------- an edited epoch (group 5)
@pytest.mark.parametrize("epoch, expect", [
    (99, r"field 'epoch' is 99, expected an integer in 0\.\.3"),
    (-5, r"field 'epoch' is -5, expected an integer in 0\.\.3"),
    (2, r"field 'epoch' is 2, the epochs in its history are 1\.\.1"),
])
def test_fit_resume_refuses_an_edited_epoch_before_writing(partial_run, tmp_path, epoch, expect):
    run = _copy(partial_run, tmp_path)
    _edit_checkpoint(run / "checkpoint.pt", lambda s: s.update(epoch=epoch))
    before = _files(run)
    with pytest.raises(CheckpointError, match=expect):
        fit("nsnn", out=run, resume=True, progress=False, **TINY)
    assert _files(run) == before  # refused by the folder's checks, before anything was trained or written


@pytest.mark.parametrize("history", [[1, 2], [{"epoch": "one", "loss": 0.5}]])
def test_fit_resume_refuses_an_edited_history_in_the_checkpoint(partial_run, tmp_path, history):
    run = _copy(partial_run, tmp_path)
    _edit_checkpoint(run / "checkpoint.pt", lambda s: s.update(history=history))
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: field 'history': record 0"):
        fit("nsnn", out=run, resume=True, progress=False, **TINY)


# ---------------------------------------------------------------- a hand-edited history.json (group 4)
@pytest.mark.parametrize("history, expect", [
    ([1, 2], "record 0 is int, expected an object"),
    ([{"epoch": 1, "loss": [1]}], "record 0: field 'loss' is '[1]', expected a number"),
    ([{"epoch": "one", "loss": 0.5}], "record 0: field 'epoch' is 'one', expected an integer >= 0"),
])
def test_evaluate_refuses_a_hand_edited_history(finished_run, tmp_path, history, expect):
    run = _copy(finished_run, tmp_path)
    (run / "history.json").write_text(json.dumps(history))
    before = _files(run)
    with pytest.raises(RunFolderError, match=r"history\.json: invalid training history \(" + expect.replace(
            "[", r"\[").replace("]", r"\]")) as exc:
        evaluate(run)
    _one_line(exc)
    assert _files(run) == before


# ---------------------------------------------------------------- the fitted model is the chosen one
def test_load_run_gives_the_best_epochs_model_the_run_predicted_with(tmp_path, monkeypatch):
    """Validation scores falling after epoch 1 make epoch 1 the chosen model, not the last epoch's."""
    import neurocode.fitting as fitting

    scores, real = iter([0.9, 0.5, 0.1]), fitting._validation_rate_cc
    monkeypatch.setattr(fitting, "_validation_rate_cc",
                        lambda config, model, data: next(scores) if config.model == "nsnn" else real(config, model, data))
    result = fit("nsnn", out=tmp_path / "run", progress=False, **{**TINY, "val_every": 1})
    assert [h["best_epoch"] for h in result.history if "best_epoch" in h] == [1]
    state = fitting.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    config, model, data = load_run(tmp_path / "run")
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state["best"]["model"][name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(state["model"][k], state["best"]["model"][k]) for k in state["model"])
    with h5py.File(tmp_path / "run" / "predictions.h5") as f:
        saved = f["spikes"][()]
    np.testing.assert_array_equal(fitting.predict(config, model, data, data.test_idx, n_trials=saved.shape[2]), saved)


# ---------------------------------------------------------------- recognition runs share the checks
@pytest.fixture(scope="module")
def small_digits():
    from neurocode.recognition.data import load_digits_data

    data = load_digits_data()
    return dataclasses.replace(data, train=Subset(data.train, range(64)), val=Subset(data.val, range(32)))


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory, small_digits) -> tuple:
    from neurocode.recognition import make_config, train_classifier

    config = make_config("digits", "nsnn", epochs=2, batch_size=16, flip_betas=(), fgsm_eps=(), do_gammas=(),
                         coding_samples=0)
    path = tmp_path_factory.mktemp("classifier") / "checkpoint.pt"
    with pytest.raises(Stop):
        train_classifier(config, small_digits, path, progress=False, on_epoch=_stop_after_first_epoch)
    return config, path


@pytest.mark.parametrize("edit, expect", [
    (_drop_first_weight, r"incomplete checkpoint, the model weights lack"),
    (lambda s: s.update(epoch=99), r"field 'epoch' is 99, expected an integer in 0\.\.2"),
    (lambda s: s.update(epoch=-5), r"field 'epoch' is -5"),
    (lambda s: s["best"]["model"].pop(next(iter(s["best"]["model"]))), r"incomplete checkpoint"),
])
def test_classifier_resume_refuses_an_edited_checkpoint(classifier_checkpoint, small_digits, tmp_path, edit,
                                                        expect):
    from neurocode.recognition import train_classifier

    config, original = classifier_checkpoint
    path = tmp_path / "checkpoint.pt"
    shutil.copy(original, path)
    _edit_checkpoint(path, edit)
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt: .*" + expect) as exc:
        train_classifier(config, small_digits, path, resume=True, progress=False)
    assert "neurocode classify" in _one_line(exc)


# ---------------------------------------------------------------- the layout before the shared code
def _old_fit_layout(config, model, optimizer, scheduler, epoch, history, gens, best) -> dict:
    """fitting._checkpoint_state as it was before neurocode.checkpoints (commit c7dbc1d)."""
    return {"format": "neurocode-checkpoint", "version": 2, "model_kind": config.model, "config": config.to_dict(),
            "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": {n: g.get_state() for n, g in gens.items()},
            "history": history, "best": best}


def _old_classifier_layout(config, model, optimizer, scheduler, epoch, history, gens, best) -> dict:
    """recognition.training._save_checkpoint's dict before neurocode.checkpoints (commit c7dbc1d)."""
    return {"format": "neurocode-classifier-checkpoint", "version": 1, "config": config.to_dict(), "epoch": epoch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": {k: g.get_state() for k, g in gens.items()}, "torch_rng": torch.get_rng_state(),
            "history": history, "best": best}


def _trained_one_step(model):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
    loss = sum(p.square().sum() for p in model.parameters())
    loss.backward()
    optimizer.step()
    scheduler.step()
    return optimizer, scheduler


@pytest.mark.parametrize("kind", ["fit", "classifier"])
def test_a_checkpoint_in_the_layout_before_the_shared_code_resumes(kind, small_digits, tmp_path):
    if kind == "fit":
        import neurocode.fitting as fitting

        config = fitting.make_config("nsnn", **{k: v for k, v in TINY.items() if k != "preset"})
        build = lambda: fitting.build_model(config, n_cells=3, n_steps=30)  # noqa: E731
        layout, fmt, load = _old_fit_layout, fitting.FIT_CHECKPOINT, fitting.load_checkpoint
    else:
        from neurocode.recognition import make_config
        from neurocode.recognition.training import CLASSIFIER_CHECKPOINT, build_model, load_checkpoint

        config = make_config("digits", "nsnn", epochs=3)
        build = lambda: build_model(config, small_digits)  # noqa: E731
        layout, fmt, load = _old_classifier_layout, CLASSIFIER_CHECKPOINT, load_checkpoint
    torch.manual_seed(0)
    model = build()
    optimizer, scheduler = _trained_one_step(model)
    gens = {"noise": torch.Generator().manual_seed(5), "order": torch.Generator().manual_seed(6)}
    history = [{"epoch": 1, "loss": 0.5, "lr": 1e-3}]
    best = {"epoch": 1, "val_rate_cc": 0.3, "model": {k: v.clone() for k, v in model.state_dict().items()}}
    path = tmp_path / "checkpoint.pt"
    torch.save(layout(config, model, optimizer, scheduler, 1, history, gens, best), path)

    fresh = build()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    fresh_sched = torch.optim.lr_scheduler.CosineAnnealingLR(fresh_opt, T_max=4)
    fresh_gens = {"noise": torch.Generator(), "order": torch.Generator()}
    got = restore_training(path, load(path, config), fmt, fresh, fresh_opt, fresh_sched, fresh_gens)
    assert got[0] == history and got[1] == 1 and got[2]["epoch"] == 1
    for name, value in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert fresh_sched.last_epoch == 1 and fresh_opt.state_dict()["state"][0]["step"] == 1
    for name in gens:
        assert torch.equal(fresh_gens[name].get_state(), gens[name].get_state())
