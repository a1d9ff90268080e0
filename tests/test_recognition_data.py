"""Recognition datasets offline: tiny fixtures in each library's on-disk format, no downloads.

* CIFAR-10/100: the python archives torchvision downloads (pickled batches).
* DVS-Gesture: tonic's prepared layout (``DVSGesture/ibmGestureTrain/userNN_lighting/{label}.npy``),
  read by tonic itself (skipped without tonic).
* CIFAR10-DVS: tonic's layout (class folders of .aedat4 recordings); the .aedat4 decoding is
  tonic's + the ``aedat`` package's, replaced here by a stub (layout, split and frames are ours).
* events -> frames, EventDrop.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from neurocode.recognition.data import (FramesDataset, cifar10dvs_split, drop_frame_events, event_drop,
                                        events_to_frames, load_cifar, read_cifar_split)

torch.set_num_threads(1)

EV = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])


def _events(n, seed=0, size=128, t_max=1_000_000):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EV)
    ev["x"], ev["y"] = rng.integers(0, size, n), rng.integers(0, size, n)
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    return ev


# ------------------------------------------------------------------ CIFAR python archives
def _write_cifar(root, name, per_batch=4, n_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    if name == "cifar10":
        folder, files, key = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], \
            b"labels"
    else:
        folder, files, key = root / "cifar-100-python", ["train", "test"], b"fine_labels"
    folder.mkdir(parents=True)
    written = {}
    for f in files:
        n = per_batch * (5 if name == "cifar100" and f == "train" else 1)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, n_classes, n)]
        with open(folder / f, "wb") as fh:
            pickle.dump({b"data": data, key: labels, b"batch_label": f.encode()}, fh)
        written[f] = (data, labels)
    return written


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_python_archive_is_read_in_torchvisions_layout(tmp_path, name):
    written = _write_cifar(tmp_path, name, per_batch=10, n_classes=10 if name == "cifar10" else 100)
    x, y = read_cifar_split(tmp_path, name, train=True)
    assert x.shape == (50, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (50,)
    first = written["data_batch_1" if name == "cifar10" else "train"][0][0]
    # rows are channel-major (R plane, G plane, B plane): pixel (0, 1) of the red plane is data[1]
    assert x[0, 0, 1, 0] == first[1] and x[0, 0, 0, 1] == first[1024]
    xt, yt = read_cifar_split(tmp_path, name, train=False)
    assert xt.shape == (10, 32, 32, 3)
    data = load_cifar(name, tmp_path, val_fraction=0.2, autoaugment=False)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 10)
    img, label = data.train[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and 0 <= float(img.min()) <= float(img.max()) <= 1
    assert data.n_classes == (10 if name == "cifar10" else 100) and data.static and len(data.mean) == 3
    # the batch augmentation: crop (pad 4) + flip keeps the shape
    batch = torch.stack([data.train[i][0] for i in range(4)])
    assert data.augment(batch, torch.Generator().manual_seed(0)).shape == batch.shape


def test_cifar_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*--download"):
        load_cifar("cifar10", tmp_path)
    _write_cifar(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3: not a CIFAR python batch"):
        read_cifar_split(tmp_path, "cifar10", train=True)
    with pytest.raises(ValueError, match="'cifar10' or 'cifar100'"):
        load_cifar("svhn", tmp_path)


# ------------------------------------------------------------------ events
def test_events_to_frames_counts_every_event_in_its_window_and_pixel():
    ev = np.zeros(4, EV)
    ev["x"] = [0, 127, 64, 64]
    ev["y"] = [0, 127, 10, 10]
    ev["p"] = [False, True, True, True]
    ev["t"] = [0, 1000, 499, 500]
    fr = events_to_frames(ev, (128, 128, 2), n_frames=2)
    assert fr.shape == (2, 2, 128, 128) and fr.dtype == np.int16 and fr.sum() == 4
    assert fr[0, 0, 0, 0] == 1 and fr[1, 1, 127, 127] == 1  # the last event falls in the last window
    assert fr[0, 1, 10, 64] == 1 and fr[1, 1, 10, 64] == 1  # t = 499 -> window 0, t = 500 -> window 1
    small = events_to_frames(ev, (128, 128, 2), n_frames=2, size=(48, 48))
    assert small.shape == (2, 2, 48, 48) and small[1, 1, 47, 47] == 1 and small[0, 1, 3, 24] == 1
    many = _events(5000)
    assert events_to_frames(many, (128, 128, 2), 10, (48, 48)).sum() == 5000
    with pytest.raises(ValueError, match="missing"):
        events_to_frames(np.zeros(3, [("x", int), ("y", int)]), (128, 128, 2), 2)


def test_event_drop_strategies():
    ev = _events(20000, seed=1)
    rng = np.random.default_rng(0)
    assert event_drop(ev, 0.0, rng) is ev
    kept = event_drop(ev, 0.25, rng)
    assert abs(len(kept) / len(ev) - 0.75) < 0.02 and np.isin(kept["t"], ev["t"]).all()
    timed = event_drop(ev, 0.3, np.random.default_rng(1), "time")
    gap = np.diff(np.sort(timed["t"])).max()
    assert gap >= 0.29 * (ev["t"].max() - ev["t"].min())  # one contiguous window removed
    area = event_drop(ev, 0.25, np.random.default_rng(2), "area", (128, 128, 2))
    assert abs(len(area) / len(ev) - 0.75) < 0.05
    assert len(event_drop(ev, 1.0, rng)) == 0
    with pytest.raises(ValueError, match="rho must be in"):
        event_drop(ev, 1.5)
    with pytest.raises(ValueError, match="strategy"):
        event_drop(ev, 0.1, rng, "nope")


def test_frame_event_drop_is_binomial_thinning():
    frames = torch.full((4, 2, 16, 16), 10.0)
    assert drop_frame_events(frames, 0.0) is frames
    out = drop_frame_events(frames, 0.3, torch.Generator().manual_seed(0))
    assert out.shape == frames.shape and (out <= frames).all() and (out == out.round()).all()
    assert abs(float(out.mean()) - 7.0) < 0.2
    assert float(drop_frame_events(frames, 1.0).sum()) == 0
    with pytest.raises(ValueError, match="integer event counts"):
        drop_frame_events(frames + 0.5, 0.1)


def test_cifar10dvs_split_is_900_100_per_class_in_file_order():
    targets = np.repeat(np.arange(10), 1000)
    tr, te = cifar10dvs_split(targets)
    assert len(tr) == 9000 and len(te) == 1000
    assert np.array_equal(te[:100], np.arange(900, 1000))  # class 0's last 100 recordings


def test_frames_dataset_converts_once_and_caches(tmp_path):
    class Source(list):
        targets = [3, 5]

    calls = []
    src = Source([(_events(100, 0), 3), (_events(50, 1), 5)])
    orig = src.__getitem__

    def getitem(i):
        calls.append(i)
        return orig(i)

    src.__getitem__ = getitem
    ds = FramesDataset(src, [1, 0], (128, 128, 2), n_frames=5, size=(48, 48), cache_dir=tmp_path)
    x, y = ds[0]
    assert x.shape == (5, 2, 48, 48) and x.dtype == torch.float32 and float(x.sum()) == 50 and int(y) == 5
    assert (tmp_path / "1.npy").is_file()
    x2, _ = ds[0]
    torch.testing.assert_close(x, x2)


# ------------------------------------------------------------------ tonic layouts
def _write_dvs_gesture(root):
    base = root / "DVSGesture"
    n_events = {}
    for part, users in (("ibmGestureTrain", range(1, 11)), ("ibmGestureTest", range(21, 31))):  # tonic wants >= 100
        (base / f"{part}.tar.gz").parent.mkdir(parents=True, exist_ok=True)
        (base / f"{part}.tar.gz").write_bytes(b"")  # tonic only checks that the archive is present
        for u in users:
            folder = base / part / f"user{u:02d}_fluorescent"
            folder.mkdir(parents=True)
            for label in range(11):
                n = 20 + label + u
                ev = _events(n, seed=100 * u + label, t_max=6000)
                arr = np.stack([ev["x"], ev["y"], ev["p"].astype(np.int64), ev["t"] // 1000], axis=1).astype(np.int64)
                np.save(folder / f"{label}.npy", arr)  # columns x, y, p, t (ms), as tonic's prepared files
                n_events[(part, u, label)] = n
    return n_events


def test_dvs_gesture_through_tonic(tmp_path):
    pytest.importorskip("tonic")
    from neurocode.recognition.data import load_dvs_gesture

    counts = _write_dvs_gesture(tmp_path)
    data = load_dvs_gesture(tmp_path, n_frames=4, val_fraction=0.1)
    assert (len(data.train) + len(data.val), len(data.test)) == (110, 110)
    assert data.n_classes == 11 and not data.static and data.input_shape == (2, 128, 128)
    x, y = data.test[0]
    assert x.shape == (4, 2, 128, 128)
    assert sorted(int(data.test[i][1]) for i in range(110)) == sorted(list(range(11)) * 10)
    totals = sorted(float(data.test[i][0].sum()) for i in range(110))
    assert totals == sorted(float(n) for (part, _, _), n in counts.items() if part == "ibmGestureTest")
    assert any((tmp_path / "neurocode_frames").rglob("*.npy"))
    with pytest.raises(FileNotFoundError, match="--download"):
        load_dvs_gesture(tmp_path / "empty", n_frames=4)


def test_dvs_cifar10_tonic_layout_split_and_frames(tmp_path, monkeypatch):
    tonic = pytest.importorskip("tonic")
    import tonic.datasets.cifar10dvs as mod

    from neurocode.recognition.data import load_dvs_cifar10

    base = tmp_path / "CIFAR10DVS"
    base.mkdir()
    (base / "CIFAR10DVS.zip").write_bytes(b"")
    for name in tonic.datasets.CIFAR10DVS.classes:
        (base / name).mkdir()
        for i in range(100):
            (base / name / f"cifar10_{name}_{i}.aedat4").write_bytes(b"")
    # the .aedat4 decoding (tonic.io.read_aedat4 + aedat) is stubbed: a recording's events encode its index
    dtype = np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("p", bool)])

    def fake_read(path):
        i = int(path.rsplit("_", 1)[1].split(".")[0])
        ev = np.zeros(i + 1, dtype)
        ev["t"] = np.arange(i + 1)
        ev["x"], ev["y"] = 127, 0
        return ev

    monkeypatch.setattr(mod, "read_aedat4", fake_read)
    data = load_dvs_cifar10(tmp_path, n_frames=2, val_fraction=0.0, n_train_per_class=90)
    assert (len(data.train), len(data.test)) == (900, 100) and data.input_shape == (2, 48, 48)
    x, y = data.test[0]
    assert x.shape == (2, 2, 48, 48) and float(x.sum()) == float(x[:, 0, 0, 47].sum())  # x 127 -> 47 at 48 px
    # test = each class's last 10 recordings by file name (cifar10_airplane_90 ... _99: 91 ... 100 events)
    sums = sorted(float(data.test[i][0].sum()) for i in range(100) if int(data.test[i][1]) == 0)
    assert sums == [float(n) for n in range(91, 101)]
