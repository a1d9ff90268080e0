"""Theorem 1 bounds and the Euler-Maruyama sample Lyapunov exponent."""

import numpy as np
import pytest

from neurocode.analysis import lyapunov_bounds, sample_lyapunov_exponent


def test_bounds_formula():
    lb, ub = lyapunov_bounds(-1.0, 0.8, 0.3)
    assert lb == pytest.approx(-1.0 - 0.32 - 0.09 - 0.48)
    assert ub == pytest.approx(-1.0 - 0.32 + 0.045 + 0.24)
    assert lyapunov_bounds(-2.0, 0.0, 0.0) == (-2.0, -2.0)
    # additive-noise UB is below the noise-free LB = a1
    assert lyapunov_bounds(-1.0, 0.5)[1] < lyapunov_bounds(-1.0, 0.0)[0]
    with pytest.raises(ValueError):
        lyapunov_bounds(-1.0, -0.1)


def _check_within(a1, a2, b2, **kw):
    n_paths, t_max = 32, 50.0
    le, per = sample_lyapunov_exponent(a1, a2, b2, n_paths=n_paths, t_max=t_max, seed=0,
                                       return_paths=True, **kw)
    lb, ub = lyapunov_bounds(a1, a2, b2)
    # Monte Carlo error of the mean of per-path estimates (each ~ (a2 + b2) / sqrt(t))
    se = max(per.std(ddof=1) / np.sqrt(n_paths), (a2 + b2) / np.sqrt(t_max * n_paths))
    assert lb - 4 * se <= le <= ub + 4 * se, (le, lb, ub, se)
    return le, se


def test_geometric_brownian_motion_exact_exponent():
    a1, a2 = -1.0, 0.8
    le, se = _check_within(a1, a2, 0.0)
    assert le == pytest.approx(a1 - a2**2 / 2, abs=4 * se + 2e-3)


def test_estimate_within_bounds_with_multiplicative_term():
    _check_within(-1.0, 0.8, 0.3, input_current=1.0)
    _check_within(-0.5, 0.5, 0.5)


def test_noise_makes_exponent_more_negative():
    a1 = -1.0
    free = sample_lyapunov_exponent(a1, 0.0, 0.0, t_max=10.0, n_paths=4, seed=1)
    assert free == pytest.approx(a1, abs=2e-3)  # Euler-Maruyama bias O(dt)
    le, se = _check_within(a1, 0.8, 0.0)
    assert le < free - 4 * se
