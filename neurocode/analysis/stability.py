r"""Sample Lyapunov exponent of the sub-threshold error dynamic (paper, Theorem 1).

The sub-threshold membrane dynamic is the Itô SDE (paper Eqs. 20-21)

.. math:: du = f(u, I)\,dt + g(u, I)\,dW, \qquad f(u, I) = a_1 u + B_1 I,

and the error :math:`\varepsilon = u_e - u` between two solutions driven by the *same*
Wiener process from perturbed initial states obeys
:math:`d\varepsilon = \Delta f\,dt + \Delta g\,dW` (Eqs. 22-23). Theorem 1 assumes
:math:`a_2\|\varepsilon\| \le \|\Delta g(\varepsilon)\|_F \le (a_2 + b_2)\|\varepsilon\|`
and bounds the sample Lyapunov exponent
:math:`\mathrm{LE} = \limsup_t \frac1t \log\|\varepsilon_t\|` by

.. math:: LB = a_1 - \tfrac12 a_2^2 - b_2^2 - 2 a_2 b_2 \le \mathrm{LE} \le
          UB = a_1 - \tfrac12 a_2^2 + \tfrac12 b_2^2 + a_2 b_2 .

Simulation model
----------------
We realise the assumption with diagonal noise (one Wiener process per dimension)

.. math:: g_i(u) = a_2 u_i + b_2 \tanh(u_i),

so :math:`\Delta g_i = a_2\varepsilon_i + b_2(\tanh(u_i+\varepsilon_i) - \tanh u_i)` lies
between :math:`a_2|\varepsilon_i|` and :math:`(a_2+b_2)|\varepsilon_i|` (tanh is monotone
and 1-Lipschitz). For ``b2 = 0`` every error component is a geometric Brownian motion
:math:`d\varepsilon = a_1\varepsilon\,dt + a_2\varepsilon\,dW`, whose exponent is exactly
:math:`a_1 - a_2^2/2` (= LB = UB).

Both paths are integrated with Euler–Maruyama using identical increments; to avoid
cancellation/underflow the perturbed path is renormalised to distance ``eps0`` every
``renorm_every`` steps and the log growth accumulated (Benettin's method).
"""

from __future__ import annotations

import numpy as np

__all__ = ["lyapunov_bounds", "sample_lyapunov_exponent"]


def lyapunov_bounds(a1: float, a2: float, b2: float = 0.0) -> tuple[float, float]:
    """Theorem 1 bounds ``(LB, UB)`` on the sample Lyapunov exponent.

    Parameters
    ----------
    a1 : float
        Linear drift coefficient (``-1/tau_m`` for a LIF neuron, 1/s).
    a2, b2 : float >= 0
        Noise coefficients (``a2 = sigma``, ``b2 = 0`` recovers the paper's noisy LIF).

    Returns
    -------
    (LB, UB) with ``LB = a1 - a2^2/2 - b2^2 - 2 a2 b2`` and ``UB = a1 - a2^2/2 + b2^2/2 + a2 b2``.
    """
    if a2 < 0 or b2 < 0:
        raise ValueError("a2 and b2 must be non-negative")
    lb = a1 - 0.5 * a2**2 - b2**2 - 2 * a2 * b2
    ub = a1 - 0.5 * a2**2 + 0.5 * b2**2 + a2 * b2
    return float(lb), float(ub)


def sample_lyapunov_exponent(a1: float, a2: float, b2: float = 0.0, *, dim: int = 1,
                             t_max: float = 50.0, dt: float = 1e-3, n_paths: int = 16,
                             eps0: float = 1e-6, input_current=None, B1=None, u0=None,
                             renorm_every: int = 10, seed: int | None = None,
                             return_paths: bool = False):
    """Estimate the sample Lyapunov exponent by Euler–Maruyama simulation.

    Parameters
    ----------
    a1, a2, b2 : float
        Coefficients of Theorem 1 (see module docstring for the noise model).
    dim : int
        Dimension of the membrane-potential vector ``u`` (independent noise per
        component). For ``dim > 1`` the finite-time estimate of ``log||eps_t||/t`` is
        biased upwards by ``O(a2 * sqrt(log dim / t))`` (the norm follows the luckiest
        component); the bias vanishes as ``t_max`` grows.
    t_max, dt : float
        Simulated time and step (same time unit as ``1/a1``).
    n_paths : int
        Independent sample paths (each a pair of solutions sharing Wiener increments).
    eps0 : float
        Norm of the initial perturbation ``||eps_0||`` (random direction).
    input_current : float or array ``[dim]``, optional
        Constant input ``I`` (default 0); enters the drift as ``B1 @ I``.
    B1 : array ``[dim, dim]``, optional
        Input matrix (default identity).
    u0 : float or array ``[dim]``, optional
        Initial state of the reference path (default standard normal draws).
    renorm_every : int
        Steps between renormalisations of the perturbation.
    seed : int, optional
    return_paths : bool
        Also return the per-path estimates.

    Returns
    -------
    float (and ``np.ndarray [n_paths]`` if ``return_paths``)
        ``mean over paths of (1/t) log(||eps_t|| / ||eps_0||)``.
    """
    rng = np.random.default_rng(seed)
    n_steps = int(round(t_max / dt))
    I = np.zeros(dim) if input_current is None else np.broadcast_to(np.asarray(input_current, float), (dim,))
    drive = I if B1 is None else np.asarray(B1, float) @ I
    u = rng.standard_normal((n_paths, dim)) if u0 is None else np.broadcast_to(
        np.asarray(u0, float), (n_paths, dim)).copy()
    d = rng.standard_normal((n_paths, dim))
    d *= eps0 / np.linalg.norm(d, axis=1, keepdims=True)
    ue = u + d
    log_growth = np.zeros(n_paths)
    sqdt = np.sqrt(dt)

    def step(x, dW):
        return x + (a1 * x + drive) * dt + (a2 * x + b2 * np.tanh(x)) * dW

    for n in range(1, n_steps + 1):
        dW = rng.standard_normal((n_paths, dim)) * sqdt
        u = step(u, dW)
        ue = step(ue, dW)
        if n % renorm_every == 0 or n == n_steps:
            e = ue - u
            norm = np.linalg.norm(e, axis=1)
            log_growth += np.log(norm / eps0)
            ue = u + e * (eps0 / norm)[:, None]
    per_path = log_growth / (n_steps * dt)
    le = float(per_path.mean())
    return (le, per_path) if return_paths else le
