"""One trial of a sweep: what it is (a fit's settings and its run folder) and how it runs.

This module is what a Ray worker imports to run a trial, so it imports neither Ray nor torch at
the top. Two kinds of trial:

* a **grid trial** is one :func:`neurocode.fit` in its own run folder: fitted, resumed from its
  checkpoint (a folder holding a config or a checkpoint but no ``metrics.json``), or reused
  (``metrics.json`` with the same configuration);
* a **search trial** trains one sampled setting on one split with
  :func:`neurocode.fitting.train` and reports the validation rate CC after every validation
  epoch. It never predicts a test image: the split's test stimuli are blanked (NaN frames,
  NaN counts) before training, so a read of one would poison the score, and nothing is scored
  on them (no predictions, no ``metrics.json``).
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

#: Architecture configs a dotted setting (``rf.noise_sigma``) may address; ``arch``: whichever the fit uses.
ARCH_KEYS = ("snn", "cnn", "rf", "arch")
#: The sections of parts only some fits have (``neurocode.fitting.SECTIONS``): ``clips.duration``, ``spiking.tau_s``.
SECTION_KEYS = ("clips", "spiking", "ln", "pairs")
#: The settings whose dotted forms address a field of a dict: the above, and ``parts`` (``parts.output=NAME``).
DICT_KEYS = ARCH_KEYS + SECTION_KEYS + ("parts",)
#: Settings that stand for other config fields.
ALIASES: dict[str, tuple[str, ...]] = {
    # the membrane-noise SD of the fit's architecture (quick/movie presets: rf, the paper preset: snn)
    "sigma": ("arch.noise_sigma",),
}
#: What a sweep decides per trial and no setting may override.
AXES = ("model", "fold", "seed", "preset", "data", "recording")


class SweepError(ValueError):
    """A sweep's arguments or its output folder do not fit together (nothing was fitted)."""


# --------------------------------------------------------------------------- settings
def expand_setting(key: str, value: Any) -> dict:
    """The :func:`neurocode.fit` overrides that one setting stands for.

    ``"lr"`` -> ``{"lr": v}``; ``"rf.noise_sigma"`` -> ``{"rf": {"noise_sigma": v}}``;
    ``"sigma"`` (an alias) -> ``{"arch": {"noise_sigma": v}}``, the fit's own architecture's.
    """
    out: dict = {}
    for k in ALIASES.get(key, (key,)):
        parts = k.split(".")
        if len(parts) == 1:
            out[k] = value
        elif len(parts) == 2 and parts[0] in DICT_KEYS:
            out.setdefault(parts[0], {})[parts[1]] = value
        else:
            raise SweepError(f"setting {key!r}: a FitConfig field (lr, epochs, ...), an architecture or section "
                             f"field ({', '.join(a + '.FIELD' for a in ARCH_KEYS + SECTION_KEYS)}), a part "
                             f"(parts.ROLE) or one of {sorted(ALIASES)}")
    return out


def merge_overrides(base: dict, extra: dict) -> dict:
    """``base`` updated by ``extra``; architecture dicts (``snn``/``cnn``/``rf``/``arch``), sections
    (``clips``/``spiking``/``ln``/``pairs``) and ``parts`` merged field by field."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if k in DICT_KEYS and isinstance(v, dict):
            out[k] = {**(out.get(k) or {}), **v}
        else:
            out[k] = v
    return out


def settings_overrides(settings: dict) -> dict:
    out: dict = {}
    for k, v in settings.items():
        out = merge_overrides(out, expand_setting(k, v))
    return out


def check_settings(keys) -> None:
    """SweepError for a setting no fit has (before anything runs)."""
    from dataclasses import fields

    from neurocode.fitting import MOVED_FIELDS, PART_ROLES, SECTIONS, FitConfig
    from neurocode.models import CNNConfig, SNNConfig
    from neurocode.models.rf import RFConfig

    arch = {key: {f.name for f in fields(kind)} for key, kind in (("snn", SNNConfig), ("cnn", CNNConfig),
                                                                    ("rf", RFConfig))}
    arch["arch"] = set().union(*arch.values())
    arch.update({key: {f.name for f in fields(kind)} for key, kind in SECTIONS.items()})
    arch["parts"] = set(PART_ROLES)
    top = {f.name for f in fields(FitConfig)} - {"arch", *SECTIONS} | {"architecture", *MOVED_FIELDS}
    for key in keys:
        for k in ALIASES.get(key, (key,)):
            parts = k.split(".")
            if parts[0] in AXES:
                raise SweepError(f"setting {key!r}: {parts[0]} is an axis of the sweep itself "
                                 "(--models, --folds, --seeds, --preset, --data, --recording), not a setting")
            if len(parts) == 1 and parts[0] in top and parts[0] not in ARCH_KEYS:
                continue
            if len(parts) == 2 and parts[0] in arch and parts[1] in arch[parts[0]]:
                continue
            raise SweepError(f"unknown setting {key!r}: a FitConfig field ({', '.join(sorted(top - set(ARCH_KEYS)))}), "
                             f"an architecture or section field such as rf.noise_sigma or spiking.tau_s, a part "
                             f"({', '.join('parts.' + r for r in PART_ROLES)}), or one of {sorted(ALIASES)}")


def format_value(v: Any) -> str:
    """A setting's value in a run folder's name and a table (``0.4``, ``1e-03``, ``2x3``)."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return "x".join(format_value(x) for x in v)
    return str(v)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def run_name(model: str, fold: int, seed: int, settings: dict) -> str:
    """``{model}[-{key}{value}...]-fold{fold}-seed{seed}``, e.g. ``nsnn-sigma0.4-fold0-seed0``."""
    tag = "".join(f"-{_safe(k)}{_safe(format_value(v))}" for k, v in settings.items())
    return f"{model}{tag}-fold{fold}-seed{seed}"


