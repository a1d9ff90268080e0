"""The GPU path: its gating (runs everywhere) and the CUDA tests (``-m cuda``, skipped without a GPU).

Until the CUDA tests below have passed on a real GPU (``neurocode.fitting.CUDA_VERIFIED`` says
where and when), ``--device auto`` means the CPU and a named CUDA device gets a one-line notice.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurocode import fitting


def cuda(test):
    """Marked ``cuda`` and skipped without a CUDA device."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")(test))


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch reports one CUDA device (nothing runs on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(fitting, "_cuda_notice_shown", False)


def test_auto_means_the_cpu_until_the_cuda_path_is_verified(fake_gpu, monkeypatch):
    assert fitting.CUDA_VERIFIED is None  # set only after `pytest -m cuda` passed on a GPU
    assert fitting.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(fitting, "CUDA_VERIFIED", "2026-12-07 on an NVIDIA H100")
    assert fitting.resolve_device("auto") == torch.device("cuda")


def test_naming_cuda_says_once_that_the_path_is_not_yet_verified(fake_gpu, capsys):
    assert fitting.resolve_device("cuda:0") == torch.device("cuda:0")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not yet been verified" in err and "proceeding" in err
    assert fitting.resolve_device("cuda") == torch.device("cuda")
    assert capsys.readouterr().err == ""  # once per process
    assert fitting.resolve_device("cpu") == torch.device("cpu")


def test_cpu_fits_say_nothing_about_cuda(fake_gpu, capsys):
    fitting.resolve_device("auto")
    fitting.resolve_device("cpu")
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------ on a GPU
KINDS = ("ln", "cnn", "cnn_cmp", "nsnn", "dsnn")


@pytest.fixture(scope="module")
def cuda_runs(tmp_path_factory):
    """One short fit per model kind on CUDA, and the LN on the CPU: {kind: RunResult}."""
    from neurocode.pipeline import fit

    out = tmp_path_factory.mktemp("cuda_runs")
    runs = {kind: fit(model=kind, out=out / kind, progress=False, epochs=2, device="cuda", threads=1)
            for kind in KINDS}
    runs["ln-cpu"] = fit(model="ln", out=out / "ln-cpu", progress=False, device="cpu", threads=1)
    return runs


@cuda
@pytest.mark.parametrize("kind", KINDS)
def test_fit_on_cuda(cuda_runs, kind):
    run = cuda_runs[kind]
    assert run.config.device == "cuda"
    m = run.metrics
    assert m["model"] == kind and math.isfinite(m["rate_cc"]) and -1 <= m["rate_cc"] <= 1
    # the LN reference is fitted on the CPU whatever the device: the same as a CPU run's
    assert m["ln_rate_cc"] == pytest.approx(cuda_runs["ln-cpu"].metrics["rate_cc"], abs=1e-6)
    if kind == "ln":  # a closed-form ridge fit: the GPU's solution is the CPU's to float precision
        assert m["rate_cc"] == pytest.approx(cuda_runs["ln-cpu"].metrics["rate_cc"], abs=1e-4)


@cuda
@pytest.mark.parametrize("kind", ["ln", "nsnn"])
def test_predict_on_cuda_matches_the_cpu(cuda_runs, kind):
    """A fitted model predicts on CUDA as on the CPU: LN rates to float tolerance; the NSNN's
    spikes have the same shape and a mean within sampling error (6 s.e.) of the CPU's."""
    from neurocode.pipeline import load_run

    results = {}
    for device in ("cuda", "cpu"):
        config, model, data = load_run(cuda_runs[kind].run_dir, device=device)
        assert next(model.parameters()).device.type == device
        results[device] = fitting.predict(config, model, data, data.test_idx, return_rates=True)
    (preds_gpu, rates_gpu), (preds_cpu, rates_cpu) = results["cuda"], results["cpu"]
    assert preds_gpu.shape == preds_cpu.shape and rates_gpu.shape == rates_cpu.shape
    if kind == "ln":
        np.testing.assert_allclose(rates_gpu, rates_cpu, rtol=1e-4, atol=1e-5)
    else:
        p = float(preds_cpu.mean())
        assert abs(float(preds_gpu.mean()) - p) < 6 * math.sqrt(p * (1 - p) / preds_cpu.size) + 1e-4


@cuda
def test_evaluate_a_cuda_run(cuda_runs):
    from neurocode.pipeline import evaluate

    run = cuda_runs["nsnn"]
    metrics = evaluate(run.run_dir)
    assert metrics["rate_cc"] == pytest.approx(run.metrics["rate_cc"], abs=1e-9)
