#!/usr/bin/env python
"""The paper's recognition tables and figures: Table 1 (accuracy), Fig. 3 / Tables 2-3 (robustness),
Fig. 4B (coding), Fig. 8 (learning curves), Fig. 9 (noise level) -- NSNN vs DSNN over seeds.

Every Table 4 setting of the chosen datasets is trained as a DSNN and an NSNN for each seed
(``neurocode.recognition.classify``, one run folder each under ``OUT/runs/``; finished runs are
reused, interrupted ones resumed), then scored on the test set: accuracy and loss, spike flips
(β), FGSM (ε) and DO (γ) for CIFAR, EventDrop (ρ) and flips for the DVS sets, and Fig. 4B for
the NSNN (500 test samples; 200 for DVS-Gesture). CIFAR and the DVS sets need the downloads
(``--data-dir``, ``--download``) and a GPU (``--device cuda``): the paper's settings train for
hours per run. ``--datasets digits`` (the default with ``--quick``) runs on a CPU.

Writes into ``OUT`` (default ``results/recognition_tables``):

    table1.csv                dataset, arch, method, model, T, runs, test accuracy mean/SD, loss mean/SD
    robustness.csv            ... perturbation, level, accuracy mean/SD, loss mean/SD over seeds
    coding.csv                per NSNN run: Fig. 4B r, p, n
    noise_level.csv           (with --sigmas) accuracy vs sigma, mean/SD over seeds
    summary.json              all of it
    learning_curves_*.png, robustness_*.png, noise_level.png

Examples::

    python analyses/recognition_tables.py --quick                              # digits, 2 epochs, CPU
    python analyses/recognition_tables.py --datasets digits --seeds 0 1 2 --sigmas 0.1 0.2 0.3 0.5 0.8
    python analyses/recognition_tables.py --datasets cifar10 --device cuda --data-dir ~/data --download
    python analyses/recognition_tables.py --datasets dvs-cifar10 dvs-gesture --device cuda --data-dir ~/data
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np


def settings(datasets, timesteps_filter=None):
    """Table 4's (dataset, method, arch, T) combinations, each trained as DSNN and NSNN."""
    from neurocode.recognition import PRESETS

    out = []
    for p in PRESETS.values():
        if p.dataset not in datasets or p.model != "nsnn":
            continue
        if timesteps_filter and p.timesteps not in timesteps_filter:
            continue
        out.append((p.dataset, p.method, p.arch, p.timesteps))
    return sorted(set(out))


def run_one(out: Path, dataset, method, arch, T, model, seed, args, overrides) -> dict:
    from neurocode.recognition import classify

    name = f"{dataset}-{arch}-{method}-{model}-T{T}-seed{seed}" + overrides.pop("_suffix", "")
    run_dir = out / "runs" / name
    if (run_dir / "metrics.json").exists():
        print(f"[skip] {name}: finished earlier", flush=True)
        return json.loads((run_dir / "metrics.json").read_text()) | {"history": _history(run_dir)}
    resume = (run_dir / "config.json").exists()
    print(f"[{'resume' if resume else 'train'}] {name}", flush=True)
    kw = dict(seed=seed, device=args.device, threads=args.threads, data_dir=args.data_dir, download=args.download,
              num_workers=args.workers)
    if dataset != "digits":
        kw["timesteps"] = T
        kw["coding_samples"] = 200 if dataset == "dvs-gesture" else 500
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    if args.quick:
        kw.update(epochs=args.epochs or 2, robust_repeats=1, do_gammas=(0.0, 0.5), coding_samples=100)
    kw.update(overrides)
    res = classify(dataset, model, method, arch, out=run_dir, resume=resume, progress=not args.no_progress, **kw)
    return res.metrics | {"history": res.history}


def _history(run_dir: Path) -> list:
    p = run_dir / "history.json"
    return json.loads(p.read_text()) if p.exists() else []


def _ms(values):
    v = np.asarray(values, float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else 0.0)


