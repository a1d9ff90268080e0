"""README's Python example runs as written (it fits the quick NSNN: marked slow)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)  # the fit writes its run folder under runs/
    namespace = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    rate_cc, baseline = (float(v) for v in capsys.readouterr().out.split()[-2:])
    assert namespace["spikes"].shape == (30, 8, 100)
    assert namespace["counts"].shape == (60, 30, 30, 49)
    assert -1.0 <= rate_cc <= 1.0 and 0.3 < baseline < 0.6
    assert (tmp_path / "runs" / "nsnn-quick-fold0-seed0" / "metrics.json").is_file()
