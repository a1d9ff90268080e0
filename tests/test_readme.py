"""README's examples run as written: the Python API (it fits the quick NSNN: marked slow), and the
'Your own recordings' snippet and the commands after it (each fit with ``--epochs 1`` added, as the
README says)."""

import json
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    api = [b for b in blocks if "neurocode.fit(" in b]
    assert len(api) == 1, "README's Python API example is missing"
    monkeypatch.chdir(tmp_path)  # the fit writes its run folder under runs/
    from neurocode import fitting

    # the example's code as written, on a shortened preset: what is checked is that it runs and
    # what it returns, not the quick preset's score (the README's first command is that check)
    quick = fitting.PRESETS["quick"]
    monkeypatch.setitem(fitting.PRESETS, "quick", {**quick, "common": {**quick["common"], "epochs": 2,
                                                                     "eval_trials": 8}})
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
    counts = load_recording(tmp_path / "my_data.h5", "my_flashes").trial_counts
    assert counts.tolist() == namespace["n_trials"].tolist() and counts.min() < counts.max()
    clips = namespace["clips"]
    assert clips.is_clips and clips.test_stimuli is not None and clips.trial_counts[clips.test_stimuli].min() == 2


def _own_data_commands() -> list[list[str]]:
    """The indented command lines after "Then, from the command line" in 'Your own recordings'."""
    text = README.read_text()
    section = text[text.index("## Your own recordings"):text.index("\n## ", text.index("## Your own recordings") + 3)]
    after = section[section.index("Then, from the command line"):]
    block = re.search(r"\n\n((?:    neurocode .*\n)+)", after).group(1)
    return [shlex.split(line) for line in block.splitlines()]


@pytest.mark.slow
def test_readme_own_recordings_commands_run(tmp_path, monkeypatch, capsys):
    from neurocode.cli import main

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    own = [b for b in blocks if "ContinuousRecording.from_spike_times" in b]
    monkeypatch.chdir(tmp_path)
    exec(compile(own[0], str(README), "exec"), {})
    commands = _own_data_commands()
    assert [c[:2] for c in commands] == [["neurocode", "data"], ["neurocode", "fit"], ["neurocode", "fit"],
                                         ["neurocode", "fit"], ["neurocode", "predict"]]
    for argv in commands:
        extra = ["--epochs", "1", "--threads", "1", "--no-progress"] if argv[1] == "fit" else []
        assert main(argv[1:] + extra) == 0, argv
    printed = capsys.readouterr().out
    assert "my_flashes" in printed and "my_movie" in printed
    flashes = json.loads((tmp_path / "runs" / "nsnn-quick-fold0-seed0" / "metrics.json").read_text())
    assert flashes["n_test_images"] == 4 and flashes["n_cells"] == 2 and flashes["window"] == [0.05, 0.5]
    ln = json.loads((tmp_path / "runs" / "ln-quick-fold0-seed0" / "config.json").read_text())
    assert ln["ln"]["ridge"] == [1.0, 10.0, 100.0] and ln["n_folds"] == 3
    movie = json.loads((tmp_path / "runs" / "nsnn-movie-fold0-seed0" / "metrics.json").read_text())
    assert movie["stimulus"] == "clips" and movie["n_cells"] == 4
    assert "held-out clips" in printed and "count CC (across clips)" in printed
    assert (tmp_path / "runs" / "nsnn-movie-fold0-seed0" / "predictions_new_clips.h5").is_file()
