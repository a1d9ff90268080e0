"""Sweeps and hyper-parameter search over fits, on Ray Tune: ``neurocode.sweep(...)``, ``neurocode sweep``.

A sweep fits models x folds x seeds x settings; each fit is one Ray Tune trial and one
:func:`neurocode.fit` run folder under ``OUT/runs/``. The run folders are the record: a fit whose
folder holds ``metrics.json`` of the same configuration is never redone, one holding a checkpoint
is resumed from it (also when Ray retries a trial whose worker died), so the same call continues a
stopped sweep and a finished one only collects the table.

* **Grid mode** (``grid={setting: [values]}``, ``--set KEY=V1,V2``): every combination.
* **Search mode** (``search={setting: distribution}``, ``--search KEY=DIST:LOW:HIGH``): for each
  fit, Optuna's TPE sampler (Ray Tune's ``OptunaSearch``) proposes settings, each trained on the
  split's training stimuli and scored on its **validation** stimuli (ASHA stops poor ones early);
  the test stimuli are blanked in those trials and never read. The best setting is refitted with
  :func:`neurocode.fit`, the only step that reads the test stimuli.

Ray runs locally by default (``num_cpus`` = the free cores; a trial reserves ``threads`` CPUs, so
trials x threads never exceed the cores), or on a cluster (``address=``). Ray is an optional extra
(``pip install "neurocode-snn[sweep]"``): without it the same fits run one after another in this
process, with identical results.

Outputs in ``OUT``: ``results.csv`` / ``results.json`` (a row per fit; the JSON adds the protocol,
the summary, the searches' choices and what this call did), ``summary.csv`` (mean ± SD per model and
setting, baseline and ceiling rows), ``comparison.png``; per searched fit ``search/NAME/``:
``best.json`` (the chosen settings and their validation score), ``trials.csv``,
``validation_curve.csv`` / ``.png``.

``neurocode.sweep`` is this module, and calling it calls :func:`sweep`.
"""

from __future__ import annotations

import sys as _sys
import types as _types

from neurocode.sweep._engine import DISTRIBUTIONS, SweepResult, parse_distribution, sweep
from neurocode.sweep._trials import ALIASES, SweepError, run_name
from neurocode.sweep.cli import add_sweep_parser, run_sweep

__all__ = ["sweep", "SweepResult", "SweepError", "add_sweep_parser", "run_sweep", "run_name", "ALIASES",
           "DISTRIBUTIONS", "parse_distribution"]


class _CallableModule(_types.ModuleType):
    """``neurocode.sweep(...)`` is :func:`sweep` (the module stays importable as ``neurocode.sweep``)."""

    def __call__(self, *args, **kwargs) -> SweepResult:
        return sweep(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
