"""``neurocode classify``: train and score a recognition network (registered by :mod:`neurocode.cli`).

::

    neurocode classify [--dataset digits|cifar10|cifar100|dvs-gesture|dvs-cifar10] [--model nsnn|dsnn]
                       [--arch NAME] [--method stbp|tdbn|tet] [--preset NAME] [--epochs N] [--timesteps T]
                       [--lr LR] [--batch-size B] [--noise-sigma S] [--seed S] [--data-dir DIR] [--download]
                       [--flip-betas B ...] [--fgsm-eps E ...] [--do-gammas G ...] [--drop-rhos R ...]
                       [--robust-repeats K] [--coding-samples N] [--coding-trials K]
                       [--out DIR] [--resume] [--device D] [--threads N] [--workers N] [--no-progress]
"""

from __future__ import annotations

import argparse

__all__ = ["add_classify_parser", "run_classify", "format_metrics"]

# The registries' keys, spelled out so that building the parser does not import torch
# (tests/test_recognition.py checks them against ARCHITECTURES, DATASETS and METHODS).
DATASETS = ("digits", "cifar10", "cifar100", "dvs-gesture", "dvs-cifar10")
ARCHITECTURES = ("cifarnet", "resnet18", "resnet19", "vggsnn", "7bnet", "digits")
METHODS = ("stbp", "tdbn", "tet")


