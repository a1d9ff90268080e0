"""Neural-coding analyses: neo/elephant conversions, spike statistics, Fig. 4B coding
analysis, variability reproduction, spike-state perturbation and Lyapunov stability.

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
from neurocode.analysis.perturbation import SpikeFlip, flip_spikes, perturb_spikes
from neurocode.analysis.stability import lyapunov_bounds, sample_lyapunov_exponent
from neurocode.analysis.statistics import (
    count_cc_per_cell,
    fano_factor,
    fano_factor_elephant,
    instantaneous_rate,
    pearson,
    prediction_cosine_similarity,
    psth,
    psth_elephant,
    rate_cc_per_cell,
    split_half_reliability,
)

__all__ = [
    "CodingResult", "VariabilityResult", "coding_analysis", "model_coding_analysis",
    "per_cell_fano", "recorded_coding_analysis", "variability_reproduction",
    "bin_spike_times", "binned_counts", "binned_spike_train", "block_to_counts",
    "spike_counts", "spikes_to_block", "spikes_to_spiketrains", "spiketrains_to_counts",
    "to_numpy", "SpikeFlip", "flip_spikes", "perturb_spikes", "lyapunov_bounds",
    "sample_lyapunov_exponent", "count_cc_per_cell", "fano_factor", "fano_factor_elephant",
    "instantaneous_rate", "pearson", "prediction_cosine_similarity", "psth", "psth_elephant",
    "rate_cc_per_cell", "split_half_reliability",
]
