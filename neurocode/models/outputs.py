"""Count outputs: the likelihood a rate network's output defines over each bin's spike count.

A rate network (the RF-aware CNN, the paper's CNN, the clip CNN) ends in a non-negative
intensity ``lam`` per (bin, cell) (its parameterised softplus). An *output* turns that intensity
into a distribution over the bin's count: its log-likelihood (the training loss), its mean
(the model's rate, used by rate CC and every mean score) and single-trial samples (its own
trials, scored like an NSNN's). :class:`CountOutputModel` composes a network with an output, so
the network's class stays as it is. A new output is one class and one line of ``OUTPUTS``.

:class:`PoissonOutput`
    ``k ~ Poisson(lam)``: mean lam, Fano factor 1 (the CNN as published).
:class:`CMPOutput`
    Conway-Maxwell-Poisson, ``P(k) = lam^k / (k!)^nu / Z(lam, nu)`` with a learnt
    ``nu > 0`` per cell: ``nu > 1`` under-dispersed (Fano factor < 1, as the retina's counts
    on flashes), ``nu = 1`` Poisson, ``nu < 1`` over-dispersed. ``Z`` is summed over
    ``k = 0..max_count``, a bound set from the recording's largest count per bin with margin
    (:func:`count_bound`), so the pmf, its moments and its samples are exact on that support.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["PoissonOutput", "CMPOutput", "CountOutputModel", "OUTPUTS", "count_bound"]


def count_bound(max_recorded: int) -> int:
    """The support ``0..K`` of a truncated count output: ``K = max(8, 2 × the largest recorded count per bin)``."""
    if int(max_recorded) < 0:
        raise ValueError(f"the largest recorded count per bin must be >= 0, got {max_recorded!r}")
    return max(8, 2 * int(max_recorded))


def _sample_from_log_pmf(log_pmf: Tensor, n_trials: int, generator: torch.Generator | None) -> Tensor:
    """``n_trials`` draws per entry of a pmf ``[..., K+1]`` over ``0..K`` by the inverse CDF: ``[n_trials, ...]``."""
    cdf = log_pmf.softmax(-1).cumsum(-1)
    u = torch.rand((n_trials, *cdf.shape[:-1], 1), generator=generator, device=cdf.device, dtype=cdf.dtype)
    # the last entry of the cdf is 1 up to rounding: the count never exceeds K
    return (cdf[..., :-1] < u).sum(-1).to(cdf.dtype)


class PoissonOutput(nn.Module):
    """``k ~ Poisson(lam)`` per (bin, cell); no parameters."""

    def __init__(self, n_cells: int):
        super().__init__()
        self.n_cells = int(n_cells)

    def log_prob(self, lam: Tensor, counts: Tensor) -> Tensor:
        """``log P(counts | lam)``, elementwise (broadcast), nats."""
        lam = lam.clamp(min=1e-8)
        return counts * lam.log() - lam - torch.lgamma(counts + 1)

    def mean(self, lam: Tensor) -> Tensor:
        return lam

    def variance(self, lam: Tensor) -> Tensor:
        return lam

    def sample(self, lam: Tensor, n_trials: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n_trials, *lam.shape]`` counts."""
        return torch.poisson(lam.clamp(min=0).expand(n_trials, *lam.shape), generator=generator)


