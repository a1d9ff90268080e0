"""NWB import/export (neurocode.data.nwb): exact round trips, files written with plain pynwb, bad input."""

from datetime import datetime, timezone

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402
from pynwb.base import ImageReferences, Images  # noqa: E402
from pynwb.image import GrayscaleImage, ImageSeries, IndexSeries, OpticalSeries  # noqa: E402

from neurocode.data import ContinuousRecording, DataFormatError, Recording, load_recording  # noqa: E402
from neurocode.data.nwb import import_nwb, read_nwb, write_nwb  # noqa: E402


def _nwbfile():
    return NWBFile(session_description="plain pynwb test file", identifier="test-id",
                   session_start_time=datetime(2020, 1, 1, tzinfo=timezone.utc))


def _write(nwb, path):
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def _same_recording(a, b):
    assert np.array_equal(a.spike_times_flat, b.spike_times_flat)  # bit for bit
    assert np.array_equal(a.spike_offsets, b.spike_offsets)
    assert a.window == b.window
    assert a.shape == b.shape
    assert np.array_equal(a.trial_counts, b.trial_counts)
    if a.stimuli is None:
        assert b.stimuli is None
    else:
        assert b.stimuli.dtype == a.stimuli.dtype and np.array_equal(a.stimuli, b.stimuli)
    if a.receptive_fields is None:
        assert b.receptive_fields is None
    else:
        assert np.array_equal(a.receptive_fields, b.receptive_fields)


# ---------------------------------------------------------------------- round trips
def test_bundled_natural_images_round_trip_is_exact(natural_recording, tmp_path):
    rec = natural_recording
    path = rec.to_nwb(tmp_path / "retina2.nwb")
    back = read_nwb(path)
    assert isinstance(back, Recording)
    _same_recording(rec, back)
    assert back.name == rec.name
    nwb_info = back.provenance["nwb"]
    assert nwb_info["path"] == str(path.resolve()) and len(nwb_info["sha256"]) == 64
    assert nwb_info["identifier"] and "natural_images" in nwb_info["session_description"]
    assert back.provenance["doi"] == rec.provenance["doi"]
    with pytest.raises(FileExistsError):
        write_nwb(rec, path)
    # the standard layout other tools read
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert len(nwb.units) == rec.n_cells and len(nwb.trials) == int(rec.trial_counts.sum())
        assert isinstance(nwb.stimulus["presentations"], IndexSeries)
        assert len(nwb.stimulus_template["stimuli"].images) == rec.n_stimuli


def test_ragged_shifted_window_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    counts = [2, 3, 1]
    spikes = [[[np.sort(rng.uniform(-0.1, 0.25, rng.integers(0, 6))) for _ in range(n)] for _c in range(2)]
              for n in counts]
    spikes[0][0][0] = np.array([-0.1, 0.0123456789012345, 0.25])  # spikes on both window edges
    rec = Recording.from_spike_times(spikes, window=(-0.1, 0.25), name="toy", test_stimuli=[2],
                                     stimuli=rng.random((3, 5, 7)).astype(np.float32),
                                     receptive_fields=rng.random((2, 2, 9)), provenance={"note": "toy"})
    back = read_nwb(write_nwb(rec, tmp_path / "toy.nwb"))
    _same_recording(rec, back)
    assert back.test_stimuli.tolist() == [2] and back.provenance["note"] == "toy"


def test_continuous_round_trip(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (300, 6, 8), dtype=np.uint8)
    frames[240:270] = frames[:30]
    rec = ContinuousRecording.from_spike_times(
        [[0.5, 1.25, 8.1], [2.0], []], frames, 0.2 + np.arange(300) / 30, session=(0.0, 12.5),
        repeats=[[0.2, 1.2], [8.2, 9.2]], receptive_fields=np.ones((3, 2, 4)), name="wn")
    back = read_nwb(rec.to_nwb(tmp_path / "wn.nwb"))
    assert isinstance(back, ContinuousRecording) and back.name == "wn"
    assert back.session == rec.session
    for key in ("frames", "frame_times", "spike_times_flat", "spike_offsets", "repeats", "receptive_fields"):
        assert np.array_equal(getattr(back, key), getattr(rec, key)), key
    assert back.frames.dtype == np.uint8


def test_import_nwb_to_h5(tmp_path):
    rec = Recording.from_spike_times([[[[0.1], [0.2, 0.25]]], [[[], [0.05]]]], window=(0.0, 0.3),
                                     stimuli=np.zeros((2, 4, 4), np.uint8), name="tiny")
    nwb_path = write_nwb(rec, tmp_path / "tiny.nwb")
    out = import_nwb(nwb_path, tmp_path / "tiny.h5", name="imported")
    _same_recording(rec, load_recording(out, "imported"))


