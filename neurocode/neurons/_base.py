"""Shared plumbing of the LIF neuron modules (parameters, state, argument checks)."""

from __future__ import annotations

import math

from torch import Tensor, nn

from neurocode.neurons.functional import check_reset


def check_neuron_args(tau: float, v_th: float) -> tuple[float, float]:
    tau, v_th = float(tau), float(v_th)
    if not (0.0 < tau <= 1.0):
        raise ValueError(f"tau must be in (0, 1] (leak factor per step), got {tau!r}")
    if not math.isfinite(v_th) or v_th <= 0:
        raise ValueError(f"v_th must be a finite positive threshold, got {v_th!r}")
    return tau, v_th


def check_sequence(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor [T, B, ...], got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"input must be time-major [T, B, ...], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"input must be floating point, got {x.dtype}")


class LIFBase(nn.Module):
    """Common state handling: by default every multi-step call starts from rest.

    With ``stateful=True`` the potential after the last step is kept (detached) and the
    next call continues from it, until :meth:`reset_state`.
    """

    def __init__(self, tau: float, v_th: float, detach_reset: bool, stateful: bool, reset: str = "zero"):
        super().__init__()
        self.tau, self.v_th = check_neuron_args(tau, v_th)
        self.reset = check_reset(reset)
        self.detach_reset = bool(detach_reset)
        self.stateful = bool(stateful)
        self.state: Tensor | None = None

    def reset_state(self) -> None:
        self.state = None

    def _initial_state(self, x: Tensor, state: Tensor | None) -> Tensor | None:
        if state is not None:
            if state.shape != x.shape[1:]:
                raise ValueError(f"state shape {tuple(state.shape)} does not match input step shape {tuple(x.shape[1:])}")
            return state
        if self.stateful and self.state is not None and self.state.shape == x.shape[1:]:
            return self.state
        return None

    def _finish(self, spikes, ubar, u_last, return_potential: bool, return_state: bool):
        if self.stateful:
            self.state = u_last.detach()
        out = (spikes,)
        if return_potential:
            out += (ubar,)
        if return_state:
            out += (u_last,)
        return out[0] if len(out) == 1 else out

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_th={self.v_th}, detach_reset={self.detach_reset}" + (
            f", reset={self.reset!r}" if self.reset != "zero" else "")
