"""Property-based tests (Hypothesis) of the loaders and the analysis functions.

* HDF5: random valid recordings round-trip through save/load exactly; structural corruptions
  (missing fields, wrong dtypes, wrong shapes, bad attributes) and truncated files raise
  :class:`~neurocode.data.DataFormatError`; flipped bytes raise it or load a recording that
  passed every check -- never another exception, never a crash.
* .mat (the Onken 2016 layout): the same on small synthetic ``Spikes`` files.
* Analyses: ``fano_factor``, ``psth``, ``bin_spike_times`` and
  ``prediction_cosine_similarity`` match elephant or a direct numpy formula on random valid
  input; invalid arguments raise ValueError naming the argument.

Deterministic (``derandomize=True``, no example database); sized to run in well under a
minute on one thread. ``CASES`` below sums the examples tried.
"""

import json
import string
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.spatial.distance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import neo
from elephant_reference import psth_elephant
from neurocode.analysis import (
    bin_spike_times,
    binned_counts,
    fano_factor,
    prediction_cosine_similarity,
    psth,
    spikes_to_spiketrains,
)
from neurocode.data import ContinuousRecording, DataFormatError, Recording, load_onken2016, load_recording

pytestmark = [pytest.mark.filterwarnings("ignore:Binning discarded:UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# examples per test (the closing note of issue 13 reports their sum)
N = {"h5_roundtrip": 100, "h5_continuous": 60, "h5_corrupt": 250, "h5_bytes": 100, "mat_roundtrip": 100,
     "mat_corrupt": 200, "mat_bytes": 100, "fano": 100, "fano_elephant": 40, "psth": 100, "psth_elephant": 40,
     "binning": 60, "cosine": 100, "bad_steps": 80, "empty": 40}
CASES = sum(N.values())


@contextmanager
def _folder():
    with tempfile.TemporaryDirectory(prefix="neurocode-props-") as d:
        yield Path(d)


# ====================================================================== strategies: recordings
finite = dict(allow_nan=False, allow_infinity=False, allow_subnormal=False)
text = st.text(max_size=8)  # any code point, NUL and lone surrogates included
json_value = st.one_of(st.none(), st.booleans(), st.integers(-2**53, 2**53), st.floats(**finite), text,
                       st.lists(st.integers(-100, 100), max_size=3))
provenances = st.dictionaries(st.one_of(st.sampled_from(["doi", "citation", "licence", "note"]), text), json_value,
                              max_size=4)
names = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=8)
#: The strings an HDF5 attribute can hold (h5py writes UTF-8 variable-length strings: no NUL, no lone surrogate),
#: so that a corrupted file is one a writer could make.
attr_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=8)


@st.composite
def recordings(draw) -> Recording:
    n_stim = draw(st.integers(1, 3))
    n_cells = draw(st.integers(1, 3))
    if draw(st.booleans()):
        counts = [draw(st.integers(1, 3)) for _ in range(n_stim)]
    else:
        counts = [draw(st.integers(1, 3))] * n_stim
    t0 = draw(st.floats(-1.0, 1.0, **finite))
    t1 = t0 + draw(st.floats(1e-3, 5.0, **finite))
    times = st.floats(t0, t1, **finite)
    trains = [[[np.sort(np.array(draw(st.lists(times, max_size=4)), dtype=np.float64)) for _ in range(counts[s])]
               for _ in range(n_cells)] for s in range(n_stim)]
    kw = {}
    kind = draw(st.sampled_from(["none", "uint8", "float32", "clips"]))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if kind == "uint8":
        kw["stimuli"] = draw(hnp.arrays(np.uint8, (n_stim, h, w)))
    elif kind == "float32":
        kw["stimuli"] = draw(hnp.arrays(np.float32, (n_stim, h, w), elements=st.floats(-1e3, 1e3, width=32,
                                                                                         **finite)))
    elif kind == "clips":
        n_f = draw(st.integers(1, 3))
        start = t0 - draw(st.floats(0.0, 1.0, **finite))
        kw["stimuli"] = draw(hnp.arrays(np.uint8, (n_stim, n_f, h, w)))
        kw["frame_interval"] = (t1 - start) / n_f * draw(st.floats(1.0, 2.0, **finite)) + 1e-9
        kw["stimulus_start"] = start
    if draw(st.booleans()):
        kw["receptive_fields"] = draw(hnp.arrays(np.float64, (n_cells, 2, draw(st.integers(1, 4))),
                                                 elements=st.floats(-1e3, 1e3, **finite)))
    if n_stim > 1 and draw(st.booleans()):
        kw["test_stimuli"] = draw(st.lists(st.integers(0, n_stim - 1), min_size=1, max_size=n_stim, unique=True))
    return Recording.from_spike_times(trains, (t0, t1), name=draw(names), provenance=draw(provenances), **kw)


