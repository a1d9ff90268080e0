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


def test_import_neurocode_turns_on_huge_page_allocations_whatever_the_import_order():
    """torch reads THP_MEM_ALLOC_ENABLE once, at its first allocation (not at import): neurocode
    sets it whether it is imported before or after torch, and never overrides a user's choice."""
    import os

    code = "import {first}, os; import torch; torch.ones(1); print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}

    def run(first, **extra):
        out = subprocess.run([sys.executable, "-c", code.format(first=first)], env={**env, **extra},
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()

    assert run("neurocode") == "1"
    assert run("torch, neurocode") == "1"  # import torch allocates nothing: still in time
    assert run("neurocode", THP_MEM_ALLOC_ENABLE="0") == "0"
