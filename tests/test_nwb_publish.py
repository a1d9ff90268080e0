"""NWB files a lab can publish: session metadata, nwbinspector on every kind of file neurocode
writes (0 CRITICAL, 0 BEST_PRACTICE_VIOLATION), export from the CLI (recordings and a run's
digital twin), import of lab-style files from the CLI, and one-line errors for malformed tables."""

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pytest

# nwbinspector and pynwb are in the test extra: one missing is a broken install, not a reason to skip
import nwbinspector
import pynwb
from pynwb import NWBHDF5IO, NWBFile
from pynwb.base import ImageReferences, Images
from pynwb.file import Subject
from pynwb.image import GrayscaleImage, IndexSeries

from neurocode.cli import main
from neurocode.data import ContinuousRecording, DataFormatError, Recording, load_recording
from neurocode.data.nwb import (
    NWBMetadata,
    NWBMetadataWarning,
    NWBSubject,
    read_nwb,
    spike_time_resolution,
    write_nwb,
)
from neurocode.data.nwb_metadata import ONKEN2016_METADATA, with_overrides
from neurocode.simulate import LNPoisson, flashes, simulate_flashes

README = Path(__file__).resolve().parents[1] / "README.md"
LAB = NWBMetadata(
    subject=NWBSubject(subject_id="axo-17", species="Ambystoma mexicanum", age="P14M", sex="F"),
    session_start_time=datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc),
    experimenter=("Doe, Jane",), lab="Retina lab", institution="Some University",
    experiment_description="flashed images and white noise", keywords=("retina", "salamander"),
)


def findings(path, *levels, config=None):
    """nwbinspector's findings on ``path`` at the given importance levels: ``[(level, check, message)]``.

    ``config="dandi"``: with DANDI's configuration (which raises the subject checks' importance).
    """
    from nwbinspector import Importance, inspect_nwbfile, load_config

    wanted = {Importance[level] for level in levels}
    kw = {} if config is None else {"config": load_config(config)}
    return [(m.importance.name, m.check_function_name, m.message)
            for m in inspect_nwbfile(nwbfile_path=str(path), **kw) if m.importance in wanted]


def assert_publishable(path):
    for config in (None, "dandi"):
        bad = findings(path, "CRITICAL", "BEST_PRACTICE_VIOLATION", config=config)
        assert bad == [], (config, bad)


def _white_noise(regular=True):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 2, (300, 8, 8), dtype=np.uint8) * 255
    frames[240:270] = frames[:30]
    times = 0.2 + np.arange(300) / 30 if regular else np.cumsum(rng.uniform(0.03, 0.04, 300))
    return ContinuousRecording.from_spike_times([[0.5, 1.25, 8.1], [2.0, 3.3], [7.0]], frames, times,
                                                session=(0.0, 12.5), repeats=[[0.2, 1.2], [8.2, 9.2]] if regular
                                                else None, name="wn")


# ---------------------------------------------------------------------- every kind of file passes nwbinspector
def test_bundled_export_carries_the_papers_metadata_and_passes(natural_recording, tmp_path):
    path = write_nwb(natural_recording.subset(range(4)), tmp_path / "retina2.nwb")
    assert_publishable(path)
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert nwb.subject.species == "Ambystoma mexicanum" and nwb.subject.subject_id == "onken2016-retina2"
        assert nwb.institution == "University Medical Center Göttingen" and "Gollisch" in nwb.lab
        assert "doi:10.1371/journal.pcbi.1005189" in list(nwb.related_publications)
        assert nwb.units.resolution == 1e-3  # the package's spike times are integer milliseconds
        presentations = nwb.stimulus["presentations"]
        assert presentations.timestamps is None and presentations.rate == 2.0  # one flash every 0.5 s
        assert "placeholder" in nwb.notes  # the acquisition date is not documented: said, not invented


def test_a_file_without_subject_warns_and_is_what_nwbinspector_flags(tmp_path):
    rec = Recording.from_spike_times([[[[0.1], [0.2, 0.25]]], [[[], [0.05]]]], window=(0.0, 0.3),
                                     stimuli=np.zeros((2, 4, 4), np.uint8), name="tiny")
    with pytest.warns(NWBMetadataWarning, match="without a subject"):
        path = write_nwb(rec, tmp_path / "tiny.nwb")
    assert [f[1] for f in findings(path, "CRITICAL")] == ["check_subject_exists"]
    # the same recording with a lab's metadata: nothing to report
    assert_publishable(write_nwb(rec, tmp_path / "lab.nwb", metadata=LAB))