def _assert_same(a: Recording, b: Recording) -> None:
    assert (a.name, a.shape, a.window) == (b.name, b.shape, b.window)
    for key in ("spike_times_flat", "spike_offsets", "trial_counts", "stimuli", "receptive_fields", "test_stimuli"):
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None), key
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape, key
            assert x.tobytes() == y.tobytes(), key  # bit for bit
    assert (a.frame_interval, a.stimulus_start) == (b.frame_interval, b.stimulus_start)
    assert a.provenance == b.provenance


@_settings(N["h5_roundtrip"])
@given(rec=recordings(), also=st.booleans())
def test_hdf5_round_trip_is_exact(rec, also):
    with _folder() as d:
        path = d / "recs.h5"
        if also:  # a second group is kept when another is added
            Recording.from_spike_times([[[np.array([0.5])]]], (0.0, 1.0), name="other_").save(path)
        rec.save(path)
        _assert_same(load_recording(path, rec.name), rec)
        if also:
            assert load_recording(path, "other_").spike_times_flat.tolist() == [0.5]


@st.composite
def continuous_recordings(draw) -> ContinuousRecording:
    t0 = draw(st.floats(-5.0, 5.0, **finite))
    t1 = t0 + draw(st.floats(0.01, 20.0, **finite))
    n_f = draw(st.integers(1, 5))
    starts = sorted(set(draw(st.lists(st.floats(t0, t1, **finite).filter(lambda v: v < t1), min_size=n_f,
                                      max_size=n_f))))
    frames = draw(hnp.arrays(draw(st.sampled_from([np.uint8, np.float32])), (len(starts), draw(st.integers(1, 3)),
                                                                             draw(st.integers(1, 3))),
                             elements=st.integers(0, 255)))
    trains = [np.sort(np.array(draw(st.lists(st.floats(t0, t1, **finite), max_size=5)))) for _ in
              range(draw(st.integers(1, 3)))]
    rf = draw(st.none() | hnp.arrays(np.float64, (len(trains), 2, 2), elements=st.floats(-100, 100, **finite)))
    return ContinuousRecording.from_spike_times(trains, frames, np.array(starts), (t0, t1), name=draw(names),
                                                receptive_fields=rf, provenance=draw(provenances))


@_settings(N["h5_continuous"])
@given(rec=continuous_recordings(), bad=st.sampled_from([None, "session", "frames", "frame_times", "kind"]))
def test_hdf5_continuous_round_trip_and_corruption(rec, bad):
    with _folder() as d:
        path = d / "movie.h5"
        rec.save(path)
        if bad is None:
            back = load_recording(path, rec.name)
            assert isinstance(back, ContinuousRecording)
            for key in ("frames", "frame_times", "spike_times_flat", "spike_offsets", "receptive_fields"):
                x, y = getattr(rec, key), getattr(back, key)
                assert (x is None and y is None) or (x.dtype == y.dtype and x.tobytes() == y.tobytes()), key
            assert (back.name, back.session, back.provenance) == (rec.name, rec.session, rec.provenance)
            return
        if bad == "session":
            _set(path, rec.name, "session", np.array([rec.session[1], rec.session[0]]))
        elif bad == "frames":
            _delete(path, f"{rec.name}/frames")
        elif bad == "frame_times":
            _rewrite(path, f"{rec.name}/frame_times", rec.frame_times[::-1] if rec.frame_times.size > 1 else
                     np.array([rec.session[1] + 1.0]))
        else:
            _set(path, rec.name, "kind", "movie")
        with pytest.raises(DataFormatError, match="movie.h5"):
            load_recording(path, rec.name)


# ====================================================================== HDF5 corruptions
def _rewrite(path, key, data):
    with h5py.File(path, "a") as f:
        del f[key]
        f[key] = data


