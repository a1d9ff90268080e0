"""Conversions tensor/array <-> neo and binning fast path == elephant.BinnedSpikeTrain."""

import numpy as np
import pytest
import quantities as pq
import torch

import neo
from neurocode.analysis import (
    bin_spike_times,
    binned_counts,
    binned_spike_train,
    block_to_counts,
    spike_counts,
    spikes_to_block,
    spikes_to_spiketrains,
    spiketrains_to_counts,
)


pytestmark = pytest.mark.filterwarnings("ignore:Binning discarded:UserWarning")


def test_tensor_roundtrip_through_neo():
    g = torch.Generator().manual_seed(0)
    spikes = (torch.rand(25, 4, 6, generator=g) < 0.3).float()
    spikes[3, 1, 2] = 2.0  # counts > 1 become coincident spikes
    trains = spikes_to_spiketrains(spikes, dt=0.002, t_start=0.1)
    assert len(trains) == 4 and len(trains[0]) == 6
    st = trains[1][2]
    assert isinstance(st, neo.SpikeTrain)
    assert st.units == pq.s
    assert float(st.t_start) == pytest.approx(0.1) and float(st.t_stop) == pytest.approx(0.15)
    np.testing.assert_array_equal(spike_counts(trains), spikes.sum(0).numpy().astype(int))
    for fast in (True, False):
        back = spiketrains_to_counts(trains, 0.002, fast=fast)
        np.testing.assert_array_equal(back, spikes.numpy())


def test_block_roundtrip_layout():
    rng = np.random.default_rng(1)
    x = rng.poisson(0.2, size=(3, 10, 5, 4))  # [S, T, trials, cells]
    block = spikes_to_block(x, dt=0.01)
    assert len(block.segments) == 3 * 5
    seg = block.segments[6]
    assert seg.annotations == {"stimulus": 1, "trial": 1}
    assert seg.spiketrains[2].annotations["cell"] == 2
    for fast in (True, False):
        np.testing.assert_array_equal(block_to_counts(block, 0.01, fast=fast), x)
    np.testing.assert_array_equal(block_to_counts(block), x.sum(1))


def _random_times(rng, shape, t_stop):
    out = []
    for _ in range(shape[0]):
        row = []
        for _ in range(shape[1]):
            t = np.sort(rng.uniform(0, t_stop, rng.integers(0, 30)))
            row.append(t)
        out.append(row)
    # edge cases: exactly on bin edges, at t_stop, within tolerance below an edge
    out[0][0] = np.array([0.0, 0.01, 0.02 - 1e-12, 0.05, t_stop])
    return out


def test_bin_spike_times_equals_elephant_random():
    rng = np.random.default_rng(2)
    t_stop = 0.3
    times = _random_times(rng, (7, 5), t_stop)
    trains = [[neo.SpikeTrain(t, units="s", t_start=0.0, t_stop=t_stop) for t in row] for row in times]
    for bin_size in (0.01, 0.003, 0.025):
        ref = binned_counts(trains, bin_size)
        fast = bin_spike_times(times, bin_size, 0.0, t_stop)
        assert fast.shape == ref.shape == (ref.shape[0], 7, 5)
        np.testing.assert_array_equal(fast, ref)
    # BinnedSpikeTrain wrapper accepts floats as seconds
    bst = binned_spike_train(trains[0], 0.01)
    np.testing.assert_array_equal(bst.to_array().T, binned_counts(trains[0], 0.01))


def test_bin_spike_times_equals_elephant_real(recording_subset):
    times, trains = recording_subset
    for bin_size in (0.01, 0.005):
        ref = binned_counts(trains, bin_size, 0.0, 0.3)
        fast = bin_spike_times(times, bin_size, 0.0, 0.3)
        np.testing.assert_array_equal(fast, ref)


# --------------------------------------------------------------------------- real data

