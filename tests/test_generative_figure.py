"""analyses/generative_figure.py on a tiny comparison folder: figures, the FF it draws, the table.

The folder holds 1-epoch fits of a tiny network on 16-px images (a few seconds each): NSNN, CNN
and the dispersion CNN on fold 0, seed 0, and NSNN on fold 1, seed 0 (a second split for the
table; the CNNs are absent there), plus an unfinished DSNN folder, which is left out.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurocode.analysis.distribution import fano_scores, model_single_trials
from neurocode.fitting import arch_name
from neurocode.pipeline import fit

ANALYSES = Path(__file__).resolve().parents[1] / "analyses"
TINY = dict(preset="quick", architecture="paper", epochs=1, input_size=16, eval_trials=8, threads=1)
# the paper networks' tiny sizes: each fit gets its own architecture's
TINY_ARCH = {"snn": {"channels": (2, 4), "kernel_sizes": (5, 3), "hidden": (8,)},
             "cnn": {"channels": (2, 4), "kernel_sizes": (5, 3)}}


def tiny(model: str) -> dict:
    name = arch_name(model, "paper")
    # the spiking fits' training trials (a rate model has no spiking settings)
    spiking = {"spiking": {"model_trials": 2}} if name == "snn" else {}
    return {**TINY, name: TINY_ARCH[name], **spiking}


SPLITS = (("nsnn", 0), ("cnn", 0), ("cnn_cmp", 0), ("nsnn", 1))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cmp")
    for model, fold in SPLITS:
        fit(model, out=out / "runs" / f"{model}-fold{fold}-seed0", fold=fold, progress=False, **tiny(model))
    (out / "runs" / "dsnn-fold0-seed0").mkdir()  # a fit that never finished
    return out


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(ANALYSES))
    try:
        import generative_figure
    finally:
        sys.path.remove(str(ANALYSES))
    return generative_figure


@pytest.fixture(scope="module")
def drawn(comparison, script):
    """The script's run on fold 0, seed 0: (stdout, the FF figure it drew)."""
    import contextlib
    import io

    from neurocode import plotting

    figures, original = [], plotting.plot_ff_panels

    def spy(*args, **kwargs):
        figures.append(original(*args, **kwargs))
        return figures[-1]

    out = io.StringIO()
    plotting.plot_ff_panels = spy
    try:
        with contextlib.redirect_stdout(out):
            assert script.main(["--out", str(comparison), "--fold", "0", "--seed", "0", "--threads", "1"]) == 0
    finally:
        plotting.plot_ff_panels = original
    return out.getvalue(), figures[0]