@pytest.mark.parametrize("regular", [True, False])
def test_continuous_recording_export_passes_and_keeps_its_frame_times(tmp_path, regular):
    rec = _white_noise(regular)
    path = rec.to_nwb(tmp_path / "wn.nwb", metadata=LAB)
    assert_publishable(path)
    with NWBHDF5IO(str(path), "r") as io:
        frames = io.read().stimulus["frames"]
        assert (frames.rate is not None) == regular and (frames.timestamps is None) == regular
    back = read_nwb(path)
    np.testing.assert_array_equal(back.frame_times, rec.frame_times)  # bit for bit, rate or not
    assert back.provenance["nwb"]["metadata"]["subject"]["subject_id"] == "axo-17"


def test_bundled_movie_recording_export_passes(tmp_path):
    path = load_recording(name="movie1").to_nwb(tmp_path / "movie1.nwb")
    assert_publishable(path)


def test_readme_example_recordings_export_from_the_cli_and_pass(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    own = [b for b in blocks if "ContinuousRecording.from_spike_times" in b]
    assert len(own) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(own[0], str(README), "exec"), {})
    (tmp_path / "session.json").write_text(json.dumps(LAB.to_dict()))
    for name in ("my_flashes", "my_movie"):
        out = tmp_path / f"{name}.nwb"
        assert main(["data", "export", "my_data.h5", "--recording", name, "--out", str(out),
                     "--metadata", "session.json", "--experimenter", "Roe, Richard"]) == 0
        assert f"wrote {out}" in capsys.readouterr().out
        assert_publishable(out)
        with NWBHDF5IO(str(out), "r") as io:
            assert list(io.read().experimenter) == ["Roe, Richard"]  # the flag overrides the file


@pytest.mark.slow
def test_digital_twin_of_a_run_exports_from_the_cli_and_passes(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", "--model", "ln", "--out", str(run), "--threads", "1", "--no-progress", "--epochs", "1",
                 "--input-size", "32"]) == 0
    out = tmp_path / "twin.nwb"
    assert main(["data", "export", "--run", str(run), "--trials", "5", "--out", str(out)]) == 0
    assert "digital twin" in capsys.readouterr().out
    assert_publishable(out)
    twin = read_nwb(out)
    assert twin.shape == (12, 49, 5)  # the run's 12 held-out images, 5 sampled trials each
    with NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        assert nwb.subject.species == "Ambystoma mexicanum" and "digital twin" in nwb.subject.description
        assert nwb.units.resolution == pytest.approx(0.01)  # the model's time step
        assert "digital twin" in list(nwb.keywords)
    assert main(["data", "export", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "x.nwb")]) == 2


# ---------------------------------------------------------------------- metadata
def test_onken_metadata_names_its_placeholders():
    md = ONKEN2016_METADATA
    assert md.session_start_time is None and md.subject.age == "P0D/" and md.subject.sex == "U"
    assert "placeholders" in md.subject.description
    assert NWBMetadata.from_dict(json.loads(json.dumps(md.to_dict()))) == md


