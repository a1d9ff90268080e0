"""Running a sweep's trials on Ray Tune: the session, the grid, the Optuna + ASHA search.

Imported only when Ray is installed (``pip install "neurocode-snn[sweep]"``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from neurocode.sweep._trials import SweepError, tune_grid_trial, tune_search_trial

# quiet defaults for Tune's console output and loggers (a user's own settings win): Tune's JSON and CSV
# result loggers are passed explicitly, its TensorBoard logger is left out
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback  # noqa: E402

# Ray < 2.41 kept these in ray.train
RunConfig = getattr(tune, "RunConfig", None) or ray.train.RunConfig
FailureConfig = getattr(tune, "FailureConfig", None) or ray.train.FailureConfig


def _loggers() -> list:
    return [JsonLoggerCallback(), CSVLoggerCallback()]


def free_cores() -> int:
    """This machine's cores not busy now: the cores this process may use minus the 1-min load average (>= 1)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = int(os.getloadavg()[0])
    except (OSError, AttributeError):
        busy = 0
    return max(1, n - busy)


@contextlib.contextmanager
def session(address: str | None, cpus: int | None, log):
    """A Ray session for the block: the one already started in this process, a cluster's (``address``),
    or a local one with ``cpus`` CPUs (default: :func:`free_cores`); one the block started is shut down."""
    if ray.is_initialized():
        yield "an already running Ray session"
        return
    kw = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
    if address:
        ray.init(address=address, **kw)
        where = f"the Ray cluster at {address}"
    else:
        n = int(cpus) if cpus else free_cores()
        ray.init(num_cpus=n, **kw)
        where = f"a local Ray session with {n} CPU(s)"
    try:
        yield where
    finally:
        ray.shutdown()


def check_resources(resources: dict) -> dict:
    """SweepError if one trial needs more than the whole Ray cluster has; returns the cluster's resources."""
    have = ray.cluster_resources()
    for k, v in resources.items():
        key = k.upper() if k in ("cpu", "gpu") else k
        if v and have.get(key, 0) < v:
            raise SweepError(f"a trial asks for {v:g} {key} (--threads / --gpus-per-trial) but the Ray cluster has "
                             f"{have.get(key, 0):g}; ask for less per trial or start Ray with more")
    return have


def _name(trial) -> str:
    return trial.config["spec"]["name"]


class _Progress(tune.Callback):
    """Prints one line per finished or failed trial, as they come in."""

    def __init__(self, log, start: float):
        self.log, self.start = log, start

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name = trial.config.get("spec", {}).get("name", trial.trial_id)
        rate = result.get("rate_cc")
        score = f"rate_cc {rate:.3f}" if isinstance(rate, float) else ""
        self.log(f"[done] {name}: {score} ({result.get('status')}, {result.get('seconds', 0):.0f} s; "
                 f"{time.perf_counter() - self.start:.0f} s into the sweep)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.log(f"[error] {trial.config.get('spec', {}).get('name', trial.trial_id)}: see {trial.local_path}")


def run_grid(specs: list, resources: dict, storage: Path, log, max_failures: int = 1) -> tuple[dict, dict]:
    """Every spec as one Tune trial (``resources`` each); returns ``({name: {"status", "seconds"}}, {name: error})``.

    A trial whose worker dies is retried (``max_failures``) and resumes from its run folder's checkpoint.
    """
    trainable = tune.with_resources(tune_grid_trial, resources)
    tuner = tune.Tuner(
        trainable,
        param_space={"spec": tune.grid_search([s.to_dict() for s in specs])},
        tune_config=tune.TuneConfig(trial_name_creator=_name, trial_dirname_creator=_name, reuse_actors=True),
        run_config=RunConfig(name=f"grid-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(storage),
                                  verbose=0, failure_config=FailureConfig(max_failures=max_failures),
                                  callbacks=[_Progress(log, time.perf_counter()), *_loggers()]),
    )
    grid = tuner.fit()
    done, failed = {}, {}
    for r in grid:
        name = r.config["spec"]["name"]
        if r.error is not None:
            failed[name] = r.error
        else:
            done[name] = {"status": r.metrics.get("status"), "seconds": r.metrics.get("seconds")}
    return done, failed


def _domain(spec):
    kind, args = spec[0], spec[1:]
    if kind == "loguniform":
        return tune.loguniform(*args)
    if kind == "uniform":
        return tune.uniform(*args)
    if kind == "int":
        return tune.randint(args[0], args[1] + 1)  # inclusive upper bound, as Optuna's
    if kind == "choice":
        return tune.choice(list(args[0]))
    raise SweepError(f"unknown search distribution {kind!r}")


class _SearchRecorder(tune.Callback):
    """Hands every search trial to ``on_end`` as it ends (finished, stopped early by ASHA, or failed)."""

    def __init__(self, keys, on_end):
        self.keys, self.on_end, self.seen = list(keys), on_end, set()

    def _end(self, trial, error):
        if trial.trial_id in self.seen:
            return
        self.seen.add(trial.trial_id)
        last = trial.last_result or {}
        self.on_end({"trial": trial.trial_id, "params": {k: trial.config[k] for k in self.keys},
                     "iterations": last.get("training_iteration"), "diverged": last.get("diverged"), "error": error})

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, f"failed: see {trial.local_path}")


def run_search(base: dict, space: dict, samples: int, done: list[tuple[dict, float]], root: Path, max_t: int,
               resources: dict, storage: Path, seed: int, asha: bool, name: str, on_end=None) -> list[dict]:
    """``samples`` settings sampled by Optuna's TPE through Ray Tune (OptunaSearch), ASHA stopping the poor ones.

    ``done`` are settings already tried (with their validation score): Optuna is told them, they
    are not run again. Returns per trial ``{"trial", "params", "iterations", "error"}``.
    """
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed),
                            points_to_evaluate=[p for p, _ in done] or None,
                            evaluated_rewards=[v for _, v in done] or None)
    scheduler = ASHAScheduler(max_t=max(1, max_t), grace_period=1, reduction_factor=3) if asha else None
    trainable = tune.with_resources(tune.with_parameters(tune_search_trial, base=base, root=str(root)), resources)
    tuner = tune.Tuner(
        trainable,
        param_space={k: _domain(v) for k, v in space.items()},
        tune_config=tune.TuneConfig(metric="best_val_rate_cc", mode="max", search_alg=searcher, scheduler=scheduler,
                                    num_samples=samples, reuse_actors=True),
        run_config=RunConfig(name=f"search-{name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(storage),
                                  verbose=0, failure_config=FailureConfig(max_failures=1),
                                  callbacks=[*_loggers()] + ([_SearchRecorder(space, on_end)] if on_end else [])),
    )
    grid = tuner.fit()
    out = []
    for r in grid:
        m = r.metrics or {}
        trial = m.get("trial_id") or Path(r.path).name
        out.append({"trial": trial, "params": {k: r.config[k] for k in space},
                    "iterations": m.get("training_iteration"), "diverged": m.get("diverged"),
                    "error": None if r.error is None else str(r.error)})
    return out