# --------------------------------------------------------------------------- one trial
@dataclass
class TrialSpec:
    """One fit of a sweep, as plain data (it travels to a Ray worker as a dict).

    ``overrides`` are the fit's FitConfig overrides (the sweep's fixed ones plus this trial's
    ``settings``, expanded); ``run_dir`` is absolute.
    """

    model: str
    fold: int
    seed: int
    preset: str
    data: str | None
    recording: str | None
    overrides: dict
    settings: dict = field(default_factory=dict)
    name: str = ""
    run_dir: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrialSpec":
        return cls(**d)

    def config(self):
        """The FitConfig this trial fits (a bad setting raises SweepError naming the trial)."""
        from neurocode.fitting import make_config

        try:
            return make_config(self.model, self.preset, data=self.data, recording=self.recording, fold=self.fold,
                               seed=self.seed, **copy.deepcopy(self.overrides))
        except TypeError as exc:
            raise SweepError(f"{self.name}: {exc}") from None
        except ValueError as exc:
            raise SweepError(f"{self.name}: {exc}") from None


# --------------------------------------------------------------------------- run folders are the record
def read_metrics(run_dir: str | Path) -> dict:
    """A run folder's ``metrics.json``; SweepError naming the file when it is not a JSON object."""
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        metrics = exc
    if not isinstance(metrics, dict):
        what = f"not JSON ({metrics})" if isinstance(metrics, Exception) else "not a JSON object"
        raise SweepError(f"{path}: broken metrics.json, {what}; delete it and run the sweep again to re-score "
                         "that run from its checkpoint")
    return metrics


def folder_state(spec: TrialSpec, config, keys: dict | None = None) -> str:
    """``"done"`` (metrics.json of this configuration), ``"partial"`` (a config or checkpoint of it, no
    metrics: resume) or ``"new"``; SweepError for a folder holding another run, a run on another
    recording, or a run whose recording file changed since it was fitted
    (:func:`neurocode.pipeline.check_provenance`): never silently refitted or reused."""
    from neurocode.data.hdf5 import describe_recording, recording_key
    from neurocode.runs import RunFolder, RunFolderError

    folder = RunFolder(spec.run_dir)
    present = [n for n in (folder.CONFIG, folder.CHECKPOINT, folder.METRICS) if (folder.path / n).exists()]
    if not present:
        return "new"
    if not folder.config.exists():
        raise SweepError(f"{folder.path}: holds {', '.join(present)} without config.json; remove it or choose "
                         "another --out")
    from neurocode.fitting import FitConfig

    try:
        stored = folder.read_config(FitConfig)
    except (RunFolderError, FileNotFoundError) as exc:
        raise SweepError(str(exc)) from None
    keys = {} if keys is None else keys  # a cache of recording keys

    def key(d, r):
        if (d, r) not in keys:
            keys[(d, r)] = recording_key(d, r)
        return keys[(d, r)]

    got, want = key(stored.data, stored.recording), key(config.data, config.recording)
    if got != want:
        raise SweepError(f"{folder.path}: holds a fit on {describe_recording(got)}, not on "
                         f"{describe_recording(want)}; choose another --out")
    diff = [] if stored.model == config.model else ["model"]
    diff += config.differences(stored, ignore=("data", "recording"))
    if diff:
        old, new = stored.to_dict(), config.to_dict()
        detail = ", ".join(f"{k}: stored {old.get(k)!r}, now {new.get(k)!r}" for k in diff[:4])
        raise SweepError(f"{folder.path}: holds a run with other settings ({detail}); sweep with the settings it "
                         "was made with, or choose another --out (nothing was changed)")
    from neurocode.pipeline import check_provenance

    try:
        check_provenance(folder, stored)
    except ValueError as exc:  # RunFolderError: the file changed; ValueError: it links other files
        raise SweepError(f"{exc}. The sweep neither reuses nor refits this run: choose another --out, or remove "
                         f"{folder.path} to fit it again (nothing was changed)") from None
    if folder.metrics.exists():
        read_metrics(folder.path)  # a broken one is named before anything runs
        return "done"
    return "partial"