def _set(path, where, attr, value):
    with h5py.File(path, "a") as f:
        f[where].attrs[attr] = value


def _delete(path, where, attr=None):
    with h5py.File(path, "a") as f:
        if attr is None:
            del f[where]
        else:
            del f[where].attrs[attr]


bad_versions = st.one_of(st.integers().filter(lambda v: v not in (1, 2)), st.floats(**finite),
                         st.sampled_from(["1", "2", b"2", True, np.array([1, 2]), np.array([2]), np.float32(2.0)]))
bad_dtypes_times = st.sampled_from([np.array([b"x"]), np.array([True, False]), np.array([1 + 2j]),
                                    np.zeros(2, dtype=[("a", "f8"), ("b", "i4")])])
bad_int_arrays = st.sampled_from(["f8", "f4", "?", "c16", "S3"])


@st.composite
def corruptions(draw, rec: Recording):
    """(description, apply(path)) of one change that makes the file invalid."""
    g = rec.name
    n_off = rec.n_trains + 1
    options = ["delete spike_times", "delete spike_offsets", "delete window", "delete shape", "delete provenance",
               "delete format", "delete root version", "root version", "group version", "kind", "format",
               "times dtype", "times 2-D", "offsets dtype", "offsets length", "offsets order", "trial_counts",
               "shape values", "shape type", "window values", "window type", "provenance", "times outside",
               "times NaN", "unsorted", "group is a dataset", "dataset is a group"]
    if rec.stimuli is not None:
        options += ["stimuli count", "stimuli dtype"]
    if rec.receptive_fields is not None:
        options += ["rf shape"]
    if rec.test_stimuli is not None:
        options += ["test_stimuli"]
    if rec.stimuli is not None and rec.stimuli.ndim == 4:
        options += ["frame_interval"]
    which = draw(st.sampled_from(options))
    if which.startswith("delete "):
        target = which[len("delete "):]
        if target in ("spike_times", "spike_offsets"):
            return which, lambda p: _delete(p, f"{g}/{target}")
        if target == "format":
            return which, lambda p: _delete(p, "/", "format")
        if target == "root version":
            return which, lambda p: _delete(p, "/", "schema_version")
        return which, lambda p: _delete(p, g, target)
    if which == "root version":
        v = draw(bad_versions)
        return f"{which} {v!r}", lambda p: _set(p, "/", "schema_version", v)
    if which == "group version":
        v = draw(bad_versions)
        return f"{which} {v!r}", lambda p: _set(p, g, "schema_version", v)
    if which == "kind":
        v = draw(st.one_of(attr_text.filter(lambda s: s not in ("stimulus_trials", "continuous")),
                           st.sampled_from([np.array([1, 2]), 3.5])))
        return f"{which} {v!r}", lambda p: _set(p, g, "kind", v)
    if which == "format":
        v = draw(st.one_of(attr_text.filter(lambda s: s != "neurocode-recordings"), st.just(np.array([1]))))
        return f"{which} {v!r}", lambda p: _set(p, "/", "format", v)
    if which == "times dtype":
        v = draw(bad_dtypes_times)
        return f"{which} {v.dtype}", lambda p: _rewrite(p, f"{g}/spike_times", v)
    if which == "times 2-D":
        return which, lambda p: _rewrite(p, f"{g}/spike_times", rec.spike_times_flat.reshape(-1, 1))
    if which == "offsets dtype":
        dt = draw(bad_int_arrays)
        v = rec.spike_offsets.astype(dt)
        return f"{which} {dt}", lambda p: _rewrite(p, f"{g}/spike_offsets", v)
    if which == "offsets length":
        n = draw(st.integers(0, n_off + 3).filter(lambda k: k != n_off))
        v = np.resize(rec.spike_offsets, n)
        return f"{which} {n}", lambda p: _rewrite(p, f"{g}/spike_offsets", v)
    if which == "offsets order":
        v = rec.spike_offsets.copy()
        i = draw(st.integers(0, n_off - 1))
        v[i] = draw(st.sampled_from([-1, rec.n_spikes + 1]))
        return f"{which} [{i}]={v[i]}", lambda p: _rewrite(p, f"{g}/spike_offsets", v)
    if which == "trial_counts":
        v = draw(st.sampled_from([rec.trial_counts.astype(float), rec.trial_counts[:-1], rec.trial_counts * 0,
                                  np.append(rec.trial_counts, 1), rec.trial_counts.astype(bool)]))
        return f"{which} {v!r}", lambda p: _rewrite(p, f"{g}/trial_counts", v)
    if which == "shape values":
        v = draw(st.sampled_from([np.array([0, 1, 1]), np.array([-1, 2, 3]), np.array([1, 2]),
                                  np.array([1, 2, 3, 4]), np.array([rec.shape[0] + 1, rec.shape[1], rec.shape[2]])]))
        return f"{which} {v!r}", lambda p: _set(p, g, "shape", v)
    if which == "shape type":
        v = draw(st.sampled_from([np.asarray(rec.shape, dtype=float) + 0.5, np.asarray(rec.shape, dtype=float),
                                  "abc", np.asarray(rec.shape).astype(bool), np.asarray(rec.shape)[None]]))
        return f"{which} {v!r}", lambda p: _set(p, g, "shape", v)
    if which == "window values":
        t0, t1 = rec.window
        v = draw(st.sampled_from([[t1, t0], [t0, t0], [t0, np.inf], [np.nan, t1], [t0], [t0, t1, t1 + 1]]))
        return f"{which} {v!r}", lambda p: _set(p, g, "window", np.asarray(v, dtype=float))
    if which == "window type":
        v = draw(st.sampled_from(["ab", np.array([True, True]), np.array([b"0", b"1"])]))
        return f"{which} {v!r}", lambda p: _set(p, g, "window", v)
    if which == "provenance":
        v = draw(st.one_of(st.sampled_from(["[]", "3", "null", '"x"', "{x", "", np.int64(4), np.array([1.5])]),
                           st.lists(st.integers(), max_size=2).map(json.dumps)))
        return f"{which} {v!r}", lambda p: _set(p, g, "provenance", v)
    if which in ("times outside", "times NaN", "unsorted"):
        v = rec.spike_times_flat.copy()
        if v.size == 0 or (which == "unsorted" and not _can_unsort(rec)):
            v = np.append(v, rec.window[1] + 1.0)  # a spike without a train
            return f"{which} (extra spike)", lambda p: _rewrite(p, f"{g}/spike_times", v)
        if which == "times outside":
            i = draw(st.integers(0, v.size - 1))
            v[i] = draw(st.sampled_from([rec.window[0] - 1e-6 - abs(rec.window[0]) * 1e-9,
                                         rec.window[1] + 1e-6 + abs(rec.window[1]) * 1e-9, np.inf, -np.inf]))
        elif which == "times NaN":
            v[draw(st.integers(0, v.size - 1))] = np.nan
        else:
            i = _unsortable(rec)
            v[i], v[i + 1] = v[i + 1], v[i]
        return which, lambda p: _rewrite(p, f"{g}/spike_times", v)
    if which == "group is a dataset":
        return which, lambda p: (_delete(p, g), _rewrite_new(p, g, np.zeros(3)))
    if which == "dataset is a group":
        key = draw(st.sampled_from(["spike_times", "spike_offsets"]))
        return f"{which} {key}", lambda p: (_delete(p, f"{g}/{key}"), _new_group(p, f"{g}/{key}"))
    if which == "stimuli count":
        v = np.concatenate([rec.stimuli, rec.stimuli[:1]])
        return which, lambda p: _rewrite(p, f"{g}/stimuli", v)
    if which == "stimuli dtype":
        v = draw(st.sampled_from([rec.stimuli.astype(bool), rec.stimuli.astype(complex),
                                  np.full(rec.stimuli.shape, np.nan)]))
        return f"{which} {v.dtype}", lambda p: _rewrite(p, f"{g}/stimuli", v)
    if which == "rf shape":
        v = rec.receptive_fields[:, :1]
        return which, lambda p: _rewrite(p, f"{g}/receptive_fields", v)
    if which == "test_stimuli":
        v = draw(st.sampled_from([np.array([rec.n_stimuli]), np.array([-1]), rec.test_stimuli.astype(float),
                                  np.zeros(0, dtype=np.int64), np.array([0, 0])]))
        return f"{which} {v!r}", lambda p: _rewrite(p, f"{g}/test_stimuli", v)
    if which == "frame_interval":
        v = draw(st.sampled_from([0.0, -1.0, np.nan, np.array([0.1, 0.2]), "x"]))
        return f"{which} {v!r}", lambda p: _set(p, f"{g}/stimuli", "frame_interval", v)
    raise AssertionError(which)


