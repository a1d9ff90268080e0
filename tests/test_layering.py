"""One direction of imports and one binning rule / neo layout across the package."""

import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.parametrize("module", ["neurocode.analysis", "neurocode.analysis.scores", "neurocode.data",
                                    "neurocode.simulate"])
def test_analysis_data_and_simulate_do_not_import_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_torch_parts_of_analysis_load_on_first_use():
    import neurocode.analysis as analysis

    assert analysis.SpikeFlip.__module__ == "neurocode.analysis.perturbation"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        analysis.nope


@pytest.mark.parametrize("fast", [True, False])
def test_recording_binning_equals_its_neo_block_binned_by_analysis(fast):
    """Recording.binned and analysis (fast path and elephant) agree on the same spike trains."""
    from neurocode.analysis import block_to_counts
    from neurocode.data import load_recording

    rec = load_recording().subset([0, 7, 59])  # image 59 and 0 hold spikes at exactly t_stop
    assert (rec.spike_times_flat == rec.window[1]).any()
    counts = block_to_counts(rec.to_neo(), 0.01, fast=fast)
    np.testing.assert_array_equal(counts, rec.binned(0.01))

