"""Evaluation and robustness of a classifier (paper Fig. 3, Tables 2-3).

* :func:`evaluate` -- accuracy and mean loss on a dataset, optionally under a perturbation.
* :func:`fgsm` -- Fast Gradient Sign Method (Eq. 26): ``x + eps * sign(grad_x loss)``.
* :func:`direct_optimization` -- DO (Eq. 25): a perturbation of L2 norm ``gamma`` per sample
  maximising the loss, zero-initialised and optimised by Adam (lr 0.002, 30 iterations), projected
  onto the ball of radius ``gamma`` after each step and put on its sphere at the end.
* Spike-state flips with probability ``beta`` in every spiking layer
  (:func:`neurocode.analysis.perturb_spikes`).
* EventDrop with probability ``rho`` on event frames (:func:`neurocode.recognition.data.drop_frame_events`).
* :func:`robustness_curves` -- accuracy and loss against each perturbation's strength, mean and
  SD over repeated evaluations (fresh membrane noise, flips and drops in each).

Attacks differentiate through the network the way it learns: noise-driven learning for an
NSNN, the surrogate gradient for a DSNN. Inputs are perturbed in the raw input space (the
model z-scores inside) and clamped to the data's valid range (pixels in [0, 1]).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from neurocode.neurons import LIF, NoisyLIF
from neurocode.recognition.layers import noise_source
from neurocode.recognition.methods import rate_loss

__all__ = ["evaluate", "fgsm", "direct_optimization", "robustness_curves", "model_input", "summarize"]


def model_input(x: Tensor, static: bool) -> Tensor:
    """A batch as the model takes it: static ``[B, C, H, W]`` as is, frames ``[B, T, ...] -> [T, B, ...]``."""
    return x if static else x.transpose(0, 1)


def _attack_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return rate_loss(model(x), y, reduction="sum")


def _clamp(x: Tensor, clamp: tuple | None) -> Tensor:
    return x if clamp is None else x.clamp(*clamp)


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, clamp: tuple | None = (0.0, 1.0),
         loss_fn: Callable | None = None) -> Tensor:
    """FGSM adversarial examples (Goodfellow et al. 2015; paper Eq. 26).

    Parameters
    ----------
    model : nn.Module
        Returns ``[T, B, K]`` scores.
    x : Tensor
        The model's input (``[B, C, H, W]`` or ``[T, B, C, H, W]``).
    y : Tensor [B]
    eps : float >= 0
        Step size in input units (pixels in [0, 1]).
    clamp : (low, high) or None
        Valid input range.
    loss_fn : callable, optional
        ``loss_fn(model, x, y) -> scalar``; default: cross-entropy of the time-averaged scores.

    Returns
    -------
    Tensor, same shape as ``x`` (detached)
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    if eps == 0:
        return x.detach()
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = (loss_fn or _attack_loss)(model, x, y)
        (grad,) = torch.autograd.grad(loss, x)
    return _clamp(x.detach() + eps * grad.sign(), clamp)


def _per_sample_norm(d: Tensor, batch_dim: int) -> Tensor:
    dims = [i for i in range(d.dim()) if i != batch_dim]
    shape = [1] * d.dim()
    shape[batch_dim] = -1
    return d.square().sum(dims).sqrt().view(shape)