def _recorded_and_trials(run_dir: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Recorded test counts and the model's single trials of a run, read here without the script."""
    from neurocode.data import load_recording

    m = json.loads((run_dir / "metrics.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())
    with h5py.File(run_dir / "predictions.h5") as f:
        preds = f["spikes"][()] if m["distribution_sampling"] == "trials" else f["rates"][()]
        test = f["test_stimuli"][()]
    counts = load_recording().binned(cfg["bin_size"])[test]  # [n_test, T, R, cells], every test image has all trials
    trials = model_single_trials(preds, m["distribution_sampling"], n_trials=cfg["eval_trials"], seed=cfg["seed"])
    return counts, trials, m


def test_writes_the_figures_and_names_the_models_present(comparison, drawn):
    stdout, _ = drawn
    fig_dir = comparison / "figures"
    for name in ("generative_rasters_fold0_seed0.png", "generative_ff_fold0_seed0.png",
                 "generative_ff_fold0_seed0.csv", "generative_fold0_seed0.json", "distribution_distances.md"):
        assert (fig_dir / name).is_file() and (fig_dir / name).stat().st_size > 0, name
    summary = json.loads((fig_dir / "generative_fold0_seed0.json").read_text())
    # the split's finished runs only: no DSNN (unfinished)
    assert list(summary["models"]) == ["nsnn", "cnn", "cnn_cmp"]
    assert [summary["models"][m]["sampling"] for m in summary["models"]] == ["trials", "poisson", "trials"]
    assert {summary["models"][m]["trials"] for m in summary["models"]} == {TINY["eval_trials"]}
    assert "left out, not finished: dsnn-fold0-seed0" in stdout


def test_cells_and_images_follow_the_stated_rule(comparison, drawn):
    counts, _, m = _recorded_and_trials(comparison / "runs" / "nsnn-fold0-seed0")
    summary = json.loads((comparison / "figures" / "generative_fold0_seed0.json").read_text())
    peak = counts.mean(axis=2).max(axis=(0, 1))
    cells = summary["cells"]
    assert len(cells) == 3 and sorted(peak[cells[:2]]) == sorted(np.sort(peak)[-2:])
    others = np.setdiff1d(np.arange(peak.size), cells[:2])
    assert abs(peak[cells[2]] - np.median(peak)) == np.abs(peak[others] - np.median(peak)).min()
    assert len(summary["images"]) == 2 and set(summary["images"]) <= set(m["test_stimuli"])


def test_drawn_fano_factors_are_fano_scores_of_the_runs_trials(comparison, drawn):
    _, fig = drawn
    rows = list(csv.DictReader((comparison / "figures" / "generative_ff_fold0_seed0.csv").open()))
    by_model = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append([float(r["recorded_ff"] or "nan"), float(r["model_ff"] or "nan")])
    assert list(by_model) == ["nsnn", "cnn", "cnn_cmp"]
    for j, model in enumerate(by_model):
        counts, trials, m = _recorded_and_trials(comparison / "runs" / f"{model}-fold0-seed0")
        want = fano_scores(counts.sum(axis=1), trials.sum(axis=1))
        got = np.array(by_model[model])
        assert got.shape == (counts.shape[3], 2)
        np.testing.assert_allclose(got[:, 0], want["recorded_ff_active"], rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(got[:, 1], want["model_ff_active"], rtol=1e-12, equal_nan=True)
        # the same values the run was scored with (its metrics.json)
        stored = np.array(m["per_cell"]["model_ff_active"], dtype=float)
        np.testing.assert_allclose(got[:, 1], stored, rtol=1e-9, equal_nan=True)
        # the panel shows exactly the cells where both are defined, and the scores in its title
        ok = np.isfinite(got).all(axis=1)
        np.testing.assert_allclose(fig.axes[j].collections[0].get_offsets(), got[ok], rtol=1e-12)
        assert f"|ΔFF| {want['ff_abs_diff']:.2f}" in fig.axes[j].get_title()
        assert f"({want['ff_n_cells']} cells)" in fig.axes[j].get_title()


def test_table_is_mean_and_sd_over_the_folders_splits(comparison, drawn):
    stdout, _ = drawn
    metrics = {(m, f): json.loads((comparison / "runs" / f"{m}-fold{f}-seed0" / "metrics.json").read_text())
               for m, f in SPLITS}
    summary = json.loads((comparison / "figures" / "generative_fold0_seed0.json").read_text())
    rows = {r["model"]: r for r in summary["table"]}
    assert list(rows) == ["CNN", "CNN_CMP", "NSNN", "ceiling"]
    assert rows["NSNN"]["n_runs"] == 2 and rows["CNN"]["n_runs"] == 1 and rows["ceiling"]["n_runs"] == 2
    for key in ("mmd2", "mmd2_cell", "ff_abs_diff", "rate_cc", "count_cc", "peak_ratio"):
        v = [metrics[("nsnn", f)][key] for f in (0, 1)]
        assert rows["NSNN"][f"{key}_mean"] == pytest.approx(np.mean(v), rel=1e-12)
        assert rows["NSNN"][f"{key}_sd"] == pytest.approx(np.std(v, ddof=1), rel=1e-9)
        assert rows["CNN"][f"{key}_mean"] == pytest.approx(metrics[("cnn", 0)][key], rel=1e-12)
    floors = [metrics[("nsnn", f)]["mmd2_floor"] for f in (0, 1)]  # the recording's, per split
    assert rows["ceiling"]["mmd2_mean"] == pytest.approx(np.mean(floors), rel=1e-12)
    md = (comparison / "figures" / "distribution_distances.md").read_text()
    body = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[0] for line in body] == ["| CNN (Poisson)", "| CNN (CMP dispersion)", "| NSNN",
                                                       "| recording, split half"]
    nsnn = body[2].split(" | ")
    assert nsnn[1] == "2" and nsnn[4] == f"{np.mean([metrics[('nsnn', f)]['mmd2'] for f in (0, 1)]):.4f} ± " \
                                         f"{np.std([metrics[('nsnn', f)]['mmd2'] for f in (0, 1)], ddof=1):.4f}"
    assert md in stdout


def test_refuses_a_missing_split_and_a_non_test_image(comparison, script, capsys):
    with pytest.raises(SystemExit, match="--fold 3 --seed 0: no finished run of that split.*fold 0 seed 0"):
        script.main(["--out", str(comparison), "--fold", "3"])
    m = json.loads((comparison / "runs" / "nsnn-fold0-seed0" / "metrics.json").read_text())
    not_test = next(i for i in range(60) if i not in m["test_stimuli"])
    with pytest.raises(SystemExit, match=rf"--images \[{not_test}\]: not test images of this split"):
        script.main(["--out", str(comparison), "--images", str(not_test), "--fig-dir", str(comparison / "other")])
    with pytest.raises(SystemExit, match="no runs/ folder"):
        script.main(["--out", str(comparison / "runs")])


def test_refuses_runs_of_two_recordings(comparison, script, tmp_path):
    import shutil

    from neurocode.simulate import LNPoisson, flashes, simulate_flashes

    model = LNPoisson.random(6, (32, 32), seed=3)
    path = simulate_flashes(model, flashes(60, (32, 32), seed=4), n_trials=8, seed=5, name="other").save(
        tmp_path / "other.h5", "other")
    mixed = tmp_path / "mixed"
    shutil.copytree(comparison / "runs" / "nsnn-fold0-seed0", mixed / "runs" / "nsnn-fold0-seed0")
    fit("cnn", data=path, recording="other", out=mixed / "runs" / "cnn-fold0-seed0", progress=False,
        **tiny("cnn"))
    with pytest.raises(SystemExit, match="was fitted on recording .*, but .* on recording .*one recording") as err:
        script.main(["--out", str(mixed)])
    assert "'other'" in str(err.value) and "'natural_images'" in str(err.value)
    with pytest.raises(SystemExit, match=r"not on .*other.*\(--data/--recording\)"):
        script.main(["--out", str(comparison), "--data", str(path), "--recording", "other"])
    assert not (mixed / "figures").exists()


def test_a_split_without_the_cnns_draws_the_nsnn_alone(comparison, script, capsys):
    fig_dir = comparison / "fold1"
    assert script.main(["--out", str(comparison), "--fold", "1", "--fig-dir", str(fig_dir)]) == 0
    summary = json.loads((fig_dir / "generative_fold1_seed0.json").read_text())
    assert list(summary["models"]) == ["nsnn"]
    assert (fig_dir / "generative_rasters_fold1_seed0.png").is_file()
    # the table is over the folder's splits, whichever split is drawn
    assert [r["model"] for r in summary["table"]] == ["CNN", "CNN_CMP", "NSNN", "ceiling"]


def test_every_drawn_model_is_in_the_comparison_table(script):
    import retina_fit_comparison  # imported by generative_figure, from analyses/

    # the table is retina_fit_comparison.summarise: a model it does not know would be drawn, not tabulated
    assert set(script.MODELS) <= set(retina_fit_comparison.MODELS)
    assert set(script.LABELS) == set(script.COLORS) == set(script.MODELS)