def add_classify_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``classify`` subcommand to ``subparsers`` (the main parser's ``add_subparsers()``)."""
    c = subparsers.add_parser(
        "classify", help="train and score an NSNN/DSNN classifier (digits offline; CIFAR, DVS with downloads)",
        description="Train a recognition network (paper Tables 1-4) on a dataset, choose the epoch on a validation "
                    "split, and write test accuracy and loss, robustness curves (spike flips, FGSM, DO, EventDrop) "
                    "and the Fig. 4B coding analysis to a run folder. The default, the bundled scikit-learn digits, "
                    "runs offline in about a minute on one CPU thread.")
    c.add_argument("--dataset", choices=DATASETS, default="digits", help="dataset (default: digits)")
    c.add_argument("--model", choices=("nsnn", "dsnn"), default="nsnn",
                   help="noisy SNN (noise-driven learning) or deterministic SNN (ERF surrogate) (default: nsnn)")
    c.add_argument("--arch", choices=tuple(ARCHITECTURES), default=None,
                   help="architecture (default: digits for digits, cifarnet for CIFAR, vggsnn for DVS-CIFAR, 7bnet "
                        "for DVS-Gesture)")
    c.add_argument("--method", choices=tuple(METHODS), default="stbp", help="training method (default: stbp)")
    c.add_argument("--preset", default=None, metavar="NAME",
                   help="named settings, e.g. cifar10-stbp-cifarnet-nsnn-T2 (default: the Table 4 row of "
                        "dataset/method/arch/model, or 'digits')")
    c.add_argument("--epochs", type=int, default=None, metavar="N")
    c.add_argument("--timesteps", type=int, default=None, metavar="T", help="simulation time steps")
    c.add_argument("--lr", type=float, default=None, metavar="LR", help="initial learning rate (Adam, cosine)")
    c.add_argument("--batch-size", type=int, default=None, metavar="B")
    c.add_argument("--noise-sigma", type=float, default=None, metavar="S", help="NSNN membrane-noise SD")
    c.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    c.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where CIFAR / DVS data live (default: ~/.neurocode/data)")
    c.add_argument("--download", action="store_true", help="fetch a missing dataset (torchvision / tonic)")
    c.add_argument("--flip-betas", type=float, nargs="*", default=None, metavar="B",
                   help="spike-flip probabilities for the robustness curve")
    c.add_argument("--fgsm-eps", type=float, nargs="*", default=None, metavar="E", help="FGSM step sizes")
    c.add_argument("--do-gammas", type=float, nargs="*", default=None, metavar="G",
                   help="direct-optimisation perturbation L2 norms")
    c.add_argument("--drop-rhos", type=float, nargs="*", default=None, metavar="R",
                   help="EventDrop probabilities (event datasets)")
    c.add_argument("--robust-repeats", type=int, default=None, metavar="K",
                   help="evaluations per perturbation level (mean ± SD; default 3)")
    c.add_argument("--coding-samples", type=int, default=None, metavar="N",
                   help="test samples of the Fig. 4B coding analysis (0: skip)")
    c.add_argument("--coding-trials", type=int, default=None, metavar="K", help="noisy trials per sample")
    c.add_argument("--out", default=None, metavar="DIR",
                   help="run folder (default: runs/classify-{dataset}-{arch}-{method}-{model}-seed{S})")
    c.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (or re-score it)")
    c.add_argument("--device", default=None, metavar="D", help="cpu (default), cuda, cuda:1, auto")
    c.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    c.add_argument("--workers", type=int, default=None, metavar="N", help="data-loading worker processes")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    return c


_OVERRIDES = {"epochs": "epochs", "timesteps": "timesteps", "lr": "lr", "batch_size": "batch_size",
              "noise_sigma": "noise_sigma", "data_dir": "data_dir", "flip_betas": "flip_betas",
              "fgsm_eps": "fgsm_eps", "do_gammas": "do_gammas", "drop_rhos": "drop_rhos",
              "robust_repeats": "robust_repeats", "coding_samples": "coding_samples",
              "coding_trials": "coding_trials", "device": "device", "threads": "threads", "workers": "num_workers"}


def format_metrics(m: dict) -> str:
    """A short text summary of a classify run's metrics."""
    lines = [f"{m['model'].upper()} {m['arch']} ({m['method']}, T = {m['timesteps']}) on {m['dataset']}: "
             f"test accuracy {m['test_accuracy']:.4f}, test loss {m['test_loss']:.4f} (n = {m['n_test']}; best "
             f"validation epoch {m['best_epoch']}, {m['train_seconds']:.0f} s training)"]
    names = {"flip": "spike flips β", "fgsm": "FGSM ε", "do": "DO γ", "event_drop": "EventDrop ρ"}
    for kind, c in m.get("robustness", {}).items():
        pts = ", ".join(f"{lv:g}: {a:.3f}±{s:.3f}" for lv, a, s in zip(c["level"], c["accuracy_mean"],
                                                                         c["accuracy_sd"]))
        lines.append(f"  accuracy under {names[kind]} -> {pts}")
    if "coding" in m:
        c = m["coding"]
        lines.append(f"  Fig. 4B: mean Fano factor vs prediction cosine similarity, r = {c['r']:.3f}, "
                     f"p = {c['p']:.3g} (n = {c['n_valid']} test samples, {c['n_trials']} trials)")
    return "\n".join(lines)


def run_classify(args) -> int:
    """Run ``neurocode classify`` from parsed arguments; returns the exit status."""
    from pathlib import Path

    from neurocode.recognition.training import DEFAULT_ARCH, classify, make_config

    overrides = {}
    for attr, key in _OVERRIDES.items():
        v = getattr(args, attr)
        if v is not None:
            overrides[key] = tuple(v) if isinstance(v, list) else v
    if args.download:
        overrides["download"] = True
    config = make_config(args.dataset, args.model, args.method, args.arch, args.preset, seed=args.seed, **overrides)
    arch = args.arch or DEFAULT_ARCH[args.dataset]
    out = Path(args.out) if args.out else Path("runs") / f"classify-{args.dataset}-{arch}-{args.method}-{args.model}" \
                                                         f"-seed{args.seed}"
    try:
        result = classify(config=config, out=out, resume=args.resume, progress=not args.no_progress)
    except ImportError as exc:  # an optional dependency (torchvision, tonic, aedat) is missing
        raise ValueError(str(exc)) from None
    from neurocode._io import printable_lines

    print(printable_lines(format_metrics(result.metrics)))
    print(f"run folder: {result.run_dir}")
    return 0
