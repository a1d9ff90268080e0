"""Shared fixtures: the bundled natural-image recording (always present in the project)."""

import neo
import numpy as np
import pytest

from neurocode.data import load_recording


@pytest.fixture(scope="session")
def natural_recording():
    return load_recording()


@pytest.fixture(scope="session")
def natural_spike_times(natural_recording):
    """``get(n_stimuli)`` -> spike times ``[stimulus][trial][cell]`` (s) of the first stimuli."""
    rec = natural_recording

    def get(n_stimuli):
        st = rec.spike_times  # [stimulus][cell][trial]
        return [[[np.asarray(st[s][c][k], float) for c in range(rec.n_cells)] for k in range(rec.n_trials)]
                for s in range(n_stimuli)]

    return get


@pytest.fixture(scope="session")
def recording_subset(natural_spike_times):
    """Spike times ``[stim][trial][cell]`` (s) and matching neo SpikeTrains, 4 stimuli."""
    times = natural_spike_times(4)
    trains = [[[neo.SpikeTrain(t, units="s", t_start=0.0, t_stop=0.3) for t in row] for row in stim]
              for stim in times]
    return times, trains
