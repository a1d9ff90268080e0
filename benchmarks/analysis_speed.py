"""Fast path vs elephant path on the full natural-image recording.

49 cells x 30 trials x 60 stimuli: whole-window Fano factor per (stimulus, cell),
prediction cosine similarity per stimulus and 10 ms PSTHs.

Run: ``OMP_NUM_THREADS=1 python benchmarks/analysis_speed.py``
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import quantities as pq

import neo
from elephant.statistics import fanofactor, time_histogram

from neurocode.analysis import bin_spike_times, fano_factor, prediction_cosine_similarity, psth
from neurocode.data import load_recording

BIN = 0.01
logging.getLogger("elephant").setLevel(logging.ERROR)  # bin-edge rounding notices


def main() -> None:
    rec = load_recording()
    st = rec.spike_times  # [stim][cell][trial], seconds
    S, C, K = len(st), len(st[0]), len(st[0][0])
    t0, t1 = rec.window

    # ---- fast path: spike times -> counts (vectorised binning) -> statistics
    t = time.perf_counter()
    counts = bin_spike_times(st, BIN, t0, t1)  # [T, S, C, K]
    counts = np.moveaxis(counts, 0, 1).transpose(0, 1, 3, 2)  # [S, T, K, C]
    t_bin = time.perf_counter() - t
    t = time.perf_counter()
    totals = counts.sum(axis=1)  # [S, K, C]
    ff = fano_factor(totals)  # [S, C]
    cos = prediction_cosine_similarity(totals)  # [S]
    rates = psth(counts, dt=BIN)  # [S, T, C] Hz
    t_stats = time.perf_counter() - t
    fast_total = t_bin + t_stats

    # ---- elephant path: neo SpikeTrains -> fanofactor / time_histogram per cell
    t = time.perf_counter()
    trains = [[[neo.SpikeTrain(st[s][c][k], units="s", t_start=t0, t_stop=t1) for k in range(K)]
               for c in range(C)] for s in range(S)]
    t_neo = time.perf_counter() - t
    t = time.perf_counter()
    ff_el = np.empty((S, C))
    rates_el = np.empty((S, counts.shape[1], C))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in range(S):
            for c in range(C):
                ff_el[s, c] = fanofactor(trains[s][c])
                h = time_histogram(trains[s][c], bin_size=BIN * pq.s, output="rate")
                rates_el[s, :, c] = h.rescale("Hz").magnitude[:, 0]
    t_el = time.perf_counter() - t

    # elephant counts spikes in [t_start, t_stop] for the FF (len(train)); the
    # fast path's whole-window totals drop spikes exactly at t_stop like BinnedSpikeTrain
    totals_len = np.array([[[len(st[s][c][k]) for c in range(C)] for k in range(K)] for s in range(S)])
    assert np.allclose(fano_factor(totals_len), ff_el, equal_nan=True)
    assert np.allclose(rates, rates_el)

    print(f"recording: {S} stimuli x {C} cells x {K} trials, PSTH bin {BIN * 1e3:.0f} ms")
    print(f"fast path : binning {t_bin * 1e3:8.1f} ms + FF/cosine/PSTH {t_stats * 1e3:6.1f} ms "
          f"= {fast_total * 1e3:8.1f} ms")
    print(f"elephant  : neo build {t_neo * 1e3:8.1f} ms + fanofactor/time_histogram {t_el * 1e3:8.1f} ms "
          f"= {(t_neo + t_el) * 1e3:8.1f} ms")
    print(f"ratio (elephant stats / fast total): {t_el / fast_total:.0f}x ; "
          f"incl. neo construction: {(t_neo + t_el) / fast_total:.0f}x")
    print(f"mean FF {np.nanmean(ff):.3f}, mean cosine {np.mean(cos):.3f}")


if __name__ == "__main__":
    main()
