"""The ``neurocode`` command (also ``python -m neurocode``).

::

    neurocode fit --model nsnn [--data FILE(.h5|.nwb)] [--recording NAME] [--preset quick|paper|movie]
                  [--stimulus-column COLUMN] [--stimulus NAME]
                  [--input-size N] [--bin-size S] [--window A B] [--fold K] [--n-folds N] [--seed S]
                  [--set KEY=VALUE ...] [--out DIR] [--resume] [--epochs N] [--device D] [--threads N] [--no-progress]
    neurocode evaluate RUN_DIR
    neurocode predict RUN_DIR --stimuli FILE [--out FILE] [--trials K] [--overwrite]
    neurocode data list [FILE]
    neurocode data import FILE.nwb --out FILE.h5 [--name NAME] [--stimulus-column COLUMN] [--stimulus NAME]
    neurocode data export [FILE.h5] [--recording NAME] --out FILE.nwb [--metadata FILE.json] [--species ...]
    neurocode data export --run RUN_DIR [--stimuli FILE] [--trials K] --out twin.nwb
    neurocode data build --source DIR --out FILE
    neurocode analyze coding [--data FILE] [--out DIR]
    neurocode classify --dataset digits --model nsnn --out DIR      (neurocode/recognition/cli.py)
    neurocode sweep --models nsnn,ln --folds 0,1 --seeds 0 --out DIR (neurocode/sweep/cli.py)
    neurocode info                 version, kernel build, threads, devices, data directory
    neurocode build-kernels        compile the fused CPU kernel now (~1 min, once per machine)

Errors in the input (unknown model, missing file, fold out of range, corrupt checkpoint,
a run folder of another run, ...) print one line ``neurocode: error: ...`` on stderr and
exit with status 2; nothing is overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neurocode._io import printable, printable_lines

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
    sub = p.add_subparsers(dest="command",
                           metavar="{fit,evaluate,predict,data,analyze,classify,sweep,info,build-kernels}")
    sub.required = True

    f = sub.add_parser("fit", help="fit a model, predict the held-out images, write a run folder",
                       description="Fit a retina model to the recording's training images, predict the held-out "
                                   "images and write config, checkpoint, predictions, metrics and figures to a "
                                   "run folder.")
    f.add_argument("--model", choices=MODELS, default="nsnn",
                   help="noisy SNN (noise-driven learning), deterministic SNN (surrogate gradient), CNN "
                        "baseline, CNN with a learnt count dispersion (cnn_cmp) or the LN reference (default: nsnn)")
    f.add_argument("--data", metavar="PATH", default=None,
                   help="recording: a neurocode HDF5 file or an NWB file (default: the bundled retina-2 recording)")
    f.add_argument("--recording", metavar="NAME", default=None,
                   help="recording (group) inside --data when the file holds several (see `neurocode data list`)")
    _add_nwb_read_options(f)
    f.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help="quick: minutes on a CPU; paper: the paper's network and 64 epochs; movie: continuous "
                        "stimuli (white noise, movies) in 1-s clips of 33-ms bins at 90x90 px "
                        "(default: movie for a continuous recording, else quick)")
    f.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="model input side in px: frames are letterboxed to a square and area-resampled to NxN")
    f.add_argument("--bin-size", type=float, default=None, metavar="S", help="time bin in s (T is derived)")
    f.add_argument("--window", type=float, nargs=2, default=None, metavar=("A", "B"),
                   help="response window in s to fit, inside the recording's (default: the recording's)")
    f.add_argument("--fold", type=int, default=0, metavar="K", help="held-out fold of --n-folds (default: 0)")
    f.add_argument("--n-folds", type=int, default=None, metavar="N",
                   help="folds of the split by stimulus (default: 5); a recording of few stimuli needs fewer")
    f.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    f.add_argument("--out", metavar="DIR", default=None,
                   help="run folder (default: runs/{model}-{preset}-fold{K}-seed{S})")
    f.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its checkpoint (or re-score a finished one)")
    f.add_argument("--overwrite", action="store_true",
                   help="replace the run --out holds, or write into a folder holding files neurocode did not make")
    f.add_argument("--epochs", type=int, default=None, metavar="N", help="override the preset's epoch count")
    f.add_argument("--device", default=None, metavar="D",
                   help="auto (the CPU until the CUDA path is verified on a GPU), cpu, cuda, cuda:1, ... "
                        "(default: auto)")
    f.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other fit setting, as `sweep --set` takes it but with one value: a FitConfig field "
                        "(lr=1e-3), a field of the fit's architecture (rf.noise_sigma=0.2; arch.FIELD: whichever "
                        "it uses) or of a section it has (spiking.model_trials=8, clips.duration=2: continuous "
                        "recordings) or sigma (its membrane-noise SD); repeatable")

    e = sub.add_parser("evaluate", help="recompute and print the held-out scores of a run folder",
                       description="Recompute metrics.json, per_cell_scores.csv and the figures of a run folder "
                                   "from its predictions and the recording, and print the scores.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--rescore", action="store_true",
                   help="score against a recording file that changed since the fit (writes metrics_rescored.json)")

    pr = sub.add_parser("predict", help="predict a fitted model's responses to new stimuli",
                        description="Responses of a run folder's model to new stimuli, prepared as its training "
                                    "stimuli (letterboxed, resampled, normalised with the training statistics "
                                    "stored in the run). The recording file must be the one the run was fitted "
                                    "to (SHA-256): a changed file is refused.")
    pr.add_argument("run_dir", metavar="RUN_DIR")
    pr.add_argument("--stimuli", required=True, metavar="FILE",
                    help=".npy array (or .npz with key 'stimuli'): flashed frames [n, H, W], or clips [n, F, H, W] "
                         "on the fit's bin grid for a model fitted to a continuous recording")
    pr.add_argument("--out", metavar="FILE", default=None,
                    help="predictions HDF5 file (default: RUN_DIR/predictions_<stimuli file name>.h5)")
    pr.add_argument("--trials", type=int, default=None, metavar="K", help="sampled trials per stimulus")
    pr.add_argument("--overwrite", action="store_true",
                    help="replace an existing --out (never a run's own file nor a recording file)")

    d = sub.add_parser("data", help="list, import, export or build recordings")
    dsub = d.add_subparsers(dest="data_command", metavar="{list,import,export,build}")
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
    _add_nwb_read_options(di)
    de = dsub.add_parser("export", help="write a recording, or a fitted run's sampled trials, as an NWB file",
                         description="Write a recording (default: the bundled one) or the digital twin of a run folder "
                                     "(trials sampled from its model) as an NWB file with the session metadata "
                                     "(subject, lab, ...) that nwbinspector and DANDI check (docs/nwb.md).")
    de.add_argument("path", nargs="?", default=None, metavar="FILE",
                    help="neurocode HDF5 or NWB file (default: the bundled one)")
    de.add_argument("--recording", default=None, metavar="NAME", help="recording (group) inside FILE")
    _add_nwb_read_options(de)
    de.add_argument("--run", default=None, metavar="RUN_DIR",
                    help="export the digital twin of this run folder: trials sampled from its model")
    de.add_argument("--stimuli", default=None, metavar="FILE",
                    help="with --run: .npy/.npz stimuli to respond to (default: the run's held-out stimuli)")
    de.add_argument("--trials", type=int, default=20, metavar="K", help="with --run: trials per stimulus (default 20)")
    de.add_argument("--seed", type=int, default=0, metavar="S", help="with --run: sampling seed (default 0)")
    de.add_argument("--out", required=True, metavar="FILE.nwb", help="NWB file to write")
    de.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    de.add_argument("--metadata", default=None, metavar="FILE.json",
                    help="session metadata (JSON: subject, experimenter, lab, institution, session_start_time, ...); "
                         "default: what the recording's provenance says (the bundled recording's paper)")
    for flag, help_ in (("subject-id", "subject's id"), ("species", "Latin binomial, e.g. 'Ambystoma mexicanum'"),
                        ("age", "ISO 8601 duration, e.g. P2Y, P23W, or a range P1Y/P2Y"),
                        ("sex", "M, F, O or U"), ("lab", "lab"), ("institution", "institution"),
                        ("session-start-time", "ISO 8601 date and time with time zone"),
                        ("session-description", "what the session was"),
                        ("experiment-description", "what the experiment was")):
        de.add_argument(f"--{flag}", default=None, metavar="TEXT", help=f"{help_} (overrides --metadata)")
    de.add_argument("--experimenter", action="append", default=None, metavar="'LAST, FIRST'",
                    help="who recorded (repeat for several; overrides --metadata)")
    de.add_argument("--keywords", default=None, metavar="A,B,...", help="comma-separated keywords")
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
    _add_nwb_read_options(ac)
    ac.add_argument("--out", metavar="DIR", default=None, help="save the scatter figure and numbers here")
    from neurocode.recognition.cli import add_classify_parser  # recognition: neurocode/recognition/cli.py

    add_classify_parser(sub)
    from neurocode.sweep import add_sweep_parser  # sweeps on Ray Tune: neurocode/sweep/cli.py

    add_sweep_parser(sub)
    sub.add_parser("info", help="version, the fused kernel's build and why, threads, devices, data directory",
                   description="Print the version, the fused CPU kernel's build (instruction set and why; loaded, "
                               "cached, not built or failed, with the reason), the threads, torch's devices and the "
                               "data directory. Never compiles.")
    sub.add_parser("build-kernels", help="compile the fused CPU kernel now (~1 min, once per machine)",
                   description="Compile (or load) the fused CPU kernel for this CPU's instruction set now, so that "
                               "the first fit does not; retries a build that failed before. Exit status 1 if it "
                               "cannot be built (fits then run the pure-torch loop: same spikes, slower).")
    return p


def _add_nwb_read_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stimulus-column", default=None, metavar="COLUMN",
                        help="NWB files: trials column with each trial's image index (default: stimulus_index; "
                             "without it trials are matched to an IndexSeries), e.g. image_id")
    parser.add_argument("--stimulus", default=None, metavar="NAME",
                        help="NWB files: the stimulus object to read when the file holds several")


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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"fit": _cmd_fit, "evaluate": _cmd_evaluate, "predict": _cmd_predict, "data": _cmd_data,
                "analyze": _cmd_analyze, "classify": _cmd_classify,
                "sweep": _cmd_sweep, "info": _cmd_info, "build-kernels": _cmd_build_kernels}
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
    from neurocode.sweep.cli import parse_fit_set

    overrides = {k: getattr(args, k) for k in ("recording", "input_size", "bin_size", "window", "n_folds", "epochs",
                                               "device", "threads") if getattr(args, k) is not None}
    overrides.update({f"nwb_{k}": getattr(args, k) for k in ("stimulus_column", "stimulus")
                      if getattr(args, k) is not None})
    if "window" in overrides:
        overrides["window"] = tuple(overrides["window"])
    settings = parse_fit_set(args.set)
    both = sorted(set(settings) & set(overrides))
    if both:
        raise ValueError(f"--set {both[0]}=... and --{both[0].replace('_', '-')} both given; give one")
    overrides.update(settings)
    result = fit(model=args.model, data=args.data, preset=args.preset, fold=args.fold, seed=args.seed,
                 out=args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                 **overrides)
    print(printable_lines(format_metrics(result.metrics)))
    print(f"run folder: {result.run_dir}")
    return 0


def _cmd_evaluate(args) -> int:
    from neurocode.analysis.scores import format_metrics
    from neurocode.pipeline import evaluate

    metrics = evaluate(args.run_dir, rescore=args.rescore)
    print(printable_lines(format_metrics(metrics)))
    if args.rescore and metrics.get("data_sha256"):
        print("scored against a changed recording file: written to metrics_rescored.json")
    print(f"run folder: {args.run_dir}")
    return 0


def _cmd_predict(args) -> int:
    from neurocode.pipeline import predict_run

    out = predict_run(args.run_dir, args.stimuli, out=args.out, n_trials=args.trials, overwrite=args.overwrite)
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
        out = import_nwb(args.path, args.out, name=args.name, overwrite=args.overwrite,
                         stimulus_column=args.stimulus_column, stimulus=args.stimulus)
        print(f"wrote {out}")
        return 0
    if args.data_command == "export":
        return _export_nwb(args)
    # build: the recipe lives in the repository's datasets/ folder, installed as neurocode/datasets/
    import runpy

    recipe = Path(__file__).resolve().parents[1] / "datasets" / "build_onken2016.py"
    if not recipe.is_file():
        recipe = Path(__file__).resolve().parent / "datasets" / "build_onken2016.py"
    if not recipe.is_file():
        raise FileNotFoundError(f"{recipe}: dataset recipe not found (datasets/build_onken2016.py of the source "
                                "repository)")
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


def _export_nwb(args) -> int:
    from neurocode.data.nwb import write_nwb
    from neurocode.data.nwb_metadata import default_metadata, load_metadata, with_overrides

    if args.run is not None:
        from neurocode.pipeline import load_stimulus_file, simulate_run

        if args.path is not None or args.recording is not None or args.stimulus_column or args.stimulus:
            raise ValueError("--run exports a run's sampled trials; give either --run or a recording FILE (with "
                             "--recording, --stimulus-column, --stimulus), not both")
        if args.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {args.trials}")
        if not Path(args.run).is_dir():
            raise FileNotFoundError(f"{args.run}: no such run folder (--run)")
        stimuli = None if args.stimuli is None else load_stimulus_file(args.stimuli)
        rec = simulate_run(args.run, stimuli, n_trials=args.trials, seed=args.seed)
    else:
        from neurocode.data import load_recording

        if args.stimuli is not None:
            raise ValueError("--stimuli applies to --run (the stimuli a run's model responds to)")
        if args.path is not None and not Path(args.path).is_file():
            raise FileNotFoundError(f"{args.path}: no such recording file")
        rec = load_recording(args.path, args.recording, stimulus_column=args.stimulus_column, stimulus=args.stimulus)
    base = load_metadata(args.metadata) if args.metadata else default_metadata(rec.provenance)
    flags = {k: getattr(args, k) for k in ("subject_id", "species", "age", "sex", "lab", "institution",
                                           "session_start_time", "session_description", "experiment_description",
                                           "experimenter")}
    if args.keywords is not None:
        flags["keywords"] = tuple(k.strip() for k in args.keywords.split(",") if k.strip())
    metadata = with_overrides(base, **flags)
    out = write_nwb(rec, args.out, metadata=metadata, overwrite=args.overwrite)
    what = "digital twin" if args.run is not None else "recording"
    print(f"wrote {printable(str(out))} ({what} {printable(rec.name)!r}: {rec.n_cells} cells"
          + ("" if metadata.subject is None else f"; subject {printable(metadata.subject.subject_id)!r}") + ")")
    return 0


def _cmd_analyze(args) -> int:
    from neurocode.analysis import recorded_coding_analysis
    from neurocode.data import Recording, load_recording

    if args.data is not None and not Path(args.data).is_file():
        raise FileNotFoundError(f"{args.data}: no such recording file (--data)")
    rec = load_recording(args.data, args.recording, stimulus_column=args.stimulus_column, stimulus=args.stimulus)
    if not isinstance(rec, Recording):
        raise ValueError(f"recording {rec.name!r} is continuous; the coding analysis needs repeated stimuli "
                         "(cut it into clips first: ContinuousRecording.to_clips)")
    if rec.stimuli is None and rec.n_stimuli < 3:
        raise ValueError(f"recording {rec.name!r} has {rec.n_stimuli} stimulus; the coding analysis needs the "
                         "repeated natural images")
    res = recorded_coding_analysis(rec)
    trials = f"{rec.n_trials} trials" if rec.equal_trials else \
        f"{rec.trial_counts.min()}-{rec.n_trials} trials, each image's statistics from its own"
    print(f"Fig. 4B on recording {rec.name!r} ({rec.n_stimuli} {'clips' if rec.is_clips else 'images'}, {rec.n_cells} cells, {trials}, "
          "whole-window spike counts):")
    corr = f"r = {res.r:.3f}, p = {res.p:.3g}" if res.r == res.r else "r = n/a"
    print(f"  mean Fano factor vs prediction cosine similarity across {'clips' if rec.is_clips else 'images'}: {corr} (n = {res.n_valid})")
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


def _cmd_info(args) -> int:
    from neurocode.info import describe

    print("\n".join(describe()))
    return 0


def _cmd_build_kernels(args) -> int:
    from neurocode.info import build_kernels

    ok, line = build_kernels()
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


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
