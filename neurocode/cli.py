"""The ``neurocode`` command (also ``python -m neurocode``).

::

    neurocode fit --model nsnn [--data FILE(.h5|.nwb)] [--recording NAME] [--preset quick|paper|movie]
                  [--input-size N] [--bin-size S] [--window A B] [--fold K] [--seed S]
                  [--out DIR] [--resume] [--epochs N] [--device D] [--threads N] [--no-progress]
    neurocode evaluate RUN_DIR
    neurocode predict RUN_DIR --stimuli FILE [--out FILE] [--trials K]
    neurocode data list [FILE]
    neurocode data import FILE.nwb --out FILE.h5 [--name NAME]
    neurocode data build --source DIR --out FILE
    neurocode analyze coding [--data FILE] [--out DIR]
    neurocode classify --dataset digits --model nsnn --out DIR      (neurocode/recognition/cli.py)
    neurocode sweep --models nsnn,ln --folds 0,1 --seeds 0 --out DIR (neurocode/sweep/cli.py)

Errors in the input (unknown model, missing file, fold out of range, corrupt checkpoint,
a run folder of another run, ...) print one line ``neurocode: error: ...`` on stderr and
exit with status 2; nothing is overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

PROG = "neurocode"


def build_parser() -> argparse.ArgumentParser:
    from neurocode import __version__
    from neurocode.fitting import MODELS, PRESETS  # the names' one source: the kinds registry and the presets

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Fit noisy spiking networks (NSNN), deterministic ones (DSNN) and a CNN baseline to "
                    "salamander retina recordings; score them on held-out images; neural-coding analyses.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="{fit,evaluate,predict,data,analyze,classify,sweep}")
    sub.required = True

    f = sub.add_parser("fit", help="fit a model, predict the held-out images, write a run folder",
                       description="Fit a retina model to the recording's training images, predict the held-out "
                                   "images and write config, checkpoint, predictions, metrics and figures to a "
                                   "run folder.")
    f.add_argument("--model", choices=MODELS, default="nsnn",
                   help="noisy SNN (noise-driven learning), deterministic SNN (surrogate gradient), CNN "
                        "baseline or the LN reference (default: nsnn)")
    f.add_argument("--data", metavar="PATH", default=None,
                   help="recording: a neurocode HDF5 file or an NWB file (default: the bundled retina-2 recording)")
    f.add_argument("--recording", metavar="NAME", default=None,
                   help="recording (group) inside --data when the file holds several (see `neurocode data list`)")
    f.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="quick: minutes on a CPU; paper: the paper's network and 64 epochs; movie: continuous "
                        "stimuli (white noise, movies) in 1-s clips of 33-ms bins at 90x90 px "
                        "(default: movie for a continuous recording, else quick)")
    f.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="model input side in px: frames are letterboxed to a square and area-resampled to NxN")
    f.add_argument("--bin-size", type=float, default=None, metavar="S", help="time bin in s (T is derived)")
    f.add_argument("--window", type=float, nargs=2, default=None, metavar=("A", "B"),
                   help="response window in s to fit, inside the recording's (default: the recording's)")
    f.add_argument("--fold", type=int, default=0, metavar="K", help="held-out fold of 5 (default: 0)")
    f.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    f.add_argument("--out", metavar="DIR", default=None,
                   help="run folder (default: runs/{model}-{preset}-fold{K}-seed{S})")
    f.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its checkpoint (or re-score a finished one)")
    f.add_argument("--overwrite", action="store_true",
                   help="replace the run --out holds, or write into a folder holding files neurocode did not make")
    f.add_argument("--epochs", type=int, default=None, metavar="N", help="override the preset's epoch count")
    f.add_argument("--device", default=None, metavar="D",
                   help="auto (a GPU when present), cpu, cuda, cuda:1, ... (default: auto)")
    f.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="recompute and print the held-out scores of a run folder",
                       description="Recompute metrics.json, per_cell_scores.csv and the figures of a run folder "
                                   "from its predictions and the recording, and print the scores.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--rescore", action="store_true",
                   help="score against a recording file that changed since the fit (writes metrics_rescored.json)")

    pr = sub.add_parser("predict", help="predict a fitted model's responses to new stimuli",
                        description="Responses of a run folder's model to new stimuli, prepared as its training "
                                    "stimuli (letterboxed, resampled, normalised with the training statistics).")
    pr.add_argument("run_dir", metavar="RUN_DIR")
    pr.add_argument("--stimuli", required=True, metavar="FILE",
                    help=".npy array (or .npz with key 'stimuli'): flashed frames [n, H, W], or clips [n, F, H, W] "
                         "on the fit's bin grid for a model fitted to a continuous recording")
    pr.add_argument("--out", metavar="FILE", default=None,
                    help="predictions HDF5 file (default: RUN_DIR/predictions_<stimuli file name>.h5)")
    pr.add_argument("--trials", type=int, default=None, metavar="K", help="sampled trials per stimulus")

    d = sub.add_parser("data", help="list or build prepared recordings")
    dsub = d.add_subparsers(dest="data_command", metavar="{list,import,build}")
    dsub.required = True
    dl = dsub.add_parser("list", help="recordings in a prepared HDF5 file")
    dl.add_argument("path", nargs="?", default=None, metavar="PATH",
                    help="prepared HDF5 file (default: the bundled one)")
    di = dsub.add_parser("import", help="convert an NWB file into a neurocode HDF5 recording file",
                         description="Read spike times, stimuli and trials from an NWB file (docs/nwb.md) and add "
                                     "them as a recording to a neurocode HDF5 file.")
    di.add_argument("path", metavar="FILE.nwb")
    di.add_argument("--out", required=True, metavar="FILE.h5", help="neurocode HDF5 file (created or extended)")
    di.add_argument("--name", default=None, metavar="NAME", help="recording name (default: from the NWB file)")
    di.add_argument("--overwrite", action="store_true", help="replace a recording of the same name in --out")
    db = dsub.add_parser("build", help="build the bundled recording from the original Onken 2016 package",
                         description="Verify the original Onken et al. (2016) files (SHA-256) and convert "
                                     "retina 2 to the neurocode HDF5 format (datasets/build_onken2016.py).")
    db.add_argument("--source", required=True, metavar="DIR", help="root of the Onken 2016 package")
    db.add_argument("--out", required=True, metavar="FILE", help="output HDF5 file")
    db.add_argument("--overwrite", action="store_true", help="replace --out if it exists")

    a = sub.add_parser("analyze", help="neural-coding analyses of the recording")
    asub = a.add_subparsers(dest="analysis", metavar="{coding}")
    asub.required = True
    ac = asub.add_parser("coding", help="Fig. 4B: mean Fano factor vs prediction cosine similarity "
                                        "on the recorded natural images")
    ac.add_argument("--data", metavar="PATH", default=None,
                    help="recording file, neurocode HDF5 or NWB (default: the bundled one)")
    ac.add_argument("--recording", metavar="NAME", default=None, help="recording (group) inside --data")
    ac.add_argument("--out", metavar="DIR", default=None, help="save the scatter figure and numbers here")
    from neurocode.recognition.cli import add_classify_parser  # recognition: neurocode/recognition/cli.py

    add_classify_parser(sub)
    from neurocode.sweep import add_sweep_parser  # sweeps on Ray Tune: neurocode/sweep/cli.py

    add_sweep_parser(sub)
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    from neurocode.data import DataFormatError
    from neurocode.fitting import CheckpointError

    return (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, CheckpointError,
            DataFormatError, KeyError, FloatingPointError)


def _message(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and exc.strerror and exc.filename and not isinstance(exc, FileNotFoundError):
        text = f"cannot write or read {exc.filename}: {exc.strerror}"
    # one line of printable text, whatever a library (or a file's content) put in the message
    return " ".join(printable(line).strip() for line in text.splitlines() if line.strip()) or type(exc).__name__


def printable(text: str) -> str:
    """``text`` with control characters (terminal escapes) shown as escapes, not executed."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"fit": _cmd_fit, "evaluate": _cmd_evaluate, "predict": _cmd_predict, "data": _cmd_data,
                "analyze": _cmd_analyze, "classify": _cmd_classify,
                "sweep": _cmd_sweep}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt as exc:
        from neurocode.pipeline import FitInterrupted

        print(f"{PROG}: interrupted", file=sys.stderr)
        if isinstance(exc, FitInterrupted):
            if exc.checkpointed:
                print(f"{PROG}: the last finished epoch is checkpointed in {exc.run_dir}; continue with the same "
                      "command plus --resume", file=sys.stderr)
            else:
                print(f"{PROG}: no epoch had finished, so nothing was checkpointed; the same command plus --resume "
                      f"starts {exc.run_dir} again", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine, not the input: disk full, read-only, permissions
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
        return 1


def _cmd_fit(args) -> int:
    from neurocode.analysis.scores import format_metrics
    from neurocode.pipeline import fit

    overrides = {k: getattr(args, k) for k in ("recording", "input_size", "bin_size", "window", "epochs", "device",
                                               "threads") if getattr(args, k) is not None}
    if "window" in overrides:
        overrides["window"] = tuple(overrides["window"])
    result = fit(model=args.model, data=args.data, preset=args.preset, fold=args.fold, seed=args.seed,
                 out=args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                 **overrides)
    print(format_metrics(result.metrics))
    print(f"run folder: {result.run_dir}")
    return 0


def _cmd_evaluate(args) -> int:
    from neurocode.analysis.scores import format_metrics
    from neurocode.pipeline import evaluate

    metrics = evaluate(args.run_dir, rescore=args.rescore)
    print(format_metrics(metrics))
    if args.rescore and metrics.get("data_sha256"):
        print("scored against a changed recording file: written to metrics_rescored.json")
    print(f"run folder: {args.run_dir}")
    return 0


def _cmd_predict(args) -> int:
    from neurocode.pipeline import predict_run

    out = predict_run(args.run_dir, args.stimuli, out=args.out, n_trials=args.trials)
    print(f"wrote {out}")
    return 0


def _cmd_data(args) -> int:
    if args.data_command == "list":
        from neurocode.data import ContinuousRecording, bundled_path, list_recordings, load_recording

        path = Path(args.path) if args.path else bundled_path()
        names = list_recordings(path)
        print(f"{printable(path)}:")
        print(f"  {'recording':<20} {'stimuli':>7} {'cells':>5} {'trials':>6} {'spikes':>9}  window (s)  frames")
        for name in names:
            rec = load_recording(path, name)
            name = printable(name)  # a group name is the file's content: never terminal escapes
            if isinstance(rec, ContinuousRecording):
                frames = f"{rec.n_frames} x " + "x".join(str(s) for s in rec.frame_shape)
                print(f"  {name:<20} {'movie':>7} {rec.n_cells:>5} {rec.n_repeats:>6} {rec.n_spikes:>9,}  "
                      f"{rec.session[0]:g}-{rec.session[1]:g}{'':<4} {frames} (continuous; trials = repeats)")
                continue
            frames = "none" if rec.stimuli is None else "x".join(str(s) for s in rec.stimuli.shape[1:])
            w0, w1 = rec.window
            trials = str(rec.n_trials) if rec.equal_trials else f"{rec.trial_counts.min()}-{rec.n_trials}"
            print(f"  {name:<20} {rec.n_stimuli:>7} {rec.n_cells:>5} {trials:>6} {rec.n_spikes:>9,}  "
                  f"{w0:g}-{w1:g}{'':<6} {frames}")
        return 0
    if args.data_command == "import":
        from neurocode.data.nwb import import_nwb

        if not Path(args.path).is_file():
            raise FileNotFoundError(f"{args.path}: no such NWB file")
        out = import_nwb(args.path, args.out, name=args.name, overwrite=args.overwrite)
        print(f"wrote {out}")
        return 0
    # build: the recipe lives in the repository's datasets/ folder, next to the package
    import runpy

    recipe = Path(__file__).resolve().parents[1] / "datasets" / "build_onken2016.py"
    if not recipe.is_file():
        raise FileNotFoundError(f"{recipe}: dataset recipe not found (it ships with the source repository, "
                                "not with an installed wheel)")
    source = Path(args.source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder (--source must be the root of the Onken 2016 package)")
    ns = runpy.run_path(str(recipe), run_name="neurocode_build_onken2016")
    try:
        out = ns["build"](source, Path(args.out), overwrite=args.overwrite)
    except (ns.get("ChecksumError", ValueError), RuntimeError) as exc:
        raise ValueError(str(exc)) from None
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0


def _cmd_analyze(args) -> int:
    from neurocode.analysis import recorded_coding_analysis
    from neurocode.data import Recording, load_recording

    if args.data is not None and not Path(args.data).is_file():
        raise FileNotFoundError(f"{args.data}: no such recording file (--data)")
    rec = load_recording(args.data, args.recording)
    if not isinstance(rec, Recording):
        raise ValueError(f"recording {rec.name!r} is continuous; the coding analysis needs repeated stimuli "
                         "(cut it into clips first: ContinuousRecording.to_clips)")
    if rec.stimuli is None and rec.n_stimuli < 3:
        raise ValueError(f"recording {rec.name!r} has {rec.n_stimuli} stimulus; the coding analysis needs the "
                         "repeated natural images")
    res = recorded_coding_analysis(rec)
    print(f"Fig. 4B on recording {rec.name!r} ({rec.n_stimuli} images, {rec.n_cells} cells, {rec.n_trials} trials, "
          "whole-window spike counts):")
    print(f"  mean Fano factor vs prediction cosine similarity across images: r = {res.r:.3f}, p = {res.p:.3g} "
          f"(n = {res.n_valid})")
    print(f"  mean FF {float(_finite_mean(res.mean_fano)):.3f}, mean cosine similarity "
          f"{float(_finite_mean(res.cosine)):.3f}, fit: cosine = {res.slope:.3f} * FF + {res.intercept:.3f}")
    if args.out:
        from neurocode._io import write_json
        from neurocode.plotting import plot_coding_scatter, save_figure

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        fig = plot_coding_scatter(res, title=f"{rec.name}: r = {res.r:.3f}, p = {res.p:.2g}")
        save_figure(fig, out / "coding_scatter.png")
        write_json(out / "coding.json", {"recording": rec.name, "r": res.r, "p": res.p, "slope": res.slope,
                                         "intercept": res.intercept, "n_valid": res.n_valid,
                                         "mean_fano": res.mean_fano, "cosine": res.cosine})
        print(f"  wrote {out / 'coding_scatter.png'} and {out / 'coding.json'}")
    return 0


def _cmd_sweep(args) -> int:
    from neurocode.sweep import run_sweep

    return run_sweep(args)


def _cmd_classify(args) -> int:
    from neurocode.recognition.cli import run_classify

    return run_classify(args)


def _finite_mean(x):
    import numpy as np

    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return x.mean() if x.size else float("nan")


if __name__ == "__main__":
    sys.exit(main())