def _rewrite_new(path, key, data):
    with h5py.File(path, "a") as f:
        f[key] = data


def _new_group(path, key):
    with h5py.File(path, "a") as f:
        f.create_group(key)


def _unsortable(rec: Recording):
    """Index i such that swapping spikes i and i+1 unsorts a train, or None."""
    t, off = rec.spike_times_flat, rec.spike_offsets
    starts = set(off[:-1].tolist())
    for i in range(t.size - 1):
        if (i + 1) not in starts and t[i] < t[i + 1]:
            return i
    return None


def _can_unsort(rec: Recording) -> bool:
    return _unsortable(rec) is not None


@_settings(N["h5_corrupt"])
@given(data=st.data())
def test_hdf5_structural_corruption_is_a_data_format_error(data):
    rec = data.draw(recordings(), label="recording")
    what, corrupt = data.draw(corruptions(rec), label="corruption")
    with _folder() as d:
        path = d / "bad-file.h5"
        rec.save(path)
        corrupt(path)
        with pytest.raises(DataFormatError) as info:
            load_recording(path, rec.name)
        assert "bad-file.h5" in str(info.value), (what, str(info.value))
        assert "\n" not in str(info.value)


@_settings(N["h5_bytes"])
@given(rec=recordings(), data=st.data())
def test_hdf5_damaged_bytes_never_crash(rec, data):
    with _folder() as d:
        path = d / "bytes.h5"
        rec.save(path)
        raw = bytearray(path.read_bytes())
        if data.draw(st.booleans(), label="truncate"):
            cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
            path.write_bytes(bytes(raw[:cut]))
            with pytest.raises(DataFormatError, match="bytes.h5"):  # a truncated file is always refused
                load_recording(path, rec.name)
            return
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            i = data.draw(st.integers(0, len(raw) - 1), label="offset")
            raw[i] ^= data.draw(st.integers(1, 255), label="xor")
        path.write_bytes(bytes(raw))
        try:
            back = load_recording(path, rec.name)
        except (DataFormatError, KeyError):  # KeyError: the group's name itself was damaged
            return
        # flipped bytes in unused space, or in raw data HDF5 keeps no checksum of: what loads
        # passed every check of the Recording (sorted, inside the window, consistent offsets)
        assert isinstance(back, Recording)
        assert np.all(np.isfinite(back.spike_times_flat))
        assert back.spike_offsets[-1] == back.spike_times_flat.size


