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
