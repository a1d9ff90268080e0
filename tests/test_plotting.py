"""Figures render headless with the expected artists."""

import os

os.environ["MPLBACKEND"] = "Agg"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import EventCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from neurocode import plotting  # noqa: E402
from neurocode.analysis import coding_analysis  # noqa: E402


def _events(ax):
    return [c for c in ax.collections if isinstance(c, EventCollection)]


@pytest.fixture
def counts():
    return np.random.default_rng(0).poisson(0.2, size=(30, 12, 5))  # [T, trials, cells]


def test_cell_rasters(counts, tmp_path):
    path = tmp_path / "fig5c.png"
    fig = plotting.plot_cell_rasters({"recorded": counts, "CNN": counts, "DSNN": counts, "NSNN": counts},
                                     dt=0.01, cell=2, psth_bin=0.02, path=path)
    assert isinstance(fig, Figure) and path.exists() and path.stat().st_size > 0
    assert len(fig.axes) == 8
    for j in range(4):
        assert len(_events(fig.axes[j])) == 12  # one row per trial
        assert fig.axes[j].get_title() in {"recorded", "CNN", "DSNN", "NSNN"}
    # PSTH lines: 15 bins of 20 ms
    psth_lines = fig.axes[4].get_lines()
    assert len(psth_lines) == 1 and len(psth_lines[0].get_xdata()) == 15
    # raster rows carry the spikes of the cell
    n_spikes = sum(len(c.get_positions()) for c in _events(fig.axes[0]))
    assert n_spikes == counts[:, :, 2].sum()


def test_population_raster(counts, tmp_path):
    fig = plotting.plot_population_raster(counts[:, 0], dt=0.01, path=tmp_path / "pop.pdf")
    assert len(fig.axes) == 1 and len(_events(fig.axes[0])) == 5
    times = [np.array([0.01, 0.2]), np.array([]), np.array([0.15])]
    fig = plotting.plot_population_raster(times)
    assert len(_events(fig.axes[0])) == 3


def test_cc_bars():
    rng = np.random.default_rng(1)
    cc = {"CNN": rng.random(49), "DSNN": rng.random(49), "NSNN": rng.random(49)}
    fig = plotting.plot_cc_bars(cc, ceiling=rng.random(49))
    ax = fig.axes[0]
    assert len(fig.axes) == 1 and len(ax.patches) == 3
    fig = plotting.plot_cc_bars(cc, per_cell=True)
    assert len(fig.axes[0].patches) == 3 * 49


def test_ff_scatter_and_coding_scatter(tmp_path):
    rng = np.random.default_rng(2)
    fig = plotting.plot_ff_scatter(rng.random(49), {"DSNN": np.zeros(49), "NSNN": rng.random(49)})
    ax = fig.axes[0]
    offsets = [c.get_offsets() for c in ax.collections]
    assert len(offsets) == 2 and all(len(o) == 49 for o in offsets)
    res = coding_analysis(rng.poisson(2, size=(25, 8, 20)))
    fig = plotting.plot_coding_scatter(res, path=tmp_path / "fig4b.png")
    ax = fig.axes[0]
    assert len(ax.collections) == 1 and len(ax.collections[0].get_offsets()) == 25
    assert len(ax.get_lines()) == 1 and ax.get_lines()[0].get_linestyle() == ":"
    assert (tmp_path / "fig4b.png").exists()


def test_trial_comparison_draws_every_trial_and_psth():
    rng = np.random.default_rng(3)
    recorded = rng.poisson(0.4, size=(3, 30, 10, 5))  # [stimuli, T, trials, cells]
    recorded[1, 4, 0, 2] = 3  # a burst of 3 in one bin shows as 3 ticks inside that bin
    nsnn = rng.binomial(1, 0.2, size=(3, 30, 16, 5))
    dsnn = np.broadcast_to(rng.random((3, 30, 1, 5)), (3, 30, 16, 5))  # a population fraction, identical trials
    fig = plotting.plot_trial_comparison(recorded, {"NSNN": nsnn, "DSNN": dsnn}, cells=[2, 4], stimuli=[1, 0],
                                         dt=0.01, stimulus_labels=["image 7", "image 3"])
    axes = np.array(fig.axes).reshape(4, 4)  # rows: recorded, NSNN, DSNN, PSTH; columns: (cell, stimulus)
    columns = [(2, 1), (2, 0), (4, 1), (4, 0)]
    for j, (c, s) in enumerate(columns):
        rec_rows = _events(axes[0, j])
        assert len(rec_rows) == 10
        assert sum(len(e.get_positions()) for e in rec_rows) == recorded[s, :, :, c].sum()
        model_rows = _events(axes[1, j])
        assert len(model_rows) == 10  # as many model trials as recorded ones
        assert sum(len(e.get_positions()) for e in model_rows) == nsnn[s, :, :10, c].sum()
        assert len(axes[2, j].images) == 1 and not _events(axes[2, j])  # fractions as an image
        lines = axes[3, j].get_lines()
        np.testing.assert_allclose(lines[0].get_ydata(), recorded[s, :, :, c].mean(axis=1) / 0.01)
        np.testing.assert_allclose(lines[1].get_ydata(), nsnn[s, :, :, c].mean(axis=1) / 0.01)  # all 16 trials
        np.testing.assert_allclose(lines[2].get_ydata(), dsnn[s, :, 0, c] / 0.01)
    assert axes[0, 0].get_title() == "cell 2, image 7" and axes[0, 3].get_title() == "cell 4, image 3"
    burst = np.sort(_events(axes[0, 0])[0].get_positions())
    burst = burst[(burst >= 0.04) & (burst < 0.05)]
    assert len(burst) == 3 and len(np.unique(burst)) == 3
    with pytest.raises(ValueError, match=r"models\['NSNN'\] must be \[n_stimuli, T, trials, cells\]"):
        plotting.plot_trial_comparison(recorded, {"NSNN": nsnn[:, :20]}, cells=[0], stimuli=[0], dt=0.01)


def test_ff_panels_draw_the_counted_cells_with_their_scores(tmp_path):
    from neurocode.analysis.distribution import fano_scores

    rng = np.random.default_rng(4)
    recorded = rng.poisson(2.0, size=(6, 20, 8)).astype(float)  # [stimuli, trials, cells] window counts
    recorded[:, :, 0] = 0  # a silent cell: no counted pair, no point
    scores = {"Poisson": fano_scores(recorded, rng.poisson(2.0, size=(6, 40, 8))),
              "deterministic": fano_scores(recorded, np.full((6, 40, 8), 2.0))}
    fig = plotting.plot_ff_panels(scores, path=tmp_path / "ff.png")
    assert len(fig.axes) == 2 and (tmp_path / "ff.png").exists()
    for ax, s in zip(fig.axes, scores.values()):
        ok = np.isfinite(s["recorded_ff_active"]) & np.isfinite(s["model_ff_active"])
        assert ok.sum() == 7
        np.testing.assert_array_equal(ax.collections[0].get_offsets(),
                                      np.c_[s["recorded_ff_active"][ok], s["model_ff_active"][ok]])
        assert f"|ΔFF| {s['ff_abs_diff']:.2f}" in ax.get_title() and "(7 cells)" in ax.get_title()
        assert ax.get_lines()[0].get_linestyle() == ":"  # the identity line
    assert "r n/a" in fig.axes[1].get_title()  # a deterministic model's FFs are all 0: no correlation
    np.testing.assert_array_equal(scores["deterministic"]["model_ff_active"][1:], 0)
