"""The sweep itself: trials from the arguments, the run folders as the record, Ray or this process."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from neurocode.sweep import report as rep
from neurocode.sweep._trials import (
    SweepError,
    TrialSpec,
    check_settings,
    folder_state,
    format_value,
    merge_overrides,
    n_validations,
    read_metrics,
    run_grid_trial,
    run_name,
    run_search_trial,
    settings_overrides,
)

#: Distributions a search setting may take: ``(kind, low, high)`` or ``("choice", [values])``.
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


@dataclass
class SweepResult:
    """What :func:`sweep` returns (and writes to ``out``).

    Attributes
    ----------
    out : Path
    rows : list of dict
        One per fit (``results.csv``).
    summary : list of dict
        Mean and SD per model (and grid setting), then the baseline and ceiling rows (``summary.csv``).
    settings : list of str
        The setting columns (grid axes, then search settings).
    search : dict
        Per searched fit, the chosen settings and their validation score (``search/NAME/best.json``).
    log : list of dict
        Per fit what this call did: ``fitted``, ``resumed`` or ``done earlier``, and its seconds.
    engine : str
        Where the fits ran.
    seconds : float
    """

    out: Path
    rows: list
    summary: list
    settings: list
    search: dict = field(default_factory=dict)
    log: list = field(default_factory=list)
    engine: str = ""
    seconds: float = 0.0

    def table(self) -> str:
        grid_keys = [k for k in self.settings if k not in _search_keys(self.search)]
        return rep.format_table(self.summary, grid_keys)

    def __str__(self) -> str:
        return self.table() + f"\nresults: {self.out / 'results.csv'}"


def _search_keys(search: dict) -> set:
    return {k for b in search.values() for k in b.get("chosen", {})}


# --------------------------------------------------------------------------- arguments
def _as_list(x, kind=str) -> list:
    if x is None:
        return []
    if isinstance(x, (str, int)):
        x = [x]
    out = []
    for v in x:
        if isinstance(v, str) and "," in v:
            out += [kind(p) for p in v.split(",") if p.strip()]
        else:
            out.append(kind(v))
    return out


def parse_distribution(key: str, spec) -> tuple:
    """``("loguniform", lo, hi)`` / ``("uniform", lo, hi)`` / ``("int", lo, hi)`` / ``("choice", [..])``;
    a list means a choice."""
    if isinstance(spec, list):
        return ("choice", list(spec))
    if not isinstance(spec, tuple) or not spec or spec[0] not in DISTRIBUTIONS:
        raise SweepError(f"search setting {key!r}: give (kind, low, high) with kind one of {DISTRIBUTIONS}, or "
                         f"('choice', [values]); got {spec!r}")
    kind = spec[0]
    if kind == "choice":
        values = list(spec[1]) if len(spec) == 2 and isinstance(spec[1], (list, tuple)) else list(spec[1:])
        if not values:
            raise SweepError(f"search setting {key!r}: a choice needs values")
        return ("choice", values)
    if len(spec) != 3:
        raise SweepError(f"search setting {key!r}: {kind} needs a low and a high bound, got {spec!r}")
    lo, hi = (int(spec[1]), int(spec[2])) if kind == "int" else (float(spec[1]), float(spec[2]))
    if not lo < hi or (kind == "loguniform" and lo <= 0):
        raise SweepError(f"search setting {key!r}: need 0 < low < high for loguniform, low < high otherwise; got "
                         f"{lo}, {hi}")
    return (kind, lo, hi)


def _resolve_preset(preset, data, recording) -> str:
    if preset is not None:
        return preset
    from neurocode.data import ContinuousRecording, load_recording

    return "movie" if isinstance(load_recording(data, recording), ContinuousRecording) else "quick"


def _ray_available() -> bool:
    """Ray Tune is installed (found, not imported: a finished sweep never pays for importing Ray)."""
    from importlib.util import find_spec

    try:
        return find_spec("ray") is not None and find_spec("ray.tune") is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------- the sweep
def sweep(models=("nsnn",), folds=(0,), seeds=(0,), *, out, preset: str | None = None, data=None,
          recording: str | None = None, grid: dict | None = None, search: dict | None = None, samples: int = 8,
          search_seed: int = 0, asha: bool = True, threads: int = 1, cpus: int | None = None,
          gpus_per_trial: float = 0.0, resources_per_trial: dict | None = None, address: str | None = None,
          use_ray: bool | None = None, figure: bool = True, log: Callable[[str], None] | None = print,
          own_files: tuple[str, ...] = (), **overrides) -> SweepResult:
    """Fit models x folds x seeds x settings, each fit one trial in its own run folder, on Ray Tune.

    Parameters
    ----------
    models, folds, seeds : sequences (or comma-separated strings)
        The grid's first axes; every (fold, seed) is one split of the recording.
    out : path
        The sweep's folder: ``runs/NAME/`` (a :func:`neurocode.fit` run folder per fit, NAME =
        ``{model}[-{setting}{value}...]-fold{k}-seed{s}``), ``results.csv``/``.json`` (a row per
        fit), ``summary.csv``, ``comparison.png``; with ``search``, ``search/NAME/``; Ray's own
        logs in ``tune/``. A folder holding anything else is refused before anything runs.
    preset, data, recording
        As for :func:`neurocode.fit` (one preset and one recording per sweep).
    grid : dict, optional
        More axes: ``{setting: [values]}``, a setting being a FitConfig field (``"lr"``,
        ``"epochs"``), a field of the fits' architecture (``"rf.noise_sigma"``; ``"arch.FIELD"``:
        whichever each fit uses) or ``"sigma"`` (the membrane noise of each fit's architecture).
    search : dict, optional
        Search mode: ``{setting: ("loguniform", lo, hi) | ("uniform", lo, hi) | ("int", lo, hi)
        | ("choice", [values])}``. For every fit of the grid, ``samples`` settings are sampled by
        Optuna's TPE sampler (Ray Tune's ``OptunaSearch``), trained on the split's training
        stimuli and scored on its **validation** stimuli only (ASHA stops poor ones early; no
        test stimulus is read). The fit is then refitted with the best settings, and only that
        refit is scored on the test stimuli.
    samples, search_seed, asha
        Settings tried per searched fit, the sampler's seed, ASHA early stopping on or off.
    threads : int
        torch threads per fit, and the CPUs Ray reserves for it: trials x threads never exceed the cores.
    cpus : int, optional
        CPUs of a local Ray session (default: the cores not busy now).
    gpus_per_trial : float
        GPUs per fit (fractions share a GPU); the fits then run on ``device="cuda"``.
    resources_per_trial : dict, optional
        Ray resources per trial, replacing ``{"cpu": threads, "gpu": gpus_per_trial}``.
    address : str, optional
        Join a running Ray cluster (``"auto"``, ``"HOST:6379"``) instead of starting one here.
    use_ray : bool, optional
        None: Ray when it is installed; False: every fit one after another in this process
        (the same results); True: Ray or an error.
    figure : bool
        Draw ``comparison.png``.
    log : callable or None
        Where progress lines go (``print``); None: silent.
    own_files : tuple of str
        Names of files the caller writes into ``out`` beside the sweep's tables (an analysis
        script's own tables): a re-run accepts them as the sweep's, a folder holding them
        without the sweep's ``results.json`` is still refused.
    **overrides
        FitConfig fields for every fit (``epochs=2``, ``eval_trials=16``, ``rf={...}``, ...).

    Returns
    -------
    SweepResult

    A sweep is resumable: a fit whose run folder holds ``metrics.json`` of the same configuration
    is not redone, one with a checkpoint but no metrics is resumed from it, and a folder holding
    another configuration or recording is refused (SweepError) before anything runs. A search
    whose ``best.json`` exists is not redone; one stopped half-way tells Optuna the settings it
    finished and samples only the rest.
    """
    t_start = time.perf_counter()
    say = log or (lambda _msg: None)
    from neurocode.fitting import MODELS

    models = _as_list(models)
    folds, seeds = _as_list(folds, int), _as_list(seeds, int)
    if not models or not folds or not seeds:
        raise SweepError("a sweep needs at least one model, one fold and one seed")
    bad = [m for m in models if m not in MODELS]
    if bad:
        raise SweepError(f"unknown model(s) {bad}; choose from {list(MODELS)}")
    for name, values in (("models", models), ("folds", folds), ("seeds", seeds)):
        if len(set(values)) != len(values):
            raise SweepError(f"--{name} lists a value twice: {values}")
    if out is None or not str(out).strip():
        raise SweepError("a sweep needs an output folder (out=, --out)")
    out = Path(out).expanduser().resolve()
    check_sweep_folder(out, own_files)
    if data is not None:
        data = Path(data).expanduser()
        if not data.is_file():
            raise FileNotFoundError(f"{data}: no such recording file (--data)")
        data = str(data.resolve())
    grid = {k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in (grid or {}).items()}
    space = {k: parse_distribution(k, v) for k, v in (search or {}).items()}
    both = set(grid) & set(space)
    if both:
        raise SweepError(f"setting(s) {sorted(both)} are both a grid axis and searched; choose one")
    check_settings(list(grid) + list(space))
    if "threads" in grid or "threads" in space:
        raise SweepError("setting 'threads' is the sweep's own option (--threads: torch threads per fit and the "
                         "CPUs Ray reserves for it), not a setting")
    clash = [k for k in list(grid) + list(space) if k in overrides]
    if clash:
        k = clash[0]
        fixed = f"--{k.replace('_', '-')}" if k in ("epochs", "eval_trials", "device") else f"{k}="
        raise SweepError(f"setting {k!r} is also a fixed option of the sweep ({fixed}); give it once: as --set/"
                         "--search to vary it, or as the option to fix it")
    if int(threads) < 1:
        raise SweepError(f"threads must be >= 1, got {threads}")
    threads = int(overrides.pop("threads", threads) or threads)
    overrides["threads"] = threads
    if gpus_per_trial and "device" not in overrides:
        overrides["device"] = "cuda"
    resources = dict(resources_per_trial) if resources_per_trial else {"cpu": threads}
    if gpus_per_trial and not resources_per_trial:
        resources["gpu"] = float(gpus_per_trial)
    if space and int(samples) < 1:
        raise SweepError(f"samples must be >= 1, got {samples}")
    preset = _resolve_preset(preset, data, recording)

    # the trials (every configuration is checked, and every run folder, before anything runs)
    specs: list[TrialSpec] = []
    combos = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())] if grid else [{}]
    for model in models:
        for combo in combos:
            for fold in folds:
                for seed in seeds:
                    name = run_name(model, fold, seed, combo)
                    specs.append(TrialSpec(model=model, fold=fold, seed=seed, preset=preset, data=data,
                                           recording=recording, overrides=merge_overrides(overrides,
                                                                                           settings_overrides(combo)),
                                           settings=dict(combo), name=name, run_dir=str(out / "runs" / name)))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise SweepError(f"two settings give the same run folder name ({dup[:3]}); give distinct values")
    for s in specs:
        s.config()  # a bad setting fails here, naming the fit
    if use_ray is False and address:
        raise SweepError("--address joins a Ray cluster; it cannot go with --no-ray")
    have_ray = _ray_available()
    if (use_ray or address) and not have_ray:
        raise SweepError("Ray is not installed: pip install 'neurocode-snn[sweep]' (or run without --address: the "
                         "fits then run one after another in this process)")
    ray_on = have_ray and use_ray is not False
    storage = out / "tune"
    result_search: dict = {}
    log_rows: list[dict] = []
    keys_cache: dict = {}

    with contextlib.ExitStack() as stack:
        ray_mod = None

        def engine():  # a Ray session, started on first need (a finished sweep never starts one)
            nonlocal ray_mod
            if ray_mod is None:
                from neurocode.sweep import _ray

                where = stack.enter_context(_ray.session(address, cpus, say))
                _ray.check_resources(resources)
                say(f"[ray] {where}; {resources} per trial")
                ray_mod = _ray
            return ray_mod

        # search mode: choose each fit's settings on its own validation stimuli first
        if space:
            for s in specs:
                best = _search_one(s, space, int(samples), int(search_seed), bool(asha), out, storage, resources,
                                   engine if ray_on else None, say)
                previous = best.pop("_previous", None)
                result_search[s.name] = best
                if previous is not None:
                    _drop_stale_refit(s, previous, keys_cache, say)
                s.settings = {**s.settings, **best["chosen"]}
                s.overrides = merge_overrides(s.overrides, settings_overrides(best["chosen"]))
                s.config()
        states = {s.name: folder_state(s, s.config(), keys_cache) for s in specs}
        pending = [s for s in specs if states[s.name] != "done"]
        for s in specs:
            if states[s.name] == "done":
                say(f"[skip] {s.name}: finished earlier")
                log_rows.append({"run": s.name, "status": "done earlier", "seconds": 0.0})
        if pending and ray_on:
            engine()
            for s in pending:
                say(f"[{'resume' if states[s.name] == 'partial' else 'fit'}] {s.name} ({preset} preset, on Ray)")
            done, failed = engine().run_grid(pending, resources, storage, say)
            for s in pending:
                if s.name in done:
                    log_rows.append({"run": s.name, **done[s.name]})
            if failed:
                detail = "; ".join(f"{n}: {str(e).splitlines()[-1] if str(e) else type(e).__name__}"
                                   for n, e in list(failed.items())[:3])
                raise SweepError(f"{len(failed)} of {len(pending)} fit(s) failed ({detail}); the finished ones are "
                                 f"in {out / 'runs'}, and the same call resumes the rest")
        elif pending:
            if not have_ray and len(pending) > 1:
                say(f"[sweep] Ray is not installed (pip install 'neurocode-snn[sweep]'): the {len(pending)} fits run one "
                    "after another in this process")
            for s in pending:
                say(f"[{'resume' if states[s.name] == 'partial' else 'fit'}] {s.name} ({preset} preset)")
                r = run_grid_trial(s)
                rate_cc = r["metrics"].get("rate_cc")
                say(f"       rate_cc {'n/a' if rate_cc is None else format(rate_cc, '.3f')} in {r['seconds']:.0f} s")
                log_rows.append({"run": s.name, "status": r["status"], "seconds": r["seconds"]})
        engine_name = ("ray" + (f" ({address})" if address else "")) if ray_mod is not None else \
            ("sequential" if pending else "none (every fit had finished)")

    # the table, from the run folders
    rows = []
    from neurocode.data.hdf5 import recording_key

    data_file = recording_key(data, recording)[0]  # the file, also for the bundled recording
    for s in specs:
        metrics = read_metrics(s.run_dir)
        rows.append(rep.run_row(metrics, s.settings, f"runs/{s.name}", recording, data_file))
    setting_keys = list(grid) + list(space)
    for r in rows:  # setting columns right after model, fold, seed
        for k in setting_keys:
            r.setdefault(k, None)
    columns = rep.RUN_COLUMNS[:3] + setting_keys + rep.RUN_COLUMNS[3:]
    summary = rep.summarise(rows, list(grid))
    _write(out, rows, columns, summary, list(grid), setting_keys, result_search, log_rows, figure,
           dict(mode="search" if space else "grid", models=models, folds=folds, seeds=seeds, preset=preset,
                data=data, recording=recording, grid=grid, search={k: list(v) for k, v in space.items()},
                samples=int(samples) if space else None, overrides=overrides, resources_per_trial=resources,
                engine=engine_name),
           time.perf_counter() - t_start)
    result = SweepResult(out=out, rows=rows, summary=summary, settings=setting_keys, search=result_search,
                         log=log_rows, engine=engine_name, seconds=time.perf_counter() - t_start)
    return result


#: What a sweep writes in its folder: folders, and the tables and figure of :func:`_write`.
SWEEP_FOLDERS = ("runs", "search", "tune")
SWEEP_TABLES = ("results.json", "results.csv", "summary.csv", "comparison.png")


def check_sweep_folder(out: Path, own_files: tuple[str, ...] = ()) -> None:
    """Refuse, before anything runs, a sweep folder holding entries a sweep did not make.

    The tables (and ``own_files``: what the sweep's caller writes beside them, e.g. an analysis
    script's tables) count as the sweep's only beside a ``results.json`` a sweep wrote (it is
    written first), so a user's own ``results.csv`` or ``summary.csv`` is never replaced.
    """
    if out.exists() and not out.is_dir():
        raise SweepError(f"{out}: exists and is not a folder; choose another --out")
    if not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir())
    ours = _is_sweep_record(out / "results.json")
    foreign = [n for n in entries
               if not (n in SWEEP_FOLDERS and (out / n).is_dir())
               and not ((n in SWEEP_TABLES or n in own_files) and ours)
               and not (n.startswith(".") and n.endswith(".tmp"))]  # an atomic write's temporary file
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise SweepError(f"{out}: holds files a sweep did not make ({shown}); choose another --out "
                         "(a sweep writes results.csv, summary.csv, ... there; nothing was changed)")


def _is_sweep_record(path: Path) -> bool:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(d, dict) and isinstance(d.get("protocol"), dict) and isinstance(d.get("runs"), list)


def _write(out: Path, rows, columns, summary, grid_keys, setting_keys, searched, log_rows, figure, protocol,
           seconds) -> None:
    from neurocode._io import write_json, write_text

    table = rep.to_csv(rows, columns)
    # the same table as last time (a finished sweep called again): its figure stands
    unchanged = (out / "results.csv").is_file() and (out / "results.csv").read_text() == table \
        and (out / "comparison.png").is_file()
    # results.json first: beside it the other tables are known to be the sweep's (check_sweep_folder)
    write_json(out / "results.json", {"protocol": protocol, "runs": rows, "summary": summary, "search": searched,
                                      "log": log_rows, "seconds": seconds})
    write_text(out / "results.csv", table)
    summary_columns = rep.SUMMARY_COLUMNS[:1] + list(grid_keys) + rep.SUMMARY_COLUMNS[1:]
    write_text(out / "summary.csv", rep.to_csv(summary, summary_columns))
    if figure and not unchanged:
        from neurocode.plotting import save_figure

        rec = rows[0].get("recording")
        epochs = sorted({r["epochs"] for r in rows if r.get("epochs") is not None})
        folds = sorted({r["fold"] for r in rows})
        seeds = sorted({r["seed"] for r in rows})
        title = (f"{rec}, {protocol['preset']} preset, {len(folds)} fold(s) x {len(seeds)} seed(s), "
                 f"{'/'.join(map(str, epochs))} epochs" + (", searched" if protocol["mode"] == "search" else ""))
        save_figure(rep.plot_comparison(summary, rows, title, grid_keys), out / "comparison.png", dpi=120)


# --------------------------------------------------------------------------- search
def _search_one(spec: TrialSpec, space: dict, samples: int, seed: int, asha: bool, out: Path, storage: Path,
                resources: dict, engine, say) -> dict:
    """Choose ``spec``'s settings on its split's validation stimuli; returns (and writes) ``best.json``."""
    from neurocode._io import write_json

    folder = out / "search" / spec.name
    config = spec.config()
    base_config = {k: v for k, v in config.to_dict().items() if k not in ("device", "threads")}
    identity = {"space": {k: list(v) for k, v in space.items()}, "seed": seed, "asha": asha, "base": base_config}
    ident_path = folder / "search.json"
    if ident_path.exists():
        stored = json.loads(ident_path.read_text())
        if stored != json.loads(json.dumps(identity)):
            raise SweepError(f"{folder}: holds a search with other settings (space, seed, ASHA or the fit's "
                             "configuration); search with those, or choose another --out")
    else:
        write_json(ident_path, identity)
    trials_dir = folder / "trials"
    records = _search_records(trials_dir)
    best_path = folder / "best.json"
    if best_path.exists() and len(records) >= samples:
        best = json.loads(best_path.read_text())
        say(f"[search] {spec.name}: done earlier, chose {_fmt_params(best['chosen'])} "
            f"(validation rate CC {best['best_val_rate_cc']:.3f})")
        return best
    left = samples - len(records)
    if left > 0:
        max_t = n_validations(config)
        what = "Optuna TPE on Ray Tune" if engine is not None else "Optuna TPE in this process"
        say(f"[search] {spec.name}: {left} setting(s) of {', '.join(space)} on its validation stimuli ({what}"
            f"{', ASHA' if asha else ''}{f'; {len(records)} done earlier' if records else ''})")
        done = [(r["params"], r["best_val_rate_cc"]) for r in records]
        base = spec.to_dict()
        # a resumed search must not draw the first settings again: its sampler's seed moves on
        seed_now = seed + len(records)
        if engine is not None:
            ray_mod = engine()
            ran = ray_mod.run_search(base, space, left, done, trials_dir, max_t, resources, storage, seed_now, asha,
                                     spec.name, on_end=lambda t: finish_record(trials_dir / t["trial"], t, max_t))
        else:
            ran = _optuna_search(base, space, left, done, trials_dir, max_t, seed_now, asha)
        for t in ran:  # those the callbacks did not record (they record each trial as it ends)
            if not (trials_dir / t["trial"] / "result.json").exists():
                finish_record(trials_dir / t["trial"], t, max_t)
        records = _search_records(trials_dir)
    previous = json.loads(best_path.read_text())["chosen"] if best_path.exists() else None
    finished = [r for r in records if r["finished"]]
    if not finished:
        raise SweepError(f"search {spec.name}: no setting finished training (all diverged or failed); see "
                         f"{trials_dir}")
    chosen = max(finished, key=lambda r: (r["best_val_rate_cc"], -r["order"]))
    best = {"run": spec.name, "model": spec.model, "fold": spec.fold, "seed": spec.seed,
            "chosen": chosen["params"], "best_val_rate_cc": chosen["best_val_rate_cc"],
            "best_epoch": chosen.get("best_epoch"), "trial": chosen["trial"], "n_trials": len(records),
            "n_finished": len(finished), "n_stopped_early": sum(r["stopped_early"] for r in records),
            "scored_on": "validation stimuli carved from the split's training stimuli; the test stimuli were "
                         "blanked and never read",
            "space": identity["space"], "search_seed": seed, "asha": asha}
    _write_search_outputs(folder, records, best, spec.name)
    write_json(best_path, best)
    if previous is not None and previous != best["chosen"]:
        best = {**best, "_previous": previous}  # the refit of the earlier choice is stale (not stored)
    say(f"[search] {spec.name}: chose {_fmt_params(best['chosen'])} (validation rate CC "
        f"{best['best_val_rate_cc']:.3f}; {best['n_finished']} of {best['n_trials']} trained to the end, "
        f"{best['n_stopped_early']} stopped early)")
    return best


def _drop_stale_refit(spec: TrialSpec, previous: dict, keys: dict, say) -> None:
    """The search chose anew (more samples): delete the refit this sweep made with its earlier choice.

    Only a run folder holding exactly that earlier refit is cleared; any other content is left for
    :func:`folder_state` to refuse.
    """
    from neurocode.runs import RunFolder

    old = TrialSpec.from_dict(spec.to_dict())
    old.overrides = merge_overrides(old.overrides, settings_overrides(previous))
    try:
        state = folder_state(old, old.config(), keys)
    except SweepError:
        return
    if state != "new":
        folder = RunFolder(old.run_dir)
        with folder.lock():
            folder.clear()
        say(f"[search] {spec.name}: the choice changed from {_fmt_params(previous)}; its earlier refit is redone")


def _fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={format_value(v) if not isinstance(v, float) else f'{v:.4g}'}" for k, v in params.items())


def _read_curve(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            r = json.loads(line)
            rows[int(r["epoch"])] = r
    return [rows[e] for e in sorted(rows)]


def finish_record(trial_dir: Path, t: dict, max_t: int) -> None:
    """The driver's record of a search trial that ended (finished, stopped early, diverged or failed)."""
    from neurocode._io import write_json

    curve = _read_curve(trial_dir / "curve.jsonl")
    hist = trial_dir / "history.json"
    finished = hist.exists()
    best_epoch, vals = None, [c["val_rate_cc"] for c in curve if math.isfinite(c["val_rate_cc"])]
    if finished:
        h = json.loads(hist.read_text())
        final = [x for x in h if "best_epoch" in x or "chosen_ridge" in x]
        best = float(final[-1]["val_rate_cc"]) if final else max(vals, default=-1.0)
        best_epoch = final[-1].get("best_epoch") if final else None
    else:
        best = max(vals, default=-1.0)
    if not math.isfinite(best):
        best = -1.0
    trial_dir.mkdir(parents=True, exist_ok=True)
    write_json(trial_dir / "result.json", {
        "trial": t["trial"], "params": t["params"], "best_val_rate_cc": best, "best_epoch": best_epoch,
        "finished": finished, "stopped_early": (not finished and t.get("error") is None and not t.get("diverged")),
        "diverged": t.get("diverged"), "error": t.get("error"), "validations": len(curve), "max_validations": max_t,
        "ended": time.time()})


def _search_records(trials_dir: Path) -> list[dict]:
    """Search trials that ended (they hold ``result.json``), in the order they ended."""
    if not trials_dir.is_dir():
        return []
    recs = []
    for d in trials_dir.iterdir():
        p = d / "result.json"
        if p.exists():
            r = json.loads(p.read_text())
            r["curve"] = _read_curve(d / "curve.jsonl")
            recs.append(r)
    recs.sort(key=lambda r: (r.get("ended", 0), r["trial"]))
    for i, r in enumerate(recs):
        r["order"] = i
    return recs


def _write_search_outputs(folder: Path, records: list[dict], best: dict, name: str) -> None:
    from neurocode._io import write_text
    from neurocode.plotting import save_figure

    keys = list(best["space"])
    columns = ["trial"] + keys + ["best_val_rate_cc", "best_epoch", "validations", "finished", "stopped_early",
                                  "diverged", "chosen"]
    rows = [{"trial": r["trial"], **r["params"], **{c: r.get(c) for c in columns[1 + len(keys):]},
             "chosen": r["trial"] == best["trial"]} for r in records]
    write_text(folder / "trials.csv", rep.to_csv(rows, columns))
    curve_rows = [{"trial": r["trial"], **r["params"], **c} for r in records for c in r["curve"]]
    write_text(folder / "validation_curve.csv",
               rep.to_csv(curve_rows, ["trial"] + keys + ["epoch", "val_rate_cc", "loss"]))
    fig = rep.plot_validation_curves({r["trial"]: r["curve"] for r in records}, best["trial"],
                                     f"{name}: validation rate CC per setting\nchosen {_fmt_params(best['chosen'])}")
    save_figure(fig, folder / "validation_curve.png", dpi=120)


def _optuna_search(base: dict, space: dict, samples: int, done: list, root: Path, max_t: int, seed: int,
                   asha: bool) -> list[dict]:
    """The search without Ray: Optuna's TPE sampler with its successive-halving pruner, one trial at a time."""
    try:
        import optuna
    except ImportError:
        raise SweepError("a search needs Optuna (and Ray Tune to run trials in parallel): "
                         "pip install 'neurocode-snn[sweep]'") from None
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def dist(spec):
        if spec[0] == "choice":
            return CategoricalDistribution(spec[1])
        if spec[0] == "int":
            return IntDistribution(spec[1], spec[2])
        return FloatDistribution(spec[1], spec[2], log=spec[0] == "loguniform")

    dists = {k: dist(v) for k, v in space.items()}
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3) if asha else \
        optuna.pruners.NopPruner()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner)
    for params, value in done:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    ran = []
    for _ in range(samples):
        trial = study.ask(dists)
        name = f"optuna_{int(time.time() * 1000):x}_{trial.number:04d}"
        rec: dict[str, Any] = {"trial": name, "params": dict(trial.params), "error": None}

        def report(m, trial=trial):
            trial.report(m["best_val_rate_cc"], m["iteration"])
            if asha and trial.should_prune():
                raise optuna.TrialPruned()

        try:
            res = run_search_trial(base, dict(trial.params), root / name, report)
            if res.get("diverged"):
                rec["diverged"] = res["diverged"]
            study.tell(trial, res["best_val_rate_cc"])
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        ran.append(rec)
        finish_record(root / name, rec, max_t)
    return ran