# ====================================================================== .mat (Onken 2016 layout)
@st.composite
def mat_files(draw):
    """(kind, Spikes cell array, expected trains [s][c][k] in s)."""
    kind = draw(st.sampled_from(["flashed", "movie"]))
    n_stim = draw(st.integers(1, 3)) if kind == "flashed" else 1
    n_cells, n_trials = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    top = 300 if kind == "flashed" else 20000
    dtype = draw(st.sampled_from([np.int32, np.uint16, np.float64])) if top < 65536 else np.int32
    fractional = dtype == np.float64 and draw(st.booleans())
    if fractional:
        top_train = (draw(st.integers(0, n_stim - 1)), draw(st.integers(0, n_cells - 1)), draw(st.integers(0, n_trials - 1)))
    expected = []
    spikes = np.empty((n_stim, 1), dtype=object)
    for s in range(n_stim):
        block = np.empty((n_cells, n_trials), dtype=object)
        exp_s = [[None] * n_trials for _ in range(n_cells)]
        for c in range(n_cells):
            for k in range(n_trials):
                ms = np.array(draw(st.lists(st.integers(0, top), max_size=5, unique=True)), dtype=np.float64)
                if fractional:  # plausible fractional ms: at least 1 ms apart, some spike late in the window
                    if (s, c, k) == top_train:
                        ms = np.append(ms[ms < top - 1], top)
                    ms = np.where(ms >= 1, ms - draw(st.floats(0.0, 0.99, **finite)), ms)
                layout = draw(st.sampled_from(["column", "row"]))
                stored = ms.astype(dtype)
                block[c, k] = stored.reshape(-1, 1) if layout == "column" else stored.reshape(1, -1)
                exp_s[c][k] = np.sort(stored.astype(np.float64)) / 1000.0
        spikes[s, 0] = block
        expected.append(exp_s)
    return kind, (spikes if kind == "flashed" else spikes[0, 0]), expected


