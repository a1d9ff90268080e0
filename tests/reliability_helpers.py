"""What the reliability tests share: the CLI as a call, and a run on a private copy of the bundled recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurocode import cli
from neurocode.pipeline import fit


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """``neurocode ARGV`` in this process: (exit status, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def data_copy(tmp_path_factory) -> Path:
    """The bundled recording copied to a file the test module may change (one copy per module)."""
    from neurocode.data import bundled_path

    dst = tmp_path_factory.mktemp("data") / "retina.h5"
    dst.write_bytes(bundled_path().read_bytes())
    return dst


@pytest.fixture(scope="module")
def ln_run(tmp_path_factory, data_copy) -> Path:
    """An LN fit on ``data_copy`` (one per test module)."""
    out = tmp_path_factory.mktemp("runs") / "ln"
    fit("ln", data=data_copy, out=out, progress=False, threads=1)
    return out
