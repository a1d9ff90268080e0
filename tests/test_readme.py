"""README's Python example runs as written (it fits the quick NSNN: marked slow)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    api = [b for b in blocks if "neurocode.fit(" in b]
    assert len(api) == 1, "README's Python API example is missing"
    monkeypatch.chdir(tmp_path)  # the fit writes its run folder under runs/
    namespace = {}
    exec(compile(api[0], str(README), "exec"), namespace)
    rate_cc, baseline = (float(v) for v in capsys.readouterr().out.split()[-2:])
    assert namespace["spikes"].shape == (30, 8, 100)
    assert namespace["counts"].shape == (60, 30, 30, 49)
    assert -1.0 <= rate_cc <= 1.0 and 0.3 < baseline < 0.6
    assert (tmp_path / "runs" / "nsnn-quick-fold0-seed0" / "metrics.json").is_file()


def test_readme_own_recordings_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    own = [b for b in blocks if "ContinuousRecording.from_spike_times" in b]
    assert len(own) == 1, "README's 'Your own recordings' example is missing"
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(own[0], str(README), "exec"), namespace)
    from neurocode.data import list_recordings, load_recording

    assert list_recordings(tmp_path / "my_data.h5") == ["my_flashes", "my_movie"]
    assert load_recording(tmp_path / "my_data.h5", "my_flashes").trial_counts.tolist() == [4, 3, 5]
    clips = namespace["clips"]
    assert clips.is_clips and clips.test_stimuli is not None and clips.trial_counts[clips.test_stimuli].min() == 2