def _mat_path(d: Path, kind: str) -> Path:
    return d / ("NaturalImages7.mat" if kind == "flashed" else "Movie3Exp7.mat")


@_settings(N["mat_roundtrip"])
@given(case=mat_files())
def test_mat_loader_reads_milliseconds_exactly(case):
    kind, spikes, expected = case
    with _folder() as d:
        path = _mat_path(d, kind)
        scipy.io.savemat(path, {"Spikes": spikes})
        rec = load_onken2016(path)
    assert rec.shape == (len(expected), len(expected[0]), len(expected[0][0]))
    for s, stim in enumerate(expected):
        for c, cell in enumerate(stim):
            for k, times in enumerate(cell):
                got = rec.spike_times[s][c][k]
                assert got.dtype == np.float64 and got.tobytes() == times.tobytes()
    if kind == "movie":
        last = max((t.max() for cell in expected[0] for t in cell if t.size), default=0.0)
        assert rec.window == (0.0, float(max(1, np.ceil(last - 1e-9))))


@st.composite
def mat_corruptions(draw, kind, spikes):
    """(description, variables to save) with one invalid change."""
    flashed = kind == "flashed"
    blocks = [spikes[s, 0] for s in range(spikes.shape[0])] if flashed else [spikes]
    options = ["variable name", "not a cell array", "train is text", "train is a matrix", "nan", "outside",
               "seconds", "train of cells"]
    if flashed:
        options += ["ragged blocks" if len(blocks) > 1 else "wrong grid", "block not a cell array"]
    which = draw(st.sampled_from(options))
    new = [b.copy() for b in blocks]
    s = draw(st.integers(0, len(new) - 1))
    c, k = draw(st.integers(0, new[s].shape[0] - 1)), draw(st.integers(0, new[s].shape[1] - 1))

    def pack():
        if not flashed:
            return new[0]
        out = np.empty((len(new), 1), dtype=object)
        for i, b in enumerate(new):
            out[i, 0] = b
        return out

    if which == "variable name":
        return which, {draw(st.sampled_from(["spikes", "Spike", "Data"])): pack()}
    if which == "not a cell array":
        return which, {"Spikes": np.arange(6.0).reshape(2, 3)}
    if which == "train is text":
        new[s][c, k] = "12 45"
    elif which == "train is a matrix":
        new[s][c, k] = np.array([[10.0, 20.0], [30.0, 40.0]])
    elif which == "nan":
        new[s][c, k] = np.array([[10.0], [np.nan]])
    elif which == "outside":
        new[s][c, k] = np.array([[draw(st.sampled_from([-5.0, -0.5]))]]) if flashed or draw(st.booleans()) \
            else np.array([[-1.0]])
        if flashed and draw(st.booleans()):
            new[s][c, k] = np.array([[301.0 + draw(st.integers(0, 10**6))]])
    elif which == "seconds":  # every train divided by 1000: non-integer values inside the window in s
        for b in new:
            for i in range(b.shape[0]):
                for j in range(b.shape[1]):
                    b[i, j] = np.asarray(b[i, j], dtype=np.float64) / 1000.0
        new[s][c, k] = np.array([[0.0123]])  # at least one non-integer spike
    elif which == "train of cells":
        inner = np.empty((1, 1), dtype=object)
        inner[0, 0] = np.array([[5.0]])
        new[s][c, k] = inner
    elif which == "ragged blocks":
        new[s] = new[s][:, :0] if new[s].shape[1] > 1 and draw(st.booleans()) else \
            np.concatenate([new[s], new[s][:1]], axis=0)
    elif which == "wrong grid":
        out = np.empty((1, 2), dtype=object)
        out[0, 0] = out[0, 1] = new[0]
        return which, {"Spikes": out}
    elif which == "block not a cell array":
        new[s] = np.zeros((2, 2))
    return which, {"Spikes": pack()}