def _csv(path: Path, rows: list[dict]) -> None:
    from neurocode._io import write_text

    if not rows:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    write_text(path, buf.getvalue())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="digits, 2 epochs, one seed, light robustness (CPU, minutes)")
    p.add_argument("--datasets", nargs="+", default=None,
                   help="digits, cifar10, cifar100, dvs-cifar10, dvs-gesture (default: digits)")
    p.add_argument("--timesteps", type=int, nargs="*", default=None, help="only these T of Table 4 (e.g. 2)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2; quick 0)")
    p.add_argument("--epochs", type=int, default=None, help="override every preset's epochs")
    p.add_argument("--sigmas", type=float, nargs="*", default=None,
                   help="Fig. 9: also train the first setting's NSNN at these noise SDs")
    p.add_argument("--device", default="auto", help="cpu, cuda, auto (default)")
    p.add_argument("--data-dir", default=None, help="CIFAR / DVS data folder")
    p.add_argument("--download", action="store_true", help="fetch missing datasets")
    p.add_argument("--workers", type=int, default=0, help="data-loading workers")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("results/recognition_tables"), help="results folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    import torch

    from neurocode._io import write_json
    from neurocode.plotting import save_figure
    from neurocode.recognition import plot_learning_curves, plot_noise_level, plot_robustness

    if args.threads:
        torch.set_num_threads(args.threads)
    datasets = args.datasets or ["digits"]
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    combos = [("digits", "stbp", "digits", 4)] if datasets == ["digits"] else settings(datasets, args.timesteps)
    if "digits" in datasets and len(datasets) > 1:
        combos = [("digits", "stbp", "digits", 4)] + combos
    if not combos:
        print(f"error: no Table 4 setting for {datasets}", file=sys.stderr)
        return 2
    out = args.out
    table, robust, coding, summary = [], [], [], {"settings": []}
    for dataset, method, arch, T in combos:
        curves_by_model, histories = {}, {}
        for model in ("dsnn", "nsnn"):
            runs = [run_one(out, dataset, method, arch, T, model, s, args, {}) for s in seeds]
            acc, acc_sd = _ms([r["test_accuracy"] for r in runs])
            loss, loss_sd = _ms([r["test_loss"] for r in runs])
            table.append({"dataset": dataset, "arch": arch, "method": method, "model": model.upper(), "T": T,
                          "runs": len(runs), "accuracy_mean": acc, "accuracy_sd": acc_sd, "loss_mean": loss,
                          "loss_sd": loss_sd})
            merged = {}
            for kind in runs[0].get("robustness", {}):
                levels = runs[0]["robustness"][kind]["level"]
                a = np.array([r["robustness"][kind]["accuracy_mean"] for r in runs])
                lo = np.array([r["robustness"][kind]["loss_mean"] for r in runs])
                sd = (lambda v: v.std(0, ddof=1) if len(v) > 1 else np.zeros(v.shape[1]))  # noqa: E731
                merged[kind] = {"level": levels, "accuracy_mean": a.mean(0).tolist(), "accuracy_sd": sd(a).tolist(),
                                "loss_mean": lo.mean(0).tolist(), "loss_sd": sd(lo).tolist()}
                for j, lv in enumerate(levels):
                    robust.append({"dataset": dataset, "arch": arch, "method": method, "model": model.upper(),
                                   "perturbation": kind, "level": lv, "runs": len(runs),
                                   "accuracy_mean": float(a[:, j].mean()), "accuracy_sd": float(sd(a)[j]),
                                   "loss_mean": float(lo[:, j].mean()), "loss_sd": float(sd(lo)[j])})
            curves_by_model[model.upper()] = merged
            histories[model.upper()] = [r["history"] for r in runs]
            if model == "nsnn":
                for s, r in zip(seeds, runs):
                    if "coding" in r:
                        coding.append({"dataset": dataset, "arch": arch, "method": method, "seed": s,
                                       "r": r["coding"]["r"], "p": r["coding"]["p"], "n": r["coding"]["n_valid"]})
        tag = f"{dataset}-{arch}-{method}-T{T}"
        save_figure(plot_learning_curves(histories), out / f"learning_curves_{tag}.png")
        if any(curves_by_model.values()):
            save_figure(plot_robustness(curves_by_model), out / f"robustness_{tag}.png")
        summary["settings"].append({"dataset": dataset, "arch": arch, "method": method, "T": T,
                                    "robustness": curves_by_model})
    noise_rows = []
    if args.sigmas:
        dataset, method, arch, T = combos[0]
        for sigma in args.sigmas:
            runs = [run_one(out, dataset, method, arch, T, "nsnn", s, args,
                            {"noise_sigma": sigma, "flip_betas": (), "fgsm_eps": (), "do_gammas": (), "drop_rhos": (),
                             "coding_samples": 0, "_suffix": f"-sigma{sigma:g}"}) for s in seeds]
            m, sd = _ms([r["test_accuracy"] for r in runs])
            noise_rows.append({"dataset": dataset, "arch": arch, "sigma": sigma, "runs": len(runs),
                               "accuracy_mean": m, "accuracy_sd": sd})
        save_figure(plot_noise_level([r["sigma"] for r in noise_rows], [r["accuracy_mean"] for r in noise_rows],
                                     [r["accuracy_sd"] for r in noise_rows]), out / "noise_level.png")
    _csv(out / "table1.csv", table)
    _csv(out / "robustness.csv", robust)
    _csv(out / "coding.csv", coding)
    _csv(out / "noise_level.csv", noise_rows)
    write_json(out / "summary.json", {"table1": table, "robustness": robust, "coding": coding,
                                      "noise_level": noise_rows, **summary})
    print("\nTable 1 (test accuracy, mean ± SD over seeds):")
    for r in table:
        print(f"  {r['dataset']:12s} {r['arch']:9s} {r['method']:5s} T={r['T']:<3d} {r['model']}: "
              f"{r['accuracy_mean']:.4f} ± {r['accuracy_sd']:.4f} (n = {r['runs']})")
    for r in coding:
        print(f"  Fig. 4B {r['dataset']} {r['arch']} seed {r['seed']}: r = {r['r']:.3f}, p = {r['p']:.3g} "
              f"(n = {r['n']})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
