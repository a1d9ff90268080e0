"""Deterministic LIF neuron with a surrogate gradient (the DSNN neuron)."""

from __future__ import annotations

from torch import Tensor

from neurocode.neurons._base import LIFBase, check_sequence
from neurocode.neurons._kernels import caching_scope
from neurocode.neurons.functional import lif_sequence, lif_step
from neurocode.noise import ERF, Surrogate


class LIF(LIFBase):
    """Leaky integrate-and-fire neuron: Heaviside spikes, surrogate-gradient backward.

    ``ubar[t] = tau * u[t-1] + x[t]``, ``o[t] = 1[ubar[t] >= v_th]``,
    ``u[t] = ubar[t] * (1 - o[t])`` (or ``ubar[t] - v_th * o[t]``, ``reset="subtract"``); in the backward pass ``d o / d ubar`` is
    ``surrogate.grad(ubar - v_th)``. It is the noise-free limit of :class:`NoisyLIF` with
    the noise whose density the surrogate is (``surrogate.noise()``).

    Parameters
    ----------
    surrogate : Surrogate
        Default :class:`~neurocode.noise.ERF`: SG(x) = exp(-x^2) / sqrt(pi).
    tau : float
        Leak factor per time step, in (0, 1].
    v_th : float
        Firing threshold (dimensionless potential units).
    detach_reset : bool
        Exclude the reset from the gradient.
    reset : {"zero", "subtract"}
        After a spike the potential goes to 0 (default) or loses ``v_th``.
    stateful : bool
        Continue from the last call's final potential instead of starting at rest.

    Shape
    -----
    input : Tensor [T, B, ...] (time-major; any layer's output stacked over time)
    output : Tensor [T, B, ...] of {0, 1}, same dtype and device
    """

    def __init__(self, surrogate: Surrogate | None = None, tau: float = 0.5, v_th: float = 1.0,
                 detach_reset: bool = False, stateful: bool = False, reset: str = "zero"):
        super().__init__(tau, v_th, detach_reset, stateful, reset)
        self.surrogate = ERF() if surrogate is None else surrogate
        if not isinstance(self.surrogate, Surrogate):
            raise TypeError(f"surrogate must be a neurocode.noise.Surrogate, got {type(self.surrogate).__name__}")

    @caching_scope
    def forward(self, x: Tensor, state: Tensor | None = None, *, return_potential: bool = False,
                return_state: bool = False):
        """Run the whole sequence.

        Parameters
        ----------
        x : Tensor [T, B, ...]
            Input currents.
        state : Tensor [B, ...], optional
            Initial potential; default rest (0), or the kept state when ``stateful``.
        return_potential : bool
            Also return the pre-reset potentials ``ubar`` [T, B, ...].
        return_state : bool
            Also return the potential after the last step [B, ...].
        """
        check_sequence(x)
        spikes, ubar, u_last = lif_sequence(
            x, tau=self.tau, v_th=self.v_th, spike_grad=self.surrogate.grad,
            detach_reset=self.detach_reset, reset=self.reset, u0=self._initial_state(x, state),
            potential=return_potential,
            state=return_state or self.stateful,
        )
        return self._finish(spikes, ubar, u_last, return_potential, return_state)

    def step(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step for online use.

        Parameters
        ----------
        x : Tensor [B, ...]
            Input current of this step.
        state : Tensor [B, ...] or None
            Potential after the previous step (None: at rest).

        Returns
        -------
        spikes : Tensor [B, ...] of {0, 1}
        state : Tensor [B, ...]
            Pass it to the next call.
        """
        spikes, u, _ = lif_step(x, state, tau=self.tau, v_th=self.v_th, spike_grad=self.surrogate.grad,
                                detach_reset=self.detach_reset, reset=self.reset)
        return spikes, u

    def extra_repr(self) -> str:
        return f"surrogate={self.surrogate}, " + super().extra_repr()