def run_grid_trial(spec: dict | TrialSpec, progress: bool = False) -> dict:
    """Fit (or resume) one grid trial in its run folder; returns ``{"status", "seconds", "metrics"}``.

    Runs in a Ray worker or in the sweep's own process: the same call either way.
    """
    import neurocode

    spec = spec if isinstance(spec, TrialSpec) else TrialSpec.from_dict(spec)
    run_dir = Path(spec.run_dir)
    if (run_dir / "metrics.json").exists():  # a retried trial that had finished
        return {"status": "done earlier", "seconds": 0.0, "metrics": read_metrics(run_dir)}
    resume = (run_dir / "config.json").exists() or (run_dir / "checkpoint.pt").exists()
    data, overrides = spec.data, copy.deepcopy(spec.overrides)
    overrides["recording"] = spec.recording
    if (run_dir / "config.json").exists():
        # resume with the folder's own spelling of the recording (the bundled file as null or as a path)
        stored = json.loads((run_dir / "config.json").read_text())
        data, overrides["recording"] = stored.get("data"), stored.get("recording")
    t0 = time.perf_counter()
    result = neurocode.fit(spec.model, data=data, preset=spec.preset, fold=spec.fold, seed=spec.seed, out=run_dir,
                           resume=resume, progress=progress, **overrides)
    return {"status": "resumed" if resume else "fitted", "seconds": time.perf_counter() - t0,
            "metrics": result.metrics}


def _tune_report():
    """``ray.tune.report`` (``ray.train.report`` before Ray 2.41)."""
    from ray import tune

    if hasattr(tune, "report"):
        return tune.report
    from ray import train

    return train.report


def tune_grid_trial(config: dict) -> None:
    """Ray Tune's function trainable for a grid trial (reports scalars; the run folder holds the rest)."""
    out = run_grid_trial(config["spec"])
    m = out["metrics"]
    _tune_report()({"status": out["status"], "seconds": out["seconds"],
                 **{k: m.get(k) for k in ("rate_cc", "count_cc", "val_rate_cc") if isinstance(m.get(k), float)}})


# --------------------------------------------------------------------------- search trials
def withhold_test_stimuli(data) -> None:
    """Blank the split's test stimuli in place: NaN frames and NaN responses.

    Training reads only the fit and validation stimuli (``neurocode.fitting.train``), so this
    changes nothing in a search trial; a read of a test stimulus would turn its loss or its
    validation score into NaN.
    """
    import torch

    test = torch.as_tensor(data.test_idx)
    data.images[test] = float("nan")
    data.counts[test] = float("nan")


def n_validations(config) -> int:
    """How many validation reports a search trial of ``config`` makes at most (its ASHA time axis;
    a closed-form LN fit reports once)."""
    every = int(config.val_every)
    return len({e for e in range(1, config.epochs + 1) if e % every == 0 or e == config.epochs})


