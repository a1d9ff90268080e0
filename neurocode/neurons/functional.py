"""Leaky integrate-and-fire dynamics as pure functions over tensors (state in, state out).

Discrete LIF with hard reset to 0 (paper Eqs. 4-9; SPEC §2)::

    ubar[t] = tau * u[t-1] + x[t]                    pre-noise potential
    o[t]    = 1[ubar[t] + eps[t] >= v_th]            spike; P[o = 1] = F(ubar - v_th)
    u[t]    = w[t] * (1 - o[t])                      hard reset (``reset="zero"``)
    u[t]    = w[t] - v_th * o[t]                     reset by subtraction (``reset="subtract"``)

with ``w = ubar`` for *escape* noise (a fresh sample decides each firing and is not
remembered) and ``w = ubar + eps`` for *membrane* noise (the sample is added to the
potential and carried to the next step through ``tau``: the Euler-Maruyama reading of the
paper's Eq. 5-6). A deterministic LIF has ``eps = 0``.

Non-finite input: a NaN potential (or noise) is neither below nor above the threshold, so
its spike is NaN, and the neuron's state and every later spike of it stay NaN -- NaN
propagates as through any torch operation and is never read as a spike, on every path
(kernel, pure torch, ``lif_step``). ``+inf`` fires and then, reset by ``inf * 0``, is NaN;
``-inf`` never fires. Reset by subtraction keeps ``+inf`` at ``+inf`` (it fires at every step).

Reset by subtraction keeps the charge above the threshold: with ``tau`` near 1 the neuron is a
sigma-delta integrator whose spike count over a window follows the integrated input up to the
bounded residual potential, so its count is more regular (a lower Fano factor) than the hard
reset's, which forgets the excess at every spike.

Backward: the spike's derivative with respect to ``ubar`` is replaced by
``spike_grad(ubar - v_th)`` -- the noise density ``F'`` for noise-driven learning (NDL,
Eq. 19), a surrogate gradient for a deterministic SNN. The reset is differentiated too
unless ``detach_reset``.

:func:`lif_sequence` runs the whole time loop as one autograd node with a hand-written
backward recurrence: no per-step graph is built, each step costs two fused tensor ops
forward and one backward, and everything that does not depend on the recurrence (the
spike-gradient density, the reset factor) is computed over all steps at once. The reset's
derivative ``d u / d ubar`` is ``(1 - o) - w F'`` for the hard reset and ``1 - v_th F'`` for
reset by subtraction.

On CPU (float32/float64, built-in density) the same node is the torch operator
``neurocode::lif_forward`` of the fused C++ kernel (:mod:`neurocode.neurons._kernels`,
built on first use): threads over neurons, the time loop inside, one read of ``x`` and one
write of spikes/``ubar`` per step, and a one-pass backward that recomputes the density
in-register. Its forward outputs equal the torch path's bit for bit, its gradients up to
the rounding of exp/sigmoid. With :class:`SeededGaussian` thresholds the kernel also
draws the Gaussian escape noise itself, from the counter-based stream of
:mod:`neurocode.neurons.counter_rng` that the torch path materialises: the same seeds give
the same spikes on either path. Anything else (CUDA, other dtypes, user-defined
densities, reset by subtraction, no compiler) uses the pure-torch loop: ``backend=`` chooses
explicitly.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from neurocode.neurons._kernels import caching_scope
from neurocode.neurons.counter_rng import SeededGaussian

SpikeGrad = Callable[[Tensor], Tensor]

__all__ = ["lif_sequence", "lif_step", "heaviside_spike", "PLACEMENTS", "RESETS", "SeededGaussian"]

PLACEMENTS = ("escape", "membrane")
#: After a spike the potential goes to 0 ("zero") or loses the threshold ("subtract").
RESETS = ("zero", "subtract")


def check_reset(reset: str) -> str:
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    return reset


class _HeavisideSpike(torch.autograd.Function):
    """o = 1[ubar >= threshold]; d o / d ubar := spike_grad(ubar - v_th)."""

    @staticmethod
    def forward(ctx, ubar, threshold, v_th, spike_grad):
        ctx.save_for_backward(ubar)
        ctx.v_th = v_th
        ctx.spike_grad = spike_grad
        above = ubar >= threshold
        spikes = above.to(ubar.dtype)
        # NaN (neither below nor at/above the threshold) propagates; it never reads as a spike
        return spikes.masked_fill_(~(above | (ubar < threshold)), float("nan"))

    @staticmethod
    def backward(ctx, grad_spikes):
        (ubar,) = ctx.saved_tensors
        return grad_spikes * ctx.spike_grad(ubar - ctx.v_th), None, None, None


def heaviside_spike(ubar: Tensor, threshold: Tensor | float, v_th: float, spike_grad: SpikeGrad) -> Tensor:
    """Spikes ``1[ubar >= threshold]`` with gradient ``spike_grad(ubar - v_th)``.

    Parameters
    ----------
    ubar : Tensor [B, ...]
        Pre-noise membrane potential.
    threshold : Tensor [B, ...] or float
        Firing threshold the potential is compared with: ``v_th`` for a deterministic
        neuron, ``v_th - eps`` for a noisy one.
    v_th : float
        Nominal threshold at which the spike gradient is centred.
    spike_grad : callable
        Density used as the spike's derivative.
    """
    return _HeavisideSpike.apply(ubar, threshold, v_th, spike_grad)


def lif_step(
    x: Tensor,
    u: Tensor | None,
    *,
    tau: float,
    v_th: float,
    spike_grad: SpikeGrad,
    eps: Tensor | None = None,
    placement: str = "escape",
    detach_reset: bool = False,
    reset: str = "zero",
) -> tuple[Tensor, Tensor, Tensor]:
    """One LIF step, differentiable through ordinary autograd (for online use).

    Parameters
    ----------
    x : Tensor [B, ...]
        Input current at this step.
    u : Tensor [B, ...] or None
        Membrane potential after the previous step's reset; None means 0.
    tau : float
        Leak factor per step (0 < tau <= 1).
    v_th : float
        Firing threshold.
    spike_grad : callable
        Spike derivative (noise density or surrogate) as a function of ``ubar - v_th``.
    eps : Tensor [B, ...], optional
        Noise sample for this step; None for a deterministic neuron.
    placement : {"escape", "membrane"}
    detach_reset : bool
    reset : {"zero", "subtract"}
        After a spike the potential goes to 0 or loses ``v_th``.

    Returns
    -------
    spikes : Tensor [B, ...] of {0, 1}
    u_next : Tensor [B, ...]
        Potential after reset, the state for the next step.
    ubar : Tensor [B, ...]
        Pre-noise potential of this step.
    """
    ubar = x if u is None else torch.add(x, u, alpha=tau)
    threshold = v_th if eps is None else v_th - eps
    spikes = heaviside_spike(ubar, threshold, v_th, spike_grad)
    w = ubar + eps if (eps is not None and placement == "membrane") else ubar
    fired = spikes.detach() if detach_reset else spikes
    u_next = w - v_th * fired if check_reset(reset) == "subtract" else w * (1 - fired)
    return spikes, u_next, ubar


class _LIFSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, u0, threshold, eps, tau, v_th, spike_grad, detach_reset, subtract):
        # threshold: [T, ...] noisy thresholds v_th - eps (escape) or None (deterministic);
        # eps: [T, ...] noise carried in the potential (membrane) or None.
        T = x.shape[0]
        ubar = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        keep = torch.empty_like(ubar)  # 1 - o: neurons that did not fire and keep their potential
        if u0 is None:
            ubar[0].copy_(x[0])
        else:
            torch.add(x[0], u0, alpha=tau, out=ubar[0])
        w = ubar[0]
        for t in range(T):
            if eps is not None:
                w = ubar[t] + eps[t]
                torch.lt(w, v_th, out=keep[t])
            elif threshold is not None:
                w = ubar[t]
                torch.lt(w, threshold[t], out=keep[t])
            else:
                w = ubar[t]
                torch.lt(w, v_th, out=keep[t])
            if t + 1 < T:
                if subtract:  # u = w - v_th (1 - keep)
                    torch.add(x[t + 1], torch.add(w, keep[t] - 1.0, alpha=v_th), alpha=tau, out=ubar[t + 1])
                else:
                    torch.addcmul(x[t + 1], w, keep[t], value=tau, out=ubar[t + 1])
        u_last = w + v_th * (keep[T - 1] - 1.0) if subtract else w * keep[T - 1]
        spikes = keep.neg_().add_(1.0)
        undecided = ubar.isnan()  # NaN propagates as in the kernel: never a spike
        for noise in (threshold, eps):
            if noise is not None:
                undecided |= noise.isnan()
        if undecided.any():
            spikes.masked_fill_(undecided, float("nan"))
        ctx.save_for_backward(ubar, spikes, eps)
        ctx.set_materialize_grads(False)  # unused outputs: None, not [T, ...] zeros
        ctx.u0_given = u0 is not None
        ctx.tau, ctx.v_th, ctx.spike_grad, ctx.detach_reset = tau, v_th, spike_grad, detach_reset
        ctx.subtract = subtract
        return spikes, ubar, u_last

    @staticmethod
    @caching_scope
    def backward(ctx, grad_spikes, grad_ubar, grad_u_last):
        ubar, spikes, eps = ctx.saved_tensors
        tau = ctx.tau
        g = ctx.spike_grad(ubar - ctx.v_th)
        # d u[t] / d ubar[t] = keep - w * g, or 1 - v_th * g after reset by subtraction (the
        # reset term vanishes when detached)
        if ctx.subtract:
            dreset = torch.ones_like(ubar) if ctx.detach_reset else torch.add(1.0, g, alpha=-ctx.v_th)
        else:
            dreset = 1.0 - spikes
            if not ctx.detach_reset:
                w = ubar if eps is None else ubar + eps
                dreset.addcmul_(w, g, value=-1.0)
        # c[t] = dL/d ubar[t] = g * dL/do[t] + dL/dubar[t] (direct) + tau * c[t+1] * dreset[t]
        c = g.mul_(grad_spikes) if grad_spikes is not None else torch.zeros_like(ubar)
        if grad_ubar is not None:
            c.add_(grad_ubar)
        T = c.shape[0]
        if grad_u_last is not None:
            c[T - 1].addcmul_(grad_u_last, dreset[T - 1])
        for t in range(T - 2, -1, -1):
            c[t].addcmul_(c[t + 1], dreset[t], value=tau)
        grad_u0 = c[0] * tau if ctx.u0_given and ctx.needs_input_grad[1] else None
        return c, grad_u0, None, None, None, None, None, None, None


_KERNEL_DTYPES = (torch.float32, torch.float64)
BACKENDS = ("auto", "kernel", "torch")


def _kernel_spec(spike_grad: SpikeGrad):
    """(family id, (p0, p1, p2)) when ``spike_grad`` is a built-in density the kernel knows.

    ``spike_grad`` must be the bound ``pdf`` / ``grad`` of a built-in noise model or
    surrogate, defined in the same class as its ``_kernel_spec`` (a subclass overriding the
    density falls back to the torch path).
    """
    owner = getattr(spike_grad, "__self__", None)
    func = getattr(spike_grad, "__func__", None)
    if owner is None or func is None or func.__name__ not in ("pdf", "grad"):
        return None
    for klass in type(owner).__mro__:
        if "_kernel_spec" in vars(klass):
            if vars(klass).get(func.__name__) is not func:
                return None
            family, params = owner._kernel_spec()
            from neurocode.neurons._kernels import FAMILIES
            if family not in FAMILIES:
                return None
            return FAMILIES[family], tuple(float(p) for p in params)
    return None


def _kernel_or_reason(x, u0, threshold, eps, spike_grad):
    """(operators, spec) when the fused kernel can run this call, else (None, why not)."""
    if x.device.type != "cpu":
        return None, f"device {x.device.type} (the kernel is CPU only)"
    if x.dtype not in _KERNEL_DTYPES:
        return None, f"dtype {x.dtype} (the kernel handles float32/float64)"
    for name, t in (("u0", u0), ("threshold", threshold), ("eps", eps)):
        if isinstance(t, SeededGaussian):
            continue
        if t is not None and (t.device != x.device or t.dtype != x.dtype):
            return None, f"{name} has dtype/device {t.dtype}/{t.device}, x has {x.dtype}/{x.device}"
    spec = _kernel_spec(spike_grad)
    if spec is None:
        return None, f"spike_grad {spike_grad!r} is not a built-in density"
    from neurocode.neurons import _kernels
    ops = _kernels.get_library()
    if ops is None:
        return None, f"kernel unavailable ({_kernels.failure() or 'disabled by NEUROCODE_NO_KERNEL'})"
    return ops, spec


@caching_scope
def lif_sequence(
    x: Tensor,
    *,
    tau: float,
    v_th: float,
    spike_grad: SpikeGrad,
    eps: Tensor | None = None,
    placement: str = "escape",
    detach_reset: bool = False,
    u0: Tensor | None = None,
    threshold: Tensor | None = None,
    backend: str = "auto",
    potential: bool = True,
    state: bool = True,
    reset: str = "zero",
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Run LIF dynamics over a whole time-major sequence in one autograd node.

    Parameters
    ----------
    x : Tensor [T, B, ...]
        Input currents. May be an expanded view (stride 0 over T) for a static input;
        gradients are summed over T by autograd.
    tau : float
        Leak factor per step.
    v_th : float
        Firing threshold.
    spike_grad : callable
        Spike derivative as a function of ``ubar - v_th``: the noise density (NDL) or a
        surrogate gradient.
    eps : Tensor [T, B, ...], optional
        Noise samples, one per neuron per step; None for a deterministic LIF.
    placement : {"escape", "membrane"}
        Whether the noise only decides the firing (escape) or is also carried in the
        potential (membrane).
    detach_reset : bool
        Exclude the reset from the gradient.
    u0 : Tensor [B, ...], optional
        Initial potential (after reset); None means 0.
    threshold : Tensor [T, B, ...] or SeededGaussian, optional
        Escape noise given as per-step thresholds ``v_th - eps`` instead of ``eps``: a
        caller that draws ``v_th + eps'`` directly (the same law, the noise being
        symmetric) saves one pass over the sequence. A :class:`SeededGaussian` (T seeds)
        lets the kernel draw Gaussian thresholds in-register, saving the [T, ...] noise
        tensor altogether; the torch path materialises the same numbers first.
    backend : {"auto", "kernel", "torch"}
        ``"auto"`` runs the fused C++ kernel when it applies (CPU, float32/float64, a
        built-in noise density or surrogate as ``spike_grad``, kernel built) and the
        pure-torch loop otherwise; ``"kernel"`` requires the kernel (RuntimeError if it
        cannot run); ``"torch"`` forces the pure-torch loop. Both give the same spikes
        and potentials and the same gradients up to float rounding of the density.
    potential : bool
        Return ``ubar``. With False the kernel neither writes nor keeps the [T, ...]
        potentials (its backward pass recomputes them from ``x``), and ``ubar`` is None.
    state : bool
        Return ``u_last`` (None otherwise).
    reset : {"zero", "subtract"}
        After a spike the potential goes to 0 (the paper's hard reset) or loses ``v_th`` (the
        excess charge kept; pure-torch path only: ``backend="kernel"`` refuses it).

    Returns
    -------
    spikes : Tensor [T, B, ...] of {0, 1}, dtype of ``x``
    ubar : Tensor [T, B, ...] or None
        Pre-noise membrane potentials (None when ``potential`` is False).
    u_last : Tensor [B, ...] or None
        Potential after the last step's reset (the state to continue from; None when
        ``state`` is False).
    """
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be time-major [T, B, ...] with T >= 1, got shape {tuple(x.shape)}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    if eps is not None and eps.shape != x.shape:
        raise ValueError(f"eps shape {tuple(eps.shape)} does not match x shape {tuple(x.shape)}")
    membrane = None
    if threshold is not None:
        if eps is not None or placement != "escape":
            raise ValueError("threshold= is escape noise: give either eps or threshold, with placement='escape'")
        if isinstance(threshold, SeededGaussian):
            if threshold.seeds.shape != (x.shape[0],):
                raise ValueError(f"SeededGaussian needs {x.shape[0]} seeds, got {tuple(threshold.seeds.shape)}")
        elif threshold.shape != x.shape:
            raise ValueError(f"threshold shape {tuple(threshold.shape)} does not match x shape {tuple(x.shape)}")
    elif eps is not None:
        if placement == "membrane":
            membrane = eps
        else:
            # o = 1[ubar + eps >= v_th] = 1[ubar >= v_th - eps]
            threshold = torch.sub(v_th, eps)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    subtract = check_reset(reset) == "subtract"
    if subtract and backend == "kernel":
        raise RuntimeError("lif_sequence(backend='kernel') cannot run: the kernel implements reset='zero' only")
    if backend != "torch" and not subtract:
        ops, spec = _kernel_or_reason(x, u0, threshold, membrane, spike_grad)
        if ops is not None:
            family, (p0, p1, p2) = spec
            seeds = sigma = None
            if isinstance(threshold, SeededGaussian):
                if threshold.loc != v_th:
                    raise ValueError(f"SeededGaussian thresholds must be centred at v_th={v_th}, got {threshold.loc}")
                threshold, seeds, sigma = None, threshold.seeds.cpu(), threshold.sigma
            spikes, ubar, u_last, _ = ops.lif_forward(x, u0, threshold, membrane, seeds, float(tau), float(v_th),
                                                      float(sigma or 0.0), family, p0, p1, p2, bool(detach_reset),
                                                      bool(potential), bool(state))
            return spikes, (ubar if potential else None), (u_last if state else None)
        if backend == "kernel":
            raise RuntimeError(f"lif_sequence(backend='kernel') cannot run: {spec}")
    if isinstance(threshold, SeededGaussian):
        threshold = threshold.materialize(x.shape, x.dtype, x.device)
    spikes, ubar, u_last = _LIFSequence.apply(x, u0, threshold, membrane, float(tau), float(v_th), spike_grad,
                                              bool(detach_reset), subtract)
    return spikes, (ubar if potential else None), (u_last if state else None)
