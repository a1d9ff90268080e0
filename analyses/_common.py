"""What the analyses scripts share: their common arguments, and which recording a fit or a run
folder is on.

Scripts import it as ``from _common import ...`` (they run with ``analyses/`` on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

BUNDLED_DATA_HELP = "recording file (neurocode HDF5 or .nwb) to fit; default: the bundled retina-2 file"


def add_common_arguments(p: argparse.ArgumentParser, *, out: str, data_help: str = BUNDLED_DATA_HELP,
                         ray: bool = False) -> None:
    """The arguments every analysis takes: --data, --recording, --threads, --out (default ``out``)
    and --no-progress; with ``ray`` also those of fits spread over Ray (--cpus, --address,
    --no-ray, --device), and --threads is then per fit. Check them with
    :func:`check_common_arguments` after parsing."""
    p.add_argument("--data", type=Path, default=None, help=data_help)
    p.add_argument("--recording", default=None,
                   help="recording (group) in --data; default: natural_images, or the file's only one")
    if ray:
        p.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads per fit (default 1: as many fits at once as free cores)")
        p.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray session (default: the free cores)")
        p.add_argument("--address", default=None, help="run the fits on a running Ray cluster (auto, HOST:6379)")
        p.add_argument("--no-ray", action="store_true", help="run the fits one after another in this process")
        p.add_argument("--device", default="auto",
                       help="auto (the CPU until the CUDA path is verified on a GPU), cpu, cuda, ...")
    else:
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path(out), help="results folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def check_common_arguments(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """--data must name an existing file; it is kept as an absolute path (fits may run elsewhere)."""
    if a.data is not None:
        if not a.data.expanduser().is_file():
            p.error(f"--data {a.data}: no such recording file")
        a.data = str(a.data.expanduser().resolve())


def recording_key(data, recording) -> tuple[str, str | None]:
    """:func:`neurocode.data.hdf5.recording_key`, a missing bundled file as a one-line exit."""
    from neurocode.data.hdf5 import recording_key as key

    try:
        return key(data, recording)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None


def describe(key: tuple[str, str | None]) -> str:
    from neurocode.data.hdf5 import describe_recording

    return describe_recording(key)


def run_key(run_dir: Path) -> tuple[str, str | None]:
    """The recording a run folder was fitted on (its ``config.json``)."""
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {run_dir}: unreadable config.json ({exc})") from None
    return recording_key(cfg.get("data"), cfg.get("recording"))


def fit_source(run_dir: Path, args) -> tuple[str | None, str | None]:
    """``data``/``recording`` to pass to :func:`neurocode.fit` for ``run_dir``: --data/--recording,
    or, to resume a run folder already checked to be on that recording, its own spelling of
    them (the bundled file as null or as a path, the default recording as null or by name)."""
    if (run_dir / "config.json").exists():
        cfg = json.loads((run_dir / "config.json").read_text())
        return cfg.get("data"), cfg.get("recording")
    return args.data, args.recording


def resolve_preset(args) -> None:
    """Load --data/--recording once (a bad file or name fails here, before any fit) and choose
    the default preset as :func:`neurocode.fit` does: "movie" for a continuous recording."""
    from neurocode.data import ContinuousRecording, load_recording

    try:
        rec = load_recording(args.data, args.recording)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise SystemExit(f"error: --data/--recording: {exc.args[0] if exc.args else exc}") from None
    if args.preset is None:
        args.preset = "movie" if isinstance(rec, ContinuousRecording) else "quick"


def stored_config_matches(run_dir: Path, config) -> bool:
    """True if ``run_dir/config.json`` was written for ``config`` (device and threads aside; the
    recording is compared by :func:`run_key`, where None and the default name are the same)."""
    from neurocode.fitting import FitConfig
    from neurocode.runs import RunFolder

    try:
        stored = RunFolder(run_dir).read_config(FitConfig)
    except (OSError, ValueError):
        return False
    return not config.differences(stored, ignore=("data", "recording"))


def ensure_run(run_dir: Path, model: str, args, wanted: tuple[str, str | None], *, fold: int = 0, seed: int = 0,
               config=None, **overrides) -> dict:
    """The metrics of a run folder, fitting or resuming it first where it has none.

    The one fit-or-resume rule of the analyses: a folder fitted on another recording than
    ``wanted`` (or, given ``config``, with other settings) is refused; a finished one is reused;
    an interrupted one is resumed from its checkpoint; otherwise the model is fitted with
    ``args.preset``, ``args.data``/``args.recording`` and ``overrides``.
    """
    import neurocode

    if (run_dir / "config.json").exists() and run_key(run_dir) != wanted:
        raise SystemExit(f"error: {run_dir} holds a fit on {describe(run_key(run_dir))}, not on {describe(wanted)} "
                         "(--data/--recording); choose another --out")
    has_run = any((run_dir / f).exists() for f in ("config.json", "checkpoint.pt", "metrics.json"))
    if config is not None and has_run and not stored_config_matches(run_dir, config):
        raise SystemExit(f"error: {run_dir} holds a run with different settings (preset, epochs, ...); "
                         "use the settings it was made with or choose another --out")
    if (run_dir / "metrics.json").exists():
        from neurocode.pipeline import check_provenance
        from neurocode.runs import RunFolder

        try:  # finished on this recording file, or its scores are not reused
            check_provenance(RunFolder(run_dir))
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
        print(f"[skip] {run_dir.name}: finished earlier", flush=True)
        return json.loads((run_dir / "metrics.json").read_text())
    resume = (run_dir / "config.json").exists() or (run_dir / "checkpoint.pt").exists()
    print(f"[{'resume' if resume else 'fit'}] {run_dir} on {describe(wanted)} ({args.preset} preset)", flush=True)
    data, recording = fit_source(run_dir, args)  # --data/--recording (or the folder's spelling of them)
    try:
        return neurocode.fit(model, data=data, recording=recording, preset=args.preset, fold=fold, seed=seed,
                             out=run_dir, resume=resume, progress=not getattr(args, "no_progress", False),
                             **overrides).metrics
    except (FileNotFoundError, KeyError) as exc:  # a bad --data / --recording
        raise SystemExit(f"error: {exc.args[0] if exc.args else exc}") from None
