"""Continuous recordings: validation (each error names the field), clips, HDF5 round trip."""

import numpy as np
import pytest

from neurocode.data import ContinuousRecording, DataFormatError, Recording, load_recording

FPS = 30.0


def _recording(n_frames=600, n_cells=3, seed=0, repeats=((5.0, 7.0), (12.0, 14.0)), **kw):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 2, (n_frames, 6, 8), dtype=np.uint8) * 255
    for start, _ in repeats[1:]:
        a, b = int(round(repeats[0][0] * FPS)), int(round(start * FPS))
        frames[b: b + 60] = frames[a: a + 60]
    session = (0.0, n_frames / FPS)
    trains = [np.sort(rng.uniform(0, session[1], 200)) for _ in range(n_cells)]
    return ContinuousRecording.from_spike_times(trains, frames, np.arange(n_frames) / FPS, session,
                                                repeats=None if not repeats else list(repeats), **kw)


def test_clips_tile_non_repeated_time_and_repeats():
    rec = _recording()
    clips = rec.to_clips(clip_duration=1.0, bin_size=1 / FPS, history=0.2)
    info = clips.provenance["clips"]
    T, H = info["n_bins"], info["history_bins"]
    assert (T, H) == (30, 6) and clips.stimuli.shape[1:] == (36, 6, 8)
    assert clips.window == (0.0, 1.0) and clips.stimulus_start == pytest.approx(-0.2)
    # training clips (1 trial) never touch a repeat, stimulus history included
    starts = np.array(info["train_clip_starts"])
    for rs, re in rec.repeats:
        assert np.all((starts + 1.0 <= rs + 1e-9) | (starts - 0.2 >= re - 1e-9))
    test = clips.test_stimuli
    assert np.all(clips.trial_counts[test] == 2) and np.all(np.delete(clips.trial_counts, test) == 1)
    assert len(test) == 1  # a 2-s repeat: 0.2 s history, then one whole 1-s clip
    # every training clip's counts equal the session's binned counts over that second
    psth = clips.psth(1 / FPS)
    for i, s in enumerate(starts):
        np.testing.assert_array_equal(psth[i], rec.binned(1 / FPS, s, s + 1.0))
    # the test clip's trials are the repeats' spikes, aligned to each repeat's start
    o = info["test_clip_offsets"][0]
    both = clips.binned(1 / FPS, padded=True)[test[0]]
    for k, (rs, _) in enumerate(rec.repeats):
        np.testing.assert_array_equal(both[:, k], rec.binned(1 / FPS, rs + o, rs + o + 1.0))
    # frames on the bin grid: bin j of a clip shows the frame on screen at the bin's centre
    j = 10
    t = starts[3] + (j - H + 0.5) / FPS
    np.testing.assert_array_equal(clips.stimuli[3, j], rec.frames[int(np.floor(t * FPS))])


def test_round_trip_hdf5(tmp_path):
    rec = _recording()
    rec.save(tmp_path / "c.h5")
    back = load_recording(tmp_path / "c.h5")
    assert isinstance(back, ContinuousRecording)
    for key in ("frames", "frame_times", "spike_times_flat", "spike_offsets", "repeats"):
        np.testing.assert_array_equal(getattr(back, key), getattr(rec, key))
    assert back.session == rec.session
    clips = rec.to_clips(1.0, 0.05)
    clips.save(tmp_path / "c.h5", "clips")
    again = load_recording(tmp_path / "c.h5", "clips")
    assert isinstance(again, Recording) and again.is_clips
    np.testing.assert_array_equal(again.trial_counts, clips.trial_counts)
    np.testing.assert_array_equal(again.binned(0.05, padded=True), clips.binned(0.05, padded=True))


def test_bad_input_names_the_field():
    rng = np.random.default_rng(0)
    frames = np.zeros((10, 4, 4), np.uint8)
    times = np.arange(10) / FPS
    with pytest.raises(DataFormatError, match=r"x\.h5.*'frame_times' is not strictly increasing \(frame 4"):
        bad = times.copy()
        bad[4] = bad[3]
        ContinuousRecording.from_spike_times([[0.1]], frames, bad, (0, 1), source="x.h5")
    with pytest.raises(DataFormatError, match=r"x\.h5.*cell 1 at 1\.5 s lies outside the session"):
        ContinuousRecording.from_spike_times([[0.1], [0.2, 1.5]], frames, times, (0, 1), source="x.h5")
    with pytest.raises(DataFormatError, match=r"'frames' has frames of mixed sizes \(frame 0 is \(4, 4\), frame 2"):
        mixed = [np.zeros((4, 4))] * 2 + [np.zeros((4, 5))] + [np.zeros((4, 4))] * 7
        ContinuousRecording.from_spike_times([[0.1]], mixed, times, (0, 1))
    with pytest.raises(DataFormatError, match="presentation 1 .* shows other frames"):
        noise = rng.integers(0, 255, (60, 4, 4), dtype=np.uint8)
        ContinuousRecording.from_spike_times([[0.1]], noise, np.arange(60) / FPS, (0, 2),
                                             repeats=[[0, 0.5], [1.0, 1.5]])
    with pytest.raises(DataFormatError, match="'repeats' has overlapping"):
        _recording(repeats=((5.0, 7.0), (6.0, 8.0)))
    with pytest.raises(DataFormatError, match="'frame_times' must be"):
        ContinuousRecording.from_spike_times([[0.1]], frames, times[:5], (0, 1))


def test_ragged_trials_and_window_crop():
    rng = np.random.default_rng(3)
    trains = [[[np.sort(rng.uniform(0, 0.5, 4)) for _ in range(n)] for _ in range(2)] for n in (3, 1, 5)]
    rec = Recording.from_spike_times(trains, (0.0, 0.5), stimuli=np.zeros((3, 4, 4), np.uint8))
    assert rec.trial_counts.tolist() == [3, 1, 5] and rec.n_trials == 5 and not rec.equal_trials
    with pytest.raises(ValueError, match="padded=True"):
        rec.binned(0.05)
    counts = rec.binned(0.05, padded=True)
    mask = rec.trial_mask()
    assert counts.shape == (3, 10, 5, 2) and mask.sum() == 9 and counts.transpose(0, 2, 1, 3)[~mask].sum() == 0
    np.testing.assert_allclose(rec.psth(0.05)[1], counts[1, :, 0])
    np.testing.assert_allclose(rec.psth(0.05)[2], counts[2].mean(1))
    # subset keeps each stimulus's own trials
    sub = rec.subset([2, 1])
    assert sub.trial_counts.tolist() == [5, 1]
    np.testing.assert_array_equal(sub.binned(0.05, padded=True)[1, :, 0], counts[1, :, 0])
    crop = rec.cropped((0.1, 0.3))
    assert crop.window == (0.1, 0.3) and crop.binned(0.05, padded=True).shape == (3, 4, 5, 2)
    np.testing.assert_array_equal(crop.binned(0.05, padded=True), counts[:, 2:6])
    with pytest.raises(ValueError, match="inside the recording's window"):
        rec.cropped((0.2, 0.7))