def direct_optimization(model: nn.Module, x: Tensor, y: Tensor, gamma: float, steps: int = 30, lr: float = 0.002,
                        clamp: tuple | None = (0.0, 1.0), batch_dim: int = 0,
                        loss_fn: Callable | None = None) -> Tensor:
    """DO adversarial examples (paper Eq. 25): ``argmax_{||dx||_2 = gamma} loss(f(x + dx), y)`` per sample.

    ``dx`` starts at 0 and takes ``steps`` Adam ascent steps of learning rate ``lr`` (the paper's
    30 and 0.002); after each it is projected onto the ball ``||dx|| <= gamma``, and at the end
    scaled onto the sphere ``||dx|| = gamma`` (the constraint of Eq. 25, which the paper enforces
    with GeoTorch). Then the input is clamped to the valid range.

    Parameters
    ----------
    batch_dim : int
        Sample axis of ``x`` (0 for static ``[B, C, H, W]``, 1 for frames ``[T, B, ...]``).
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    if gamma == 0:
        return x.detach()
    x = x.detach()
    delta = torch.zeros_like(x, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr, maximize=True)
    with torch.enable_grad():
        for _ in range(int(steps)):
            opt.zero_grad(set_to_none=True)
            loss = (loss_fn or _attack_loss)(model, x + delta, y)
            loss.backward()
            opt.step()
            with torch.no_grad():
                norm = _per_sample_norm(delta, batch_dim)
                delta.mul_(torch.where(norm > gamma, gamma / norm.clamp(min=1e-12), torch.ones_like(norm)))
    with torch.no_grad():
        norm = _per_sample_norm(delta, batch_dim)
        delta = torch.where(norm > 0, delta * (gamma / norm.clamp(min=1e-12)), delta)
    return _clamp(x + delta, clamp)


def _loader(dataset: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)


def evaluate(model: nn.Module, dataset: Dataset, *, static: bool = True, batch_size: int = 256, device="cpu",
             seed: int = 0, perturb: Callable | None = None, beta: float = 0.0, limit: int | None = None,
             num_workers: int = 0) -> dict:
    """Accuracy and mean loss (cross-entropy of the time-averaged scores) on ``dataset``.

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode (batch-norm running statistics); an NSNN's noise stays on.
    dataset : Dataset of ``(x, label)``
    static : bool
        Static inputs or frames (``[T, C, H, W]`` items).
    seed : int
        Seeds the membrane noise, the flips and ``perturb``'s generator: the same seed gives the
        same result.
    perturb : callable, optional
        ``perturb(model, x, y, generator) -> x'`` applied to each model-input batch (an attack,
        EventDrop, ...).
    beta : float
        Spike-flip probability in every spiking layer (0: none).
    limit : int, optional
        Only the first ``limit`` samples.

    Returns
    -------
    dict with ``accuracy``, ``loss``, ``n``
    """
    from neurocode.analysis.perturbation import perturb_spikes

    device = torch.device(device)
    was_training = model.training
    model.eval()
    noise = torch.Generator(device=device).manual_seed(seed)
    other = torch.Generator().manual_seed(seed + 1)
    flips = torch.Generator(device=device).manual_seed(seed + 2)
    correct, total, loss_sum = 0, 0, 0.0
    try:
        with noise_source(model, noise), perturb_spikes(model, beta, (NoisyLIF, LIF), flips):
            for x, y in _loader(dataset, batch_size, num_workers):
                if limit is not None and total >= limit:
                    break
                if limit is not None and total + len(y) > limit:
                    x, y = x[: limit - total], y[: limit - total]
                x, y = model_input(x.to(device), static), y.to(device)
                if perturb is not None:
                    x = perturb(model, x, y, other)
                with torch.no_grad():
                    out = model(x)
                    loss_sum += float(rate_loss(out, y, reduction="sum"))
                    correct += int((out.mean(0).argmax(-1) == y).sum())
                total += len(y)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate: the dataset is empty")
    return {"accuracy": correct / total, "loss": loss_sum / total, "n": total}


def summarize(values: Iterable[float]) -> tuple[float, float]:
    """Mean and SD (ddof = 1; 0 for one value) of repeated results."""
    v = np.asarray(list(values), float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _curve(name: str, levels, run: Callable[[float, int], dict], repeats: int, seed: int, progress=None) -> dict:
    acc_m, acc_s, loss_m, loss_s, raw = [], [], [], [], []
    for level in levels:
        res = [run(float(level), seed + 1000 * r) for r in range(repeats)]
        a, sa = summarize(r["accuracy"] for r in res)
        lo, sl = summarize(r["loss"] for r in res)
        acc_m.append(a), acc_s.append(sa), loss_m.append(lo), loss_s.append(sl)
        raw.append([r["accuracy"] for r in res])
        if progress is not None:
            progress.update(1)
            progress.set_postfix({name: level, "acc": f"{a:.3f}"})
    return {"level": [float(v) for v in levels], "accuracy_mean": acc_m, "accuracy_sd": acc_s, "loss_mean": loss_m,
            "loss_sd": loss_s, "accuracy_runs": raw, "repeats": repeats}


def robustness_curves(model: nn.Module, dataset: Dataset, *, static: bool = True, flip_betas=(), fgsm_eps=(),
                      do_gammas=(), drop_rhos=(), repeats: int = 3, seed: int = 0, batch_size: int = 256,
                      device="cpu", clamp: tuple | None = (0.0, 1.0), limit: int | None = None,
                      progress: bool = False) -> dict:
    """Accuracy and loss against perturbation strength, mean ± SD over ``repeats`` evaluations.

    Parameters
    ----------
    flip_betas : sequence of float
        Spike-flip probabilities (every spiking layer).
    fgsm_eps : sequence of float
        FGSM step sizes (input units).
    do_gammas : sequence of float
        DO perturbation L2 norms per sample.
    drop_rhos : sequence of float
        EventDrop probabilities (event frames only).
    limit : int, optional
        Only the first ``limit`` samples of ``dataset`` (DO is costly).

    Returns
    -------
    dict
        ``{"flip": curve, "fgsm": curve, "do": curve, "event_drop": curve}`` for the requested
        ones; a curve is ``{"level", "accuracy_mean", "accuracy_sd", "loss_mean", "loss_sd",
        "accuracy_runs", "repeats"}``.
    """
    from neurocode.recognition.data import drop_frame_events

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    for name, levels, hi in (("flip_betas", flip_betas, 1.0), ("drop_rhos", drop_rhos, 1.0),
                             ("fgsm_eps", fgsm_eps, None), ("do_gammas", do_gammas, None)):
        for v in levels:
            if not np.isfinite(v) or v < 0 or (hi is not None and v > hi):
                raise ValueError(f"{name} must be in [0, {hi if hi is not None else 'inf'}), got {v!r}")
    if drop_rhos and static:
        raise ValueError("drop_rhos (EventDrop) applies to event data, not static images")
    common = dict(static=static, batch_size=batch_size, device=device, limit=limit)
    batch_dim = 0 if static else 1
    total = sum(len(v) for v in (flip_betas, fgsm_eps, do_gammas, drop_rhos))
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="robustness", disable=not progress)
    out = {}
    try:
        if len(flip_betas):
            out["flip"] = _curve("beta", flip_betas, lambda b, s: evaluate(model, dataset, seed=s, beta=b, **common),
                                 repeats, seed, bar)
        if len(fgsm_eps):
            out["fgsm"] = _curve("eps", fgsm_eps, lambda e, s: evaluate(
                model, dataset, seed=s, perturb=lambda m, x, y, g: fgsm(m, x, y, e, clamp), **common), repeats, seed,
                bar)
        if len(do_gammas):
            out["do"] = _curve("gamma", do_gammas, lambda e, s: evaluate(
                model, dataset, seed=s,
                perturb=lambda m, x, y, g: direct_optimization(m, x, y, e, clamp=clamp, batch_dim=batch_dim),
                **common), repeats, seed, bar)
        if len(drop_rhos):
            def dropped(rho):
                return lambda m, x, y, g: drop_frame_events(x.cpu(), rho, g).to(x.device)

            out["event_drop"] = _curve("rho", drop_rhos, lambda r, s: evaluate(
                model, dataset, seed=s, perturb=dropped(r), **common), repeats, seed, bar)
    finally:
        bar.close()
    return out