@pytest.mark.parametrize("change,message", [
    (dict(species="axolotl"), "Latin binomial"),
    (dict(species="Mus musculus domesticus"), "Latin binomial"),  # nwbinspector's form: two words
    (dict(age="14 months"), "ISO 8601"),
    (dict(sex="female"), "'M', 'F', 'O', 'U'"),
    (dict(subject_id="a/b"), "'/'"),
    (dict(session_start_time="2024-05-01T09:30:00"), "time zone"),
    (dict(related_publications=["Onken 2016"]), "doi:"),
])
def test_bad_metadata_is_refused_naming_the_field(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        with_overrides(LAB, **change)


def test_a_new_subject_needs_id_species_and_age():
    with pytest.raises(ValueError, match="--species, --age"):
        with_overrides(NWBMetadata(), subject_id="x")
    with pytest.raises(ValueError, match="unknown NWB metadata field.*'colour'"):
        with_overrides(LAB, colour="blue")
    assert with_overrides(LAB, subject_description="pigmented").subject.description == "pigmented"
    md = with_overrides(None, subject_id="x", species="Mus musculus", age="P90D", keywords=("a",))
    assert md.subject.sex == "U" and md.keywords == ("a",)


def test_default_metadata_follows_the_provenance(natural_recording):
    from neurocode.data.nwb_metadata import default_metadata

    assert default_metadata(natural_recording.provenance) == ONKEN2016_METADATA
    assert default_metadata({"note": "a lab's own recording"}) is None
    twin = default_metadata({"digital_twin_of": "/runs/ln-quick", "model": "ln",
                             "recording_provenance": natural_recording.provenance})
    assert twin.subject.species == "Ambystoma mexicanum" and "digital twin" in twin.subject.description
    assert twin.session_start_time is not None and "digital twin" in twin.keywords
    # a file read back keeps the metadata it was written with, also a twin's (no new session time)
    stored = {"digital_twin_of": "/runs/ln-quick", "nwb": {"metadata": twin.to_dict()}}
    assert default_metadata(stored) == twin


def test_spike_time_resolution_rules(natural_recording):
    assert spike_time_resolution(natural_recording) == 1e-3
    rng = np.random.default_rng(0)
    rec = Recording.from_spike_times([[[np.sort(rng.uniform(0, 0.3, 20))]]], window=(0.0, 0.3))
    assert spike_time_resolution(rec) == 1e-6  # not on any acquisition grid: the documented fallback
    on_30k = Recording.from_spike_times([[[np.arange(1, 40) * 7 / 30000]]], window=(0.0, 0.3))
    assert spike_time_resolution(on_30k) == pytest.approx(1 / 30000)
    assert spike_time_resolution(rec, NWBMetadata(spike_time_resolution=5e-5)) == 5e-5


# ---------------------------------------------------------------------- a lab's own NWB file
def _lab_file(path, rec, column="image_id"):
    """A lab-style file: images in stimulus_template, trials naming the image in ``column``, no IndexSeries."""
    nwb = NWBFile(session_description="lab flashes", identifier="lab-1",
                  session_start_time=datetime(2024, 5, 1, tzinfo=timezone.utc),
                  subject=Subject(subject_id="axo-3", species="Ambystoma mexicanum", age="P2Y", sex="M"),
                  lab="Retina lab", institution="Some University")
    imgs = [GrayscaleImage(name=f"image{i:03d}", data=im) for i, im in enumerate(rec.stimuli)]
    nwb.add_stimulus_template(Images(name="images", images=imgs,
                                     order_of_images=ImageReferences(name="order_of_images", data=imgs)))
    nwb.add_trial_column(column, "index of the flashed image")
    spikes = [[] for _ in range(rec.n_cells)]
    t = 1.0
    for s in range(rec.n_stimuli):
        for k in range(rec.trial_counts[s]):
            nwb.add_trial(start_time=t, stop_time=t + 0.3, **{column: s})
            for c in range(rec.n_cells):
                spikes[c].extend(t + rec.spike_times[s][c][k])
            t += 0.5
    for c in range(rec.n_cells):
        nwb.add_unit(spike_times=np.asarray(spikes[c]))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


@pytest.fixture()
def lab_recording():
    return simulate_flashes(LNPoisson.random(3, (16, 16), seed=3, rf_sigma_px=2), flashes(10, (16, 16), seed=4),
                            n_trials=4, seed=5)


def test_lab_file_with_an_image_id_column_imports_from_the_cli(tmp_path, lab_recording, capsys):
    path = _lab_file(tmp_path / "lab.nwb", lab_recording)
    out = tmp_path / "lab.h5"
    assert main(["data", "import", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--stimulus-column" in err and "image_id" in err  # the columns listed
    assert main(["data", "import", str(path), "--out", str(out), "--stimulus-column", "image_id"]) == 0
    back = load_recording(out, "lab")
    np.testing.assert_array_equal(back.stimuli, lab_recording.stimuli)
    np.testing.assert_array_equal(back.binned(0.01), lab_recording.binned(0.01))
    # the lab's subject survives the import and goes back out on export
    again = tmp_path / "again.nwb"
    assert main(["data", "export", str(out), "--recording", "lab", "--out", str(again)]) == 0
    with NWBHDF5IO(str(again), "r") as io:
        nwb = io.read()
        assert nwb.subject.subject_id == "axo-3" and nwb.lab == "Retina lab"
        assert nwb.session_start_time == datetime(2024, 5, 1, tzinfo=timezone.utc)
    assert_publishable(again)


def test_stimulus_column_is_for_nwb_files_only(tmp_path, lab_recording):
    lab_recording.save(tmp_path / "x.h5", "x")
    with pytest.raises(ValueError, match="stimulus_column.*NWB files"):
        load_recording(tmp_path / "x.h5", "x", stimulus_column="image_id")


@pytest.mark.slow
def test_fit_reads_a_lab_file_with_stimulus_column(tmp_path, lab_recording):
    path = _lab_file(tmp_path / "lab.nwb", lab_recording)
    run = tmp_path / "run"
    argv = ["fit", "--model", "ln", "--data", str(path), "--out", str(run), "--threads", "1", "--no-progress",
            "--epochs", "1", "--input-size", "16"]
    assert main(argv) == 2  # refused, naming the option
    assert main(argv + ["--stimulus-column", "image_id"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["nwb_stimulus_column"] == "image_id"
    assert main(["evaluate", str(run)]) == 0  # the run reads its file again with the same option


# ---------------------------------------------------------------------- malformed tables: one line, naming the field
def _rewrite(path, dataset, keep):
    """Replace ``dataset`` of an HDF5 file by its first ``keep`` entries (attributes kept)."""
    with h5py.File(path, "a") as f:
        d = f[dataset]
        attrs, values = dict(d.attrs), d[()][:keep]
        parent, name = dataset.rsplit("/", 1)
        del f[dataset]
        new = f[parent].create_dataset(name, data=values)
        for k, v in attrs.items():
            new.attrs[k] = v


def test_index_series_data_shorter_than_its_timestamps(tmp_path, lab_recording):
    path = tmp_path / "short.nwb"
    rec = lab_recording
    nwb = NWBFile(session_description="short", identifier="short", session_start_time=LAB.session_start_time)
    imgs = [GrayscaleImage(name=f"image{i:03d}", data=im) for i, im in enumerate(rec.stimuli)]
    images = Images(name="images", images=imgs, order_of_images=ImageReferences(name="order_of_images", data=imgs))
    nwb.add_stimulus_template(images)
    onsets = 1.0 + 0.5 * np.arange(int(rec.trial_counts.sum()))
    shown = np.repeat(np.arange(rec.n_stimuli), rec.trial_counts).astype(np.uint32)
    nwb.add_stimulus(IndexSeries(name="flashes", data=shown, indexed_images=images, unit="N/A", timestamps=onsets))
    for t0 in onsets:
        nwb.add_trial(start_time=t0, stop_time=t0 + 0.3)
    nwb.add_unit(spike_times=[1.1, 2.2])
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    _rewrite(path, "stimulus/presentation/flashes/data", shown.size - 3)  # pynwb itself refuses to write this
    with pytest.warns(UserWarning), pytest.raises(DataFormatError) as err:
        read_nwb(path)
    msg = str(err.value)
    n = onsets.size
    assert "\n" not in msg and "stimulus/flashes.data" in msg and f"{n - 3} image indices for {n}" in msg


def test_trials_column_shorter_than_the_table(tmp_path, lab_recording, capsys):
    path = _lab_file(tmp_path / "lab.nwb", lab_recording)
    _rewrite(path, "intervals/trials/image_id", 7)
    with pytest.raises(DataFormatError) as err:
        read_nwb(path, stimulus_column="image_id")
    msg = str(err.value)
    assert msg == f"{path}: NWB field 'trials.image_id' has 7 rows, but the table has 40 (its 'id'); every column " \
                  "needs one value per row"
    assert main(["data", "import", str(path), "--out", str(tmp_path / "x.h5"), "--stimulus-column", "image_id"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err.replace(str(path), "PATH")) < 200
