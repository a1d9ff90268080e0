"""Subnormal floats flushed to zero inside neurocode's calls only (neurons._kernels.SubnormalsFlushed), and
the readout's windows free of subnormal weights."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from neurocode.neurons._kernels import SubnormalsFlushed, flushes_subnormals

TINY = torch.finfo(torch.float32).tiny


@pytest.fixture(autouse=True)
def ieee_mode():
    """Each test starts with subnormals kept (whatever ran before in this process), and the mode is back after."""
    before = flushes_subnormals()
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(before)


def test_the_scope_flushes_inside_nests_and_puts_back_the_mode_it_found():
    assert not flushes_subnormals()
    assert float(torch.tensor(1e-30) * 1e-10) > 0  # IEEE 754: a subnormal result
    with SubnormalsFlushed():
        assert flushes_subnormals() and float(torch.tensor(1e-30) * 1e-10) == 0
        with SubnormalsFlushed():
            assert flushes_subnormals()
        assert flushes_subnormals()  # an inner exit leaves the outer scope's mode
    assert not flushes_subnormals()
    try:
        torch.set_flush_denormal(True)  # the user's own choice stays after a scope
        with SubnormalsFlushed():
            pass
        assert flushes_subnormals()
    finally:
        torch.set_flush_denormal(False)


def test_the_mode_is_each_threads_own():
    seen, go = {}, threading.Event()

    def other():  # created before the main thread's scope (a new thread starts in its creator's mode)
        go.wait(10)
        seen["other before"] = flushes_subnormals()
        with SubnormalsFlushed():
            seen["other inside"] = flushes_subnormals()
        seen["other after"] = flushes_subnormals()

    thread = threading.Thread(target=other)
    thread.start()
    with SubnormalsFlushed():
        go.set()
        thread.join()
        seen["main inside"] = flushes_subnormals()
    assert seen == {"other before": False, "other inside": True, "other after": False, "main inside": True}
    assert not flushes_subnormals()


def test_a_fit_flushes_inside_and_leaves_the_mode_as_it_found_it(tmp_path):
    from neurocode.pipeline import fit

    inside = []
    fit("nsnn", out=tmp_path / "run", progress=False, preset="quick", epochs=1, input_size=16, eval_trials=2,
        model_trials=2, threads=1, on_epoch=lambda epoch, record: inside.append(flushes_subnormals()))
    assert inside == [True]
    assert not flushes_subnormals() and float(torch.tensor(1e-30) * 1e-10) > 0


def test_the_readout_windows_hold_no_subnormal_weight():
    from neurocode.models.readout import GaussianReadout

    # a narrow window at a corner of a wide map: its far tail underflows
    readout = GaussianReadout(np.array([[1.0, 1.0], [16.0, 16.0]]), np.stack([np.eye(2) * 0.5, np.eye(2) * 4.0]),
                              (32, 32), channels=3)
    w = readout.windows()
    assert not bool(((w > 0) & (w < TINY)).any())
    assert bool((w == 0).any())  # the tail is there, as zeros
    torch.testing.assert_close(w.sum((1, 2)), torch.ones(2))
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(readout.pooled(x), torch.einsum("...chw,nhw->...nc", x, w.detach()))