# ---------------------------------------------------------------------- plain pynwb files
# 3 images, trials (stimulus) in time order 0, 1, 2, 1, 0, 2, 1 -> counts 2 / 3 / 2; 0.5-s trials every 1 s.
TRIAL_STIM = [0, 1, 2, 1, 0, 2, 1]
# spikes (s, absolute) of 4 cells
CELL_SPIKES = [
    [0.1, 1.2, 1.7, 3.05, 4.5, 6.25],  # 4.5 = stop_time of trial 4: inside (closed interval); 1.7 between trials
    [2.4],
    [],
    [0.0, 0.49, 5.3, 6.0, 6.1],
]


def _flashed_file(path, *, images=None, column="stimulus_index", starts=None, durations=None, spikes=None,
                  units=True):
    nwb = _nwbfile()
    if images is None:
        images = [np.full((16, 16), 10 * i, np.uint8) for i in range(3)]
    imgs = [GrayscaleImage(name=f"img{i}", data=im) for i, im in enumerate(images)]
    container = Images(name="images", images=imgs, description="natural images",
                       order_of_images=ImageReferences(name="order_of_images", data=imgs))
    nwb.add_stimulus_template(container)
    starts = np.arange(len(TRIAL_STIM), dtype=float) if starts is None else np.asarray(starts, float)
    durations = np.full(len(TRIAL_STIM), 0.5) if durations is None else np.asarray(durations, float)
    nwb.add_stimulus(IndexSeries(name="flashes", data=np.array(TRIAL_STIM, np.uint32), unit="N/A",
                                 indexed_images=container, timestamps=starts))
    if column:
        nwb.add_trial_column(column, "image index")
    for t0, d, s in zip(starts, durations, TRIAL_STIM):
        nwb.add_trial(start_time=t0, stop_time=t0 + d, **({column: s} if column else {}))
    if units:
        for t in CELL_SPIKES if spikes is None else spikes:
            nwb.add_unit(spike_times=np.asarray(t, float))
    return _write(nwb, path)


@pytest.mark.parametrize("column", ["stimulus_index", "shown_image", None])
def test_plain_pynwb_flashed(tmp_path, column):
    path = _flashed_file(tmp_path / "flashed.nwb", column=column)
    rec = read_nwb(path, stimulus_column=None if column in ("stimulus_index", None) else column)
    assert rec.shape == (3, 4, 3) and rec.trial_counts.tolist() == [2, 3, 2]
    assert rec.window == (0.0, 0.5) and rec.stimuli.shape == (3, 16, 16)
    assert rec.stimuli[2, 0, 0] == 20 and rec.stimuli.dtype == np.uint8
    assert rec.receptive_fields is None and rec.name == "flashed"
    st = rec.spike_times
    # stimulus 0: trials at 0 s and 4 s; stimulus 1: 1, 3, 6 s; stimulus 2: 2, 5 s
    assert st[0][0][0] == pytest.approx([0.1])
    assert st[0][0][1] == pytest.approx([0.5])  # 4.5 s, at the trial's stop_time
    assert st[1][0][0] == pytest.approx([0.2])  # 1.2 s (1.7 s lies between trials)
    assert st[1][0][1] == pytest.approx([0.05])
    assert st[1][0][2] == pytest.approx([0.25])
    assert st[2][1][0] == pytest.approx([0.4])
    assert st[2][3][0].size == 0
    assert st[0][3][0] == pytest.approx([0.0, 0.49])
    assert st[2][3][1] == pytest.approx([0.3])
    assert st[1][3][2] == pytest.approx([0.0, 0.1])
    assert rec.spike_counts()[:, 2].sum() == 0  # cell 2 never fires
    assert rec.provenance["nwb"]["session_description"] == "plain pynwb test file"


def _movie_file(path, *, rate=False, optical=False, frames=None, timestamps=None, spikes=None):
    nwb = _nwbfile()
    rng = np.random.default_rng(0)
    if frames is None:
        frames = rng.integers(0, 256, (600, 10, 12), dtype=np.uint8)
        frames[300:360] = frames[:60]  # the 2-s segment from 0 s is shown again at 10 s
    kw = dict(starting_time=0.0, rate=30.0) if rate else \
        dict(timestamps=np.arange(600) / 30.0 if timestamps is None else timestamps)
    if optical:
        series = OpticalSeries(name="movie", data=frames, unit="n.a.", distance=0.1, field_of_view=[0.2, 0.3],
                               orientation="lower left", **kw)
    else:
        series = ImageSeries(name="movie", data=frames, unit="n.a.", format="raw", **kw)
    nwb.add_stimulus(series)
    nwb.add_trial(start_time=0.0, stop_time=2.0)
    nwb.add_trial(start_time=10.0, stop_time=12.0)
    for t in [[0.5, 3.0, 10.5], [1.0, 19.5], [20.4]] if spikes is None else spikes:
        nwb.add_unit(spike_times=np.asarray(t, float))
    return _write(nwb, path), frames


