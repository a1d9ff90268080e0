"""The fused kernel's build as a user meets it: one visible line, a remembered failure, `neurocode info`.

Each test runs neurocode in a subprocess under a fresh ``TORCH_EXTENSIONS_DIR`` (so no build of
this machine is touched) with ``CXX=/nonexistent`` standing for a machine without a compiler.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LAYER_CALL = ("import torch; from neurocode.neurons import NoisyLIF; "
              "print(tuple(NoisyLIF()(torch.randn(5, 2, 8)).shape))")


def _env(root: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NEUROCODE_NO_KERNEL", "NEUROCODE_ISA", "CXX")}
    env.update(TORCH_EXTENSIONS_DIR=str(root), OMP_NUM_THREADS="1", **extra)
    return env


def _run(args, env, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _memo(root: Path) -> Path:
    (memo,) = root.glob("neurocode/*/build_failed.json")
    return memo


def test_failed_build_says_one_line_stashes_torchs_log_and_is_not_retried(tmp_path):
    env = _env(tmp_path / "ext", CXX="/nonexistent")
    first = _run(["-c", LAYER_CALL], env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "(5, 2, 8)"  # the pure-torch loop ran
    lines = first.stderr.splitlines()
    assert len(lines) <= 3, first.stderr
    assert lines[0].startswith("neurocode: building the fused CPU kernel")  # visible before the attempt
    assert "could not be built" in lines[-1] and "neurocode build-kernels" in lines[-1]
    assert "WARNING" not in first.stderr and "ninja" not in first.stderr  # torch's banner and log are stashed
    memo = _memo(tmp_path / "ext")
    record = json.loads(memo.read_text())
    assert record["torch"] and record["isa"] in memo.parent.name and "/nonexistent" in record["reason"]
    log = Path(record["log"])
    assert str(log) in lines[-1] and "FAILED" in log.read_text()  # the ninja log, where the line says
    stamp = memo.stat().st_mtime_ns, log.stat().st_mtime_ns

    second = _run(["-c", LAYER_CALL], env)
    assert second.returncode == 0 and second.stdout.strip() == "(5, 2, 8)", second.stderr
    assert len(second.stderr.splitlines()) == 1, second.stderr
    assert "building" not in second.stderr and "could not be built earlier" in second.stderr
    assert (memo.stat().st_mtime_ns, log.stat().st_mtime_ns) == stamp  # no second attempt wrote them

    retry = _run(["-m", "neurocode", "build-kernels"], env)  # the explicit build step does retry
    assert retry.returncode == 1
    assert retry.stderr.startswith("neurocode: building the fused CPU kernel")
    assert len(retry.stderr.splitlines()) == 2 and "could not be built (" in retry.stderr
    assert memo.stat().st_mtime_ns != stamp[0]


def test_info_names_version_kernel_threads_devices_and_data_without_compiling(tmp_path):
    from neurocode import __version__
    from neurocode.data import bundled_path
    from neurocode.neurons import _kernels

    isa = _kernels.supported_isas()[-1]  # the least build: forced, and (fresh root) not built
    root = tmp_path / "ext"
    out = _run(["-m", "neurocode", "info"], _env(root, NEUROCODE_ISA=isa), timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith(f"neurocode {__version__} ")
    assert f"kernel: {isa} build (forced by NEUROCODE_ISA={isa}): not built yet" in text
    assert "threads: torch uses 1 of" in text and "OMP_NUM_THREADS=1" in text
    assert "devices: cpu" in text
    assert f"data: {bundled_path().parent} " in text
    assert not list(root.glob("neurocode/*/*.so")) and "building" not in out.stderr  # info never compiles

    env = _env(root, CXX="/nonexistent", NEUROCODE_ISA=isa)
    _run(["-c", LAYER_CALL], env)
    failed = _run(["-m", "neurocode", "info"], env, timeout=120)
    assert f"kernel: {isa} build (forced by NEUROCODE_ISA={isa}): failed earlier (RuntimeError" in failed.stdout
    assert "/nonexistent" in failed.stdout


@pytest.mark.slow
def test_fit_without_a_compiler_prints_at_most_three_lines(tmp_path):
    """A whole (one-epoch) NSNN fit on a machine without a compiler: torch's banner stays out."""
    env = _env(tmp_path / "ext", CXX="/nonexistent", MPLBACKEND="Agg")
    out = _run(["-m", "neurocode", "fit", "--model", "nsnn", "--epochs", "1", "--threads", "1", "--no-progress",
                "--input-size", "32", "--set", "eval_trials=8", "--out", str(tmp_path / "run")], env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(out.stderr.splitlines()) <= 3, out.stderr
    assert "could not be built" in out.stderr and "rate CC" in out.stdout


def test_a_built_library_wins_over_an_old_failure_memo(tmp_path):
    """A failure memo beside a verified library (built since, e.g. after a compiler was installed):
    the library is loaded, not the fallback, and the memo goes."""
    import shutil

    from neurocode.neurons import _kernels

    if _kernels.get_library() is None:
        pytest.skip(f"no kernel on this machine: {_kernels.failure()}")
    build = _kernels.build_directory()
    root = tmp_path / "ext"
    copy = root / build.relative_to(build.parent.parent)
    shutil.copytree(build, copy, ignore=shutil.ignore_patterns("lock", "*.lock", _kernels.FAILURE_MEMO))
    memo = copy / _kernels.FAILURE_MEMO
    memo.write_text(json.dumps({"isa": _kernels.isa(), "torch": "x", "reason": "RuntimeError: old", "log": "x"}))
    out = _run(["-c", "from neurocode.neurons import kernel_library; print(kernel_library() is not None)"],
               _env(root, NEUROCODE_ISA=_kernels.isa()))
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
    assert out.stderr == "" and not memo.exists()