class CMPOutput(nn.Module):
    """Conway-Maxwell-Poisson counts with a learnt dispersion ``nu`` per cell (module docstring).

    Parameters
    ----------
    n_cells : int
        Cells N (the last axis of ``lam``); ``nu = exp(log_nu)`` per cell, started at 1 (Poisson).
    max_count : int
        The support's bound K (a buffer: set from the training data before a fit, restored
        with the weights).

    Shapes
    ------
    lam : [..., N] >= 0; counts broadcast against it; outputs as lam (``sample``: ``[K_trials, ...]``).
    """

    def __init__(self, n_cells: int, max_count: int = 8):
        super().__init__()
        if int(n_cells) < 1:
            raise ValueError(f"n_cells must be >= 1, got {n_cells!r}")
        self.nu_parameter = nn.Parameter(torch.zeros(int(n_cells)))
        self.register_buffer("max_count", torch.tensor(int(max_count)))

    #: ``log nu = LOG_NU_SCALE × nu_parameter``. Adam moves a parameter by about its learning rate
    #: per step whatever the gradient's size, so at the CNN's lr (3e-3, cosine-decayed over ~500
    #: steps) log nu could move ~0.8 at most, short of its maximum-likelihood values (up to ~2).
    LOG_NU_SCALE = 10.0

    @property
    def log_nu(self) -> Tensor:
        return self.LOG_NU_SCALE * self.nu_parameter

    @property
    def nu(self) -> Tensor:
        """``[N]`` the dispersion: > 1 under-dispersed, 1 Poisson, < 1 over-dispersed."""
        return self.log_nu.exp()

    @torch.no_grad()
    def set_nu(self, nu: Tensor) -> None:
        self.nu_parameter.copy_(torch.as_tensor(nu, dtype=self.nu_parameter.dtype).log() / self.LOG_NU_SCALE)

    def set_max_count(self, max_count: int) -> None:
        if int(max_count) < 1:
            raise ValueError(f"max_count must be >= 1, got {max_count!r}")
        self.max_count.fill_(int(max_count))

    def _support(self, lam: Tensor) -> Tensor:
        return torch.arange(int(self.max_count) + 1, device=lam.device, dtype=lam.dtype)

    @staticmethod
    def _unnormalised(lam: Tensor, counts: Tensor, nu: Tensor) -> Tensor:
        """``k log lam - nu log k!``, broadcast."""
        # lam at 0 (a silent softplus) is floored so that the log stays finite
        return counts * lam.clamp(min=1e-8).log() - nu * torch.lgamma(counts + 1)

    def log_pmf(self, lam: Tensor) -> Tensor:
        """``[..., N, K+1]``: ``log P(k | lam, nu)`` for ``k = 0..K``."""
        terms = self._unnormalised(lam[..., None], self._support(lam), self.nu[:, None])
        return terms - terms.logsumexp(-1, keepdim=True)

    def log_prob(self, lam: Tensor, counts: Tensor) -> Tensor:
        """``log P(counts | lam, nu)``, elementwise, nats (counts above K lie outside the support:
        their value is the formula's, not a probability)."""
        log_z = self._unnormalised(lam[..., None], self._support(lam), self.nu[:, None]).logsumexp(-1)
        return self._unnormalised(lam, counts, self.nu) - log_z

    def mean(self, lam: Tensor) -> Tensor:
        """``E[k]`` on the support, the model's rate (expected spikes per bin)."""
        return (self.log_pmf(lam).exp() * self._support(lam)).sum(-1)

    def variance(self, lam: Tensor) -> Tensor:
        k = self._support(lam)
        p = self.log_pmf(lam).exp()
        return (p * k.square()).sum(-1) - (p * k).sum(-1).square()

    def sample(self, lam: Tensor, n_trials: int, generator: torch.Generator | None = None) -> Tensor:
        """``[n_trials, *lam.shape]`` counts in ``0..K``."""
        return _sample_from_log_pmf(self.log_pmf(lam), n_trials, generator)


#: The count outputs by name; a new one is a class with ``log_prob``, ``mean``, ``variance``, ``sample``.
OUTPUTS: dict[str, type[nn.Module]] = {"poisson": PoissonOutput, "cmp": CMPOutput}


class CountOutputModel(nn.Module):
    """A rate network composed with a count output: ``lam = net(x)`` ``[T, B, N]``, counts ~ output(lam).

    Parameters
    ----------
    net : nn.Module
        Any network whose forward gives non-negative intensities ``[T, B, N]`` (its parameterised
        softplus output); kept as it is, under ``net``.
    output : nn.Module
        One of :data:`OUTPUTS`.
    generator : torch.Generator, optional
        Source of :meth:`sample`'s draws (set per prediction, as the NSNN's noise generator is).

    Shape
    -----
    forward: as ``net``'s input; output ``[T, B, N]`` expected counts per bin, ``E[k]``.
    """

    def __init__(self, net: nn.Module, output: nn.Module, generator: torch.Generator | None = None):
        super().__init__()
        self.net = net
        self.output = output
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        return self.output.mean(self.net(x))

    def log_prob(self, x: Tensor, counts: Tensor) -> Tensor:
        """``log P(counts)`` for counts ``[T, R, B, N]`` (R trials of each stimulus), elementwise."""
        return self.output.log_prob(self.net(x)[:, None], counts)

    def sample(self, x: Tensor, n_trials: int) -> tuple[Tensor, Tensor]:
        """``(counts [T, K, B, N], E[k] [T, B, N])``: K single trials drawn from the model's own likelihood."""
        lam = self.net(x)
        return self.output.sample(lam, n_trials, self.generator).transpose(0, 1), self.output.mean(lam)