@_settings(N["mat_corrupt"])
@given(data=st.data())
def test_mat_corruption_is_a_data_format_error(data):
    kind, spikes, _ = data.draw(mat_files(), label="file")
    what, variables = data.draw(mat_corruptions(kind, spikes), label="corruption")
    with _folder() as d:
        path = _mat_path(d, kind)
        scipy.io.savemat(path, variables)
        with pytest.raises(DataFormatError) as info:
            load_onken2016(path)
    assert path.name in str(info.value), (what, str(info.value))


@_settings(N["mat_bytes"])
@given(case=mat_files(), data=st.data())
def test_mat_damaged_bytes_never_crash(case, data):
    kind, spikes, _ = case
    with _folder() as d:
        path = _mat_path(d, kind)
        scipy.io.savemat(path, {"Spikes": spikes})
        raw = bytearray(path.read_bytes())
        if data.draw(st.booleans(), label="truncate"):
            raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="cut")]
            path.write_bytes(bytes(raw))
            with pytest.raises(DataFormatError, match=path.name):
                load_onken2016(path)
            return
        for _ in range(data.draw(st.integers(1, 8), label="flips")):
            i = data.draw(st.integers(0, len(raw) - 1), label="offset")
            raw[i] ^= data.draw(st.integers(1, 255), label="xor")
        path.write_bytes(bytes(raw))
        try:
            rec = load_onken2016(path)
        except DataFormatError as e:
            assert path.name in str(e)
            return
        assert isinstance(rec, Recording)  # MATLAB v5 files carry no checksum: a valid recording may load


# ====================================================================== analyses
counts_2d = st.tuples(st.integers(2, 8), st.integers(1, 4)).flatmap(
    lambda shape: hnp.arrays(np.int64, shape, elements=st.integers(0, 6)))


@_settings(N["fano"])
@given(counts=counts_2d, ddof=st.sampled_from([0, 1]))
def test_fano_factor_is_var_over_mean(counts, ddof):
    x = counts.astype(float)
    if x.shape[0] < ddof + 2:
        return
    with np.errstate(all="ignore"):
        ref = np.where(x.mean(0) > 0, x.var(0, ddof=ddof) / x.mean(0), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for valid input
        got = fano_factor(counts, ddof=ddof)
    np.testing.assert_allclose(got, ref, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(fano_factor(counts.T, axis_trials=1, ddof=ddof), ref, rtol=1e-12, equal_nan=True)


@_settings(N["fano_elephant"])
@given(counts=st.lists(st.integers(0, 6), min_size=2, max_size=8))
def test_fano_factor_matches_elephant(counts):
    from elephant.statistics import fanofactor

    trains = [neo.SpikeTrain(np.linspace(0.01, 0.29, n), units="s", t_stop=0.3) for n in counts]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fanofactor(trains)
    got = fano_factor(trains)
    assert (np.isnan(got) and np.isnan(ref)) or got == pytest.approx(ref, rel=1e-12)


psth_cases = st.tuples(st.integers(1, 12), st.integers(1, 4), st.integers(1, 3), st.sampled_from([0.001, 0.01, 0.02]),
                       st.integers(1, 3))


@_settings(N["psth"])
@given(case=psth_cases, data=st.data())
def test_psth_is_the_trial_mean_rate(case, data):
    T, trials, cells, dt, f = case
    counts = data.draw(hnp.arrays(np.int64, (T, trials, cells), elements=st.integers(0, 4)), label="counts")
    np.testing.assert_allclose(psth(counts, dt=dt), counts.mean(1) / dt, rtol=1e-12)
    if f <= T:
        n = T // f
        ref = counts[: n * f].reshape(n, f, trials, cells).mean(axis=(1, 2)) / dt
        np.testing.assert_allclose(psth(counts, dt=dt, bin_size=f * dt), ref, rtol=1e-12)
    else:
        with pytest.raises(ValueError, match="bin_size"):
            psth(counts, dt=dt, bin_size=f * dt)


@_settings(N["psth_elephant"])
@given(case=psth_cases, data=st.data())
def test_psth_of_spike_trains_matches_elephant(case, data):
    T, trials, cells, dt, f = case
    cells = min(cells, 2)
    f = min(f, T)
    counts = data.draw(hnp.arrays(np.int64, (T, trials, cells), elements=st.integers(0, 3)), label="counts")
    trains = spikes_to_spiketrains(counts, dt)
    np.testing.assert_allclose(psth(trains, bin_size=f * dt), psth_elephant(trains, f * dt), rtol=1e-9)


@st.composite
def binning_cases(draw):
    t0 = draw(st.sampled_from([0.0, -0.1, 0.25, 1.0]))
    bin_size = draw(st.sampled_from([0.001, 0.003, 0.01, 0.025, 0.1]))
    t1 = t0 + bin_size * draw(st.integers(1, 40)) + draw(st.sampled_from([0.0, bin_size / 3]))
    grid = st.integers(0, int(round((t1 - t0) / bin_size))).map(lambda i: t0 + i * bin_size)  # on bin edges
    anywhere = st.floats(t0, t1, **finite)
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    times = [[np.sort(np.array(draw(st.lists(st.one_of(grid, anywhere), max_size=6)), dtype=float))
              for _ in range(shape[1])] for _ in range(shape[0])]
    return t0, t1, bin_size, times


@_settings(N["binning"])
@given(case=binning_cases())
def test_bin_spike_times_matches_elephant(case):
    t0, t1, bin_size, times = case
    trains = [[neo.SpikeTrain(t, units="s", t_start=t0, t_stop=t1) for t in row] for row in times]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = binned_counts(trains, bin_size)
    np.testing.assert_array_equal(bin_spike_times(times, bin_size, t0, t1), ref)


@_settings(N["cosine"])
@given(p=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 4)).flatmap(
    lambda shape: hnp.arrays(np.float64, shape, elements=st.one_of(st.just(0.0), st.floats(-10, 10, **finite)))))