@pytest.mark.parametrize("rate,optical", [(False, True), (True, False)])
def test_plain_pynwb_continuous(tmp_path, rate, optical):
    path, frames = _movie_file(tmp_path / "movie.nwb", rate=rate, optical=optical)
    rec = read_nwb(path)
    assert isinstance(rec, ContinuousRecording)
    assert np.array_equal(rec.frames, frames) and rec.frames.dtype == np.uint8
    assert np.allclose(rec.frame_times, np.arange(600) / 30.0)
    assert rec.repeats.tolist() == [[0.0, 2.0], [10.0, 12.0]]
    # session: from 0 to max(last frame + one frame = 20 s, last spike = 20.4 s, last trial stop = 12 s)
    assert rec.session == (0.0, 20.4)
    assert rec.n_cells == 3 and rec.spike_times[1].tolist() == [1.0, 19.5]
    clips = rec.to_clips(1.0, 0.1)
    assert clips.test_stimuli is not None and clips.trial_counts.max() == 2


# ---------------------------------------------------------------------- bad input
def _raises(path, *fields, **kw):
    with pytest.raises(DataFormatError) as err:
        read_nwb(path, **kw)
    msg = str(err.value)
    assert str(path) in msg, msg
    for f in fields:
        assert f in msg, msg
    return msg


def test_missing_units(tmp_path):
    _raises(_flashed_file(tmp_path / "nounits.nwb", units=False), "'units'")


def test_stimulus_timestamps_not_increasing(tmp_path):
    ts = np.arange(600) / 30.0
    ts[100], ts[101] = ts[101], ts[100]
    path, _ = _movie_file(tmp_path / "ts.nwb", timestamps=ts)
    _raises(path, "stimulus/movie.timestamps", "not strictly increasing")
    path = _flashed_file(tmp_path / "onsets.nwb", starts=[0, 1, 2, 3, 4, 6, 5])
    _raises(path, "stimulus/flashes.timestamps")


@pytest.mark.parametrize("kind", ["flashed", "continuous"])
def test_spikes_outside_session(tmp_path, kind):
    # the session starts at 0, the NWB clock's origin; a negative spike time lies outside it
    if kind == "flashed":
        path = _flashed_file(tmp_path / "neg.nwb", spikes=[[0.1], [-0.2, 0.3], [], [1.0]])
    else:
        path, _ = _movie_file(tmp_path / "neg.nwb", spikes=[[0.5], [-0.01, 1.0], [2.0]])
    msg = _raises(path, "units.spike_times", "outside the session")
    assert "unit 1" in msg


def test_frames_of_mixed_sizes(tmp_path):
    images = [np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8), np.zeros((16, 12), np.uint8)]
    _raises(_flashed_file(tmp_path / "mixed.nwb", images=images), "stimulus_template/images", "mixed sizes")


def test_colour_frames_rejected(tmp_path):
    frames = np.zeros((600, 10, 12, 3), np.uint8)
    path, _ = _movie_file(tmp_path / "rgb.nwb", frames=frames)
    _raises(path, "stimulus/movie.data", "grey")


def test_repeats_showing_other_frames(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (600, 10, 12), dtype=np.uint8)  # nothing repeated
    path, _ = _movie_file(tmp_path / "rep.nwb", frames=frames)
    _raises(path, "NWB field 'trials'", "other frames")


def test_trials_of_different_durations(tmp_path):
    durations = [0.5, 0.5, 0.5, 0.6, 0.5, 0.5, 0.5]
    _raises(_flashed_file(tmp_path / "dur.nwb", durations=durations), "trials.stop_time")


def test_missing_stimulus_column(tmp_path):
    _raises(_flashed_file(tmp_path / "col.nwb"), "trials.condition", stimulus_column="condition")


def test_without_exact_column_times_agree_to_rounding(natural_recording, tmp_path, monkeypatch):
    """A file without neurocode's spike_times_in_trial column (another writer): spike_times - start_time."""
    import neurocode.data.nwb as nwb_mod

    rec = natural_recording.subset(range(5))
    path = write_nwb(rec, tmp_path / "five.nwb")
    monkeypatch.setattr(nwb_mod, "EXACT_COLUMN", "not_a_column")
    back = read_nwb(path)
    assert np.array_equal(back.spike_offsets, rec.spike_offsets)
    assert np.allclose(back.spike_times_flat, rec.spike_times_flat, rtol=0, atol=1e-12)
    assert np.array_equal(back.binned(0.01), rec.binned(0.01))
