"""``neurocode sweep``: the command line of :func:`neurocode.sweep.sweep`.

::

    neurocode sweep --models nsnn,ln --folds 0,1 --seeds 0 --preset quick --epochs 1 --out DIR
                    [--set KEY=V1,V2 ...] [--search KEY=DIST:LOW:HIGH ... --samples N]
                    [--threads N] [--cpus N] [--gpus-per-trial G] [--address ADDR] [--no-ray]
"""

from __future__ import annotations

import argparse
import ast

__all__ = ["add_sweep_parser", "run_sweep", "parse_set", "parse_search", "parse_fit_set"]


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets: ``"(2,3),(4,8)"`` -> ``["(2,3)", "(4,8)"]``."""
    parts, depth, cur = [], 0, ""
    for c in text:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += c
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _value(text: str):
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        v = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return list(v) if isinstance(v, tuple) else v


def parse_set(items: list[str] | None) -> dict:
    """``["sigma=0.1,0.4", "lr=1e-3"]`` -> ``{"sigma": [0.1, 0.4], "lr": [0.001]}`` (a grid)."""
    grid: dict = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ValueError(f"--set {item!r}: write KEY=V1,V2,... (e.g. --set sigma=0.1,0.2,0.4)")
        if key.strip() in grid:
            raise ValueError(f"--set {key.strip()}: given twice; list its values once (--set KEY=V1,V2)")
        vals = [_value(v) for v in _split_top(values)]
        vals = [tuple(v) if isinstance(v, list) else v for v in vals]
        grid[key.strip()] = vals
    return grid


def parse_fit_set(items: list[str] | None) -> dict:
    """``fit --set KEY=VALUE`` items as :func:`neurocode.fit` overrides: the sweep's parsing and
    checks (:func:`parse_set`), one value per setting.

    ``["lr=1e-3", "sigma=0.3"]`` -> ``{"lr": 0.001, "arch": {"noise_sigma": 0.3}}`` (``arch``: the fit's own
    architecture config, whichever it is).
    """
    from neurocode.sweep._trials import AXES, check_settings, settings_overrides

    grid = parse_set(items)
    for key, values in grid.items():
        if key in AXES:
            raise ValueError(f"--set {key}=...: {key} has its own option (--{key})")
        if len(values) != 1:
            raise ValueError(f"--set {key}={','.join(map(str, values))}: fit takes one value per setting "
                             "(a grid of values is `neurocode sweep --set`)")
    check_settings(grid)
    return settings_overrides({k: v[0] for k, v in grid.items()})


def parse_search(items: list[str] | None) -> dict:
    """``["lr=loguniform:1e-4:1e-2", "loss=choice:mmd_linear,mmd_gaussian"]`` -> search space."""
    space: dict = {}
    for item in items or []:
        key, sep, rest = item.partition("=")
        kind, _, args = rest.partition(":")
        if not sep or not key.strip() or not kind:
            raise ValueError(f"--search {item!r}: write KEY=loguniform:LOW:HIGH, KEY=uniform:LOW:HIGH, "
                             "KEY=int:LOW:HIGH or KEY=choice:A,B,...")
        if kind == "choice":
            space[key.strip()] = ("choice", [_value(v) for v in _split_top(args)])
        else:
            bounds = args.split(":")
            if len(bounds) != 2:
                raise ValueError(f"--search {item!r}: {kind} needs LOW:HIGH")
            try:
                space[key.strip()] = (kind, *(float(b) if kind != "int" else int(b) for b in bounds))
            except ValueError:
                raise ValueError(f"--search {item!r}: bounds must be numbers") from None
    return space


def add_sweep_parser(sub) -> argparse.ArgumentParser:
    """Add ``sweep`` to the ``neurocode`` command's subparsers."""
    s = sub.add_parser(
        "sweep", help="fit models x folds x seeds x settings on Ray Tune (grid or hyper-parameter search)",
        description="Fit every model x fold x seed (x each --set value), each fit one Ray Tune trial in its own run "
                    "folder under --out/runs, and write results.csv/.json (a row per fit), summary.csv and "
                    "comparison.png. With --search, each fit's settings are first chosen by Optuna (through Ray "
                    "Tune, ASHA early stopping) on its split's validation images only, then refitted and scored on "
                    "the test images. Runs on a local Ray session (the free cores) unless --address joins a "
                    "cluster; without Ray installed, the fits run one after another. A finished fit is never "
                    "redone: the same command resumes a stopped sweep.")
    s.add_argument("--models", nargs="+", default=["nsnn"], metavar="M",
                   help="models, comma-separated: nsnn,dsnn,cnn,cnn_cmp,ln (default: nsnn)")
    s.add_argument("--folds", nargs="+", default=["0"], metavar="K", help="held-out folds, e.g. 0,1,2,3,4 (default: 0)")
    s.add_argument("--seeds", nargs="+", default=["0"], metavar="S", help="seeds, e.g. 0,1,2 (default: 0)")
    from neurocode.fitting import PRESETS

    s.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="fit preset (default: quick; movie for a continuous recording)")
    s.add_argument("--data", metavar="PATH", default=None, help="recording file (default: the bundled one)")
    s.add_argument("--recording", metavar="NAME", default=None, help="recording (group) inside --data")
    s.add_argument("--out", metavar="DIR", required=True, help="the sweep's folder (run folders, tables, figures)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                   help="a grid axis over a fit setting: a FitConfig field (lr=1e-3,3e-3; epochs=20,40), an "
                        "architecture field of the fit's architecture (rf.noise_sigma=0.1,0.2; arch.FIELD: whichever it "
                        "uses) or sigma (its membrane-noise SD); repeatable")
    s.add_argument("--search", action="append", default=[], metavar="KEY=DIST:LOW:HIGH",
                   help="search a setting instead: loguniform:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH or "
                        "choice:A,B; repeatable (e.g. --search lr=loguniform:1e-4:1e-2 "
                        "--search sigma=uniform:0.05:0.5)")
    s.add_argument("--samples", type=int, default=8, metavar="N", help="settings tried per searched fit (default: 8)")
    s.add_argument("--search-seed", type=int, default=0, metavar="S", help="seed of Optuna's sampler (default: 0)")
    s.add_argument("--no-asha", action="store_true", help="train every searched setting to the end")
    s.add_argument("--epochs", type=int, default=None, metavar="N", help="override the preset's epoch count")
    s.add_argument("--eval-trials", type=int, default=None, metavar="K", help="sampled trials per test image")
    s.add_argument("--device", default=None, metavar="D", help="auto, cpu, cuda, ... (default: auto)")
    s.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads per fit; Ray runs cores / N fits at once (default: 1)")
    s.add_argument("--cpus", type=int, default=None, metavar="N",
                   help="CPUs of the local Ray session (default: the cores not busy now)")
    s.add_argument("--gpus-per-trial", type=float, default=0.0, metavar="G",
                   help="GPUs per fit (0.5: two fits share a GPU); fits then run on cuda")
    s.add_argument("--address", default=None, metavar="ADDR",
                   help="join a running Ray cluster (auto, or HOST:6379) instead of starting Ray here")
    s.add_argument("--no-ray", action="store_true", help="run the fits one after another in this process")
    s.add_argument("--no-figure", action="store_true", help="do not draw comparison.png")
    return s


def run_sweep(args) -> int:
    from neurocode._io import printable_lines
    from neurocode.sweep._engine import sweep

    overrides = {k: getattr(args, k) for k in ("epochs", "eval_trials", "device") if getattr(args, k) is not None}
    result = sweep(models=args.models, folds=args.folds, seeds=args.seeds, out=args.out, preset=args.preset,
                   data=args.data, recording=args.recording, grid=parse_set(args.set), search=parse_search(args.search),
                   samples=args.samples, search_seed=args.search_seed, asha=not args.no_asha, threads=args.threads,
                   cpus=args.cpus, gpus_per_trial=args.gpus_per_trial, address=args.address,
                   use_ray=False if args.no_ray else None, figure=not args.no_figure, **overrides)
    print()
    print(f"Held-out scores, mean ± SD over folds x seeds ({len(result.rows)} fits; {result.engine}; "
          f"{result.seconds:.0f} s):")
    print(printable_lines(result.table()))  # the table holds the recording's name: the file's content
    print(f"\nwritten to {result.out}/ (results.csv, results.json, summary.csv"
          f"{', comparison.png' if not args.no_figure else ''}{', search/' if result.search else ''})")
    return 0
