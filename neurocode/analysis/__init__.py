"""Neural-coding analyses: neo/elephant conversions, spike statistics, Fig. 4B coding
analysis, variability reproduction, held-out scores (of the mean and of the single-trial
distribution), spike-state perturbation and Lyapunov stability.

``import neurocode.analysis`` does not import torch: the spike-state perturbations of models
(:mod:`neurocode.analysis.perturbation`) are loaded on first use.

Arrays are time-major (``[T, trials, cells]``, ``[n_stimuli, T, trials, cells]``); times
are seconds at the neo boundary. Torch tensors are accepted wherever arrays are.
"""

from neurocode.analysis.coding import (
    CodingResult,
    VariabilityResult,
    coding_analysis,
    model_coding_analysis,
    per_cell_fano,
    recorded_coding_analysis,
    variability_reproduction,
)
from neurocode.analysis.conversion import (
    bin_spike_times,
    binned_counts,
    binned_spike_train,
    block_to_counts,
    spike_counts,
    spikes_to_block,
    spikes_to_spiketrains,
    spiketrains_to_counts,
    to_numpy,
)
from neurocode.analysis.distribution import (
    distribution_scores,
    fano_scores,
    gaussian_mmd2,
    model_single_trials,
    noise_correlation_scores,
    peak_fidelity,
    split_half_mmd2,
)
from neurocode.analysis.stability import lyapunov_bounds, sample_lyapunov_exponent
from neurocode.analysis.statistics import (
    MIN_CORRELATION_POINTS,
    count_cc_per_cell,
    fano_factor,
    instantaneous_rate,
    pearson,
    prediction_cosine_similarity,
    psth,
    rate_cc_per_cell,
    split_half_reliability,
)

__all__ = [
    "CodingResult", "VariabilityResult", "coding_analysis", "model_coding_analysis",
    "per_cell_fano", "recorded_coding_analysis", "variability_reproduction",
    "bin_spike_times", "binned_counts", "binned_spike_train", "block_to_counts",
    "spike_counts", "spikes_to_block", "spikes_to_spiketrains", "spiketrains_to_counts",
    "to_numpy", "SpikeFlip", "flip_spikes", "perturb_spikes", "lyapunov_bounds",
    "sample_lyapunov_exponent", "count_cc_per_cell", "fano_factor",
    "instantaneous_rate", "pearson", "prediction_cosine_similarity", "psth",
    "rate_cc_per_cell", "split_half_reliability", "MIN_CORRELATION_POINTS",
    "distribution_scores", "fano_scores", "gaussian_mmd2",
    "model_single_trials", "noise_correlation_scores", "peak_fidelity", "split_half_mmd2",
]

_LAZY = {"SpikeFlip", "flip_spikes", "perturb_spikes"}  # torch modules: imported on first use


def __getattr__(name):
    if name in _LAZY:
        from neurocode.analysis import perturbation

        return getattr(perturbation, name)
    raise AttributeError(f"module 'neurocode.analysis' has no attribute {name!r}")