def test_cosine_similarity_is_the_mean_pairwise_cosine(p):
    got = np.atleast_1d(prediction_cosine_similarity(p, axis_trials=1))
    for s in range(p.shape[0]):
        v = p[s][np.any(p[s] != 0, axis=1)]
        v = v / np.abs(v).max(axis=1, keepdims=True)  # cosines are scale-free; avoids underflow in pdist
        if len(v) < 2:
            assert np.isnan(got[s])
        else:
            assert got[s] == pytest.approx(np.mean(1 - scipy.spatial.distance.pdist(v, "cosine")), abs=1e-9)


bad_steps = st.one_of(st.floats(max_value=0.0, allow_nan=False, allow_subnormal=False), st.just(float("nan")),
                      st.just(float("inf")), st.floats(0.31, 1e6, **finite))


@_settings(N["bad_steps"])
@given(bad=bad_steps, which=st.sampled_from(["psth dt", "psth bin_size", "neo bin_size", "bin_spike_times",
                                              "spikes_to_spiketrains"]))
def test_invalid_bin_size_or_dt_names_the_argument(bad, which):
    counts = np.ones((30, 2, 2))  # 0.3 s at 10 ms
    if which == "psth dt":
        if bad > 0 and np.isfinite(bad):
            return  # any positive dt is a valid bin width of the counts
        call, name = (lambda: psth(counts, dt=bad)), "dt"
    elif which == "psth bin_size":
        call, name = (lambda: psth(counts, dt=0.01, bin_size=bad)), "bin_size"
    elif which == "neo bin_size":
        trains = spikes_to_spiketrains(counts, 0.01)
        call, name = (lambda: psth(trains, bin_size=bad)), "bin_size"
    elif which == "bin_spike_times":
        call, name = (lambda: bin_spike_times([np.array([0.1])], bad, 0.0, 0.3)), "bin_size"
    else:
        if bad > 0 and np.isfinite(bad):
            return
        call, name = (lambda: spikes_to_spiketrains(counts, bad)), "dt"
    with pytest.raises(ValueError, match=rf"^{name}[ =]"):
        call()


@_settings(N["empty"])
@given(shape=st.lists(st.integers(0, 3), min_size=2, max_size=4).filter(lambda s: 0 in s),
       which=st.sampled_from(["fano", "psth", "cosine"]))
def test_empty_arrays_are_a_value_error(shape, which):
    x = np.zeros(shape)
    with pytest.raises(ValueError, match="is empty"):
        if which == "fano":
            fano_factor(x)
        elif which == "psth":
            psth(x if x.ndim >= 3 else x[..., None], dt=0.01)
        else:
            prediction_cosine_similarity(x)