def run_search_trial(base: dict, params: dict, trial_dir: str | Path, report: Callable[[dict], None]) -> dict:
    """Train one sampled setting on one split, reporting the validation rate CC; no test stimulus is read.

    Parameters
    ----------
    base : dict
        A :class:`TrialSpec` as a dict: the split, the preset and the sweep's fixed overrides.
    params : dict
        The sampled settings (``{"lr": 0.003, "sigma": 0.2}``).
    trial_dir : path
        Folder of this trial: ``config.json``, ``checkpoint.pt`` (resumed from when present),
        ``history.json`` once finished, ``params.json`` and ``curve.jsonl`` (one line per validation).
    report : callable
        Called with ``{"val_rate_cc", "best_val_rate_cc", "epoch", "iteration"}`` after every
        validation (Ray Tune's ``tune.report``, or an Optuna pruning hook).

    Returns
    -------
    dict
        ``{"best_val_rate_cc", "best_epoch", "finished": True}``, or ``"diverged"`` with the error.
    """
    import torch

    from neurocode import __version__
    from neurocode.fitting import prepare_data, train
    from neurocode.runs import RunFolder

    spec = TrialSpec.from_dict(base)
    spec.overrides = merge_overrides(spec.overrides, settings_overrides(params))
    spec.name = f"{spec.name} {params}"
    config = spec.config()
    data = prepare_data(config)
    withhold_test_stimuli(data)
    folder = RunFolder(trial_dir)
    with folder.lock():
        resume = folder.checkpoint.exists()
        if folder.config.exists():
            folder.check_same_run(config)
        folder.write_config(config, neurocode_version=__version__, torch_version=torch.__version__)
        (folder.path / "params.json").write_text(json.dumps(params))
        curve = folder.path / "curve.jsonl"
        seen = [json.loads(line) for line in curve.read_text().splitlines()] if curve.exists() and resume else []
        if not resume:
            curve.unlink(missing_ok=True)
        best = max([r["val_rate_cc"] for r in seen if math.isfinite(r["val_rate_cc"])], default=-math.inf)
        # the last epoch's validation is reported once history.json is written: a scheduler that stops
        # the trial at its last report (ASHA at max_t) finds the trial's record complete
        state: dict = {"best": best, "iteration": len(seen), "pending": None}

        def flush() -> None:
            if state["pending"] is not None:
                report(state["pending"])
                state["pending"] = None

        def on_epoch(epoch: int, record: dict) -> None:
            if "val_rate_cc" not in record:
                return
            val = float(record["val_rate_cc"])
            if math.isfinite(val):
                state["best"] = max(state["best"], val)
            state["iteration"] += 1
            row = {"epoch": epoch, "val_rate_cc": val, "loss": record.get("loss")}
            with curve.open("a") as f:
                f.write(json.dumps(row) + "\n")
            state["pending"] = {"val_rate_cc": val, "best_val_rate_cc": _finite(state["best"]), "epoch": epoch,
                                "iteration": state["iteration"]}
            if epoch < config.epochs:
                flush()

        try:
            _, history = train(config, data, checkpoint=folder.checkpoint, resume=resume, progress=False,
                               on_epoch=on_epoch)
        except FloatingPointError as exc:  # a setting that diverges is a bad setting, not a broken sweep
            flush()
            report({"val_rate_cc": -1.0, "best_val_rate_cc": _finite(state["best"]), "epoch": 0,
                    "iteration": state["iteration"] + 1, "diverged": str(exc)[:200]})
            return {"best_val_rate_cc": _finite(state["best"]), "diverged": str(exc)}
        folder.write_history(history)
        final = [h for h in history if "best_epoch" in h or "chosen_ridge" in h]
        val = float(final[-1]["val_rate_cc"]) if final else float("nan")
        if state["pending"] is None and not state["iteration"]:
            # closed-form fits (LN) validate once, at the end
            with curve.open("a") as f:
                f.write(json.dumps({"epoch": 1, "val_rate_cc": val, "loss": None}) + "\n")
            state["iteration"] = 1
            state["pending"] = {"val_rate_cc": val, "best_val_rate_cc": _finite(val), "epoch": 1, "iteration": 1}
        elif state["pending"] is None:  # stopped early by its own patience: one more report, to say it finished
            state["iteration"] += 1
            state["pending"] = {"val_rate_cc": val, "best_val_rate_cc": _finite(state["best"]),
                                "epoch": final[-1].get("best_epoch") if final else 0, "iteration": state["iteration"]}
        state["pending"]["finished"] = True
        flush()
        return {"best_val_rate_cc": _finite(val), "best_epoch": final[-1].get("best_epoch") if final else None,
                "finished": True}


def _finite(v: float) -> float:
    return float(v) if math.isfinite(v) else -1.0


def tune_search_trial(config: dict, base: dict, root: str) -> None:
    """Ray Tune's function trainable for a search trial (``config``: the sampled settings)."""
    from ray import tune

    if hasattr(tune, "get_context"):
        context = tune.get_context()
    else:  # Ray < 2.41
        from ray import train

        context = train.get_context()
    report = _tune_report()
    run_search_trial(base, dict(config), Path(root) / context.get_trial_id(), lambda m: report(m))
