"""Recognition datasets: the bundled digits, CIFAR-10/100, DVS-Gesture and CIFAR10-DVS.

* ``digits`` -- scikit-learn's bundled 8x8 handwritten digits (1797 images, offline): a fixed,
  stratified split (``split_seed``, default 0) into training (60 %), validation (10 %) and test
  (30 %, 540 images). Pixels scaled to [0, 1].
* ``cifar10`` / ``cifar100`` -- the CIFAR python archives (``cifar-10-batches-py/``,
  ``cifar-100-python/``) read from ``data_dir``; ``download=True`` fetches them through
  torchvision (imported only then). Training augmentation as the paper: random crop (pad 4),
  horizontal flip and AutoAugment (AutoAugment needs torchvision; without it a warning says it
  is skipped). z-scoring with the training statistics happens inside the model.
* ``dvs-gesture`` -- through tonic (``tonic.datasets.DVSGesture``): 128x128, 11 classes, the
  official train/test split. ``dvs-cifar10`` -- through tonic (``tonic.datasets.CIFAR10DVS``,
  reading .aedat4 needs the ``aedat`` package): the 9k/1k split (per class, the first 900
  recordings in file order train, the last 100 test), downsampled to 48x48. Events become
  ``T`` frames of per-polarity event counts over equal time windows (:func:`events_to_frames`),
  cached on disk as int16 under ``data_dir/neurocode_frames/``.

Every dataset keeps a validation set carved from its training set (``val_fraction``, seeded):
epochs and settings are chosen on it, the test set is read once at the end.
"""

from __future__ import annotations

import math
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

__all__ = ["ClassificationData", "DATASETS", "load_dataset", "load_digits_data", "load_cifar", "read_cifar_split",
           "events_to_frames", "event_drop", "drop_frame_events", "FramesDataset", "random_crop_flip",
           "frames_augment"]

DATASETS = ("digits", "cifar10", "cifar100", "dvs-gesture", "dvs-cifar10")

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


@dataclass
class ClassificationData:
    """A dataset split three ways.

    Attributes
    ----------
    name : str
    train, val, test : torch.utils.data.Dataset
        Items ``(x, label)``: ``x`` is ``[C, H, W]`` (static) or ``[T, C, H, W]`` (frames).
    n_classes : int
    input_shape : tuple (C, H, W)
    static : bool
        Static images (presented at every step) or event frames.
    mean, std : tuple of float or None
        Per-channel training statistics for the model's input normalisation (static data).
    augment : callable or None
        ``augment(x_batch, generator) -> x_batch`` applied to training batches.
    pixel_range : tuple or None
        Valid input range (attacks clamp to it), (0, 1) for images.
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    n_classes: int
    input_shape: tuple[int, int, int]
    static: bool
    mean: tuple | None = None
    std: tuple | None = None
    augment: Callable | None = None
    pixel_range: tuple | None = (0.0, 1.0)
    class_names: list = field(default_factory=list)

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} validation / {len(self.test)} test, "
                f"{self.n_classes} classes, input {self.input_shape}{'' if self.static else ' frames'}")


def _split_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of ``range(len(labels))`` into (rest, held) with ``fraction`` held out."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction!r}")
    idx = np.arange(len(labels))
    if fraction == 0:
        return idx, idx[:0]
    from sklearn.model_selection import train_test_split

    try:
        rest, held = train_test_split(idx, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:  # a class too rare to stratify (tiny datasets): a plain seeded split
        rest, held = train_test_split(idx, test_size=fraction, random_state=seed)
    return np.sort(rest), np.sort(held)


def _channel_stats(x: Tensor) -> tuple[tuple, tuple]:
    dims = [d for d in range(x.dim()) if d != 1]
    return tuple(x.mean(dims).tolist()), tuple(x.std(dims).clamp(min=1e-6).tolist())


# ------------------------------------------------------------------ digits
def load_digits_data(val_fraction: float = 0.1, test_fraction: float = 0.3, split_seed: int = 0) -> ClassificationData:
    """scikit-learn's bundled 8x8 digits with a fixed stratified split (no download).

    Parameters
    ----------
    val_fraction, test_fraction : float
        Of all 1797 images (defaults: 180 validation, 540 test).
    split_seed : int
        Seed of the split (fixed by default: every run sees the same test images).
    """
    from sklearn.datasets import load_digits

    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction and test_fraction must be in [0, 1) with a sum below 1, got "
                         f"{val_fraction!r} and {test_fraction!r}")
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)  # [N, 1, 8, 8] in [0, 1]
    y = torch.tensor(d.target, dtype=torch.int64)
    rest, test = _split_indices(d.target, test_fraction, split_seed)
    tr, va = _split_indices(d.target[rest], val_fraction / (1 - test_fraction), split_seed + 1)
    train, val = rest[tr], rest[va]
    mean, std = _channel_stats(x[train])
    return ClassificationData("digits", TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val]),
                              TensorDataset(x[test], y[test]), 10, (1, 8, 8), True, mean, std, None, (0.0, 1.0),
                              [str(i) for i in range(10)])


# ------------------------------------------------------------------ CIFAR
#: The only callables a CIFAR batch may name: numpy's array and dtype reconstruction (numpy 1
#: and 2 spellings, pickle protocols 2 to 5) and the bytes decoding of protocol-2 pickles. A
#: batch is data: anything else (``os.system``, ``builtins.eval``, a class of some module) is
#: refused before it is called.
_CIFAR_PICKLE_GLOBALS = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
})


class _BatchUnpickler(pickle.Unpickler):
    """Reads a CIFAR batch (dicts, lists, bytes, str, ints and numpy arrays) and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR batch holds only arrays, "
                                         "lists, dicts, bytes, str and ints (the file is not run as code)")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id: a CIFAR batch holds only plain data")

def read_cifar_split(root: str | os.PathLike, name: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 32, 32, 3]`` uint8 and labels ``[N]`` of the CIFAR python archive in ``root``.

    The on-disk format is the one torchvision downloads: ``cifar-10-batches-py/data_batch_{1..5}``,
    ``test_batch`` (key ``labels``) or ``cifar-100-python/train``, ``test`` (``fine_labels``),
    each a pickled dict with ``data`` ``[N, 3072]`` (channel-major rows).
    """
    folder = Path(root) / CIFAR_FOLDERS[name]
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        key = b"labels"
    else:
        files = ["train" if train else "test"]
        key = b"fine_labels"
    xs, ys = [], []
    for f in files:
        path = folder / f
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file ({name} is not in --data-dir {root}; pass --download "
                                    "to fetch it with torchvision)")
        try:
            with open(path, "rb") as fh:
                d = _BatchUnpickler(fh, encoding="bytes").load()
            data = np.asarray(d[b"data"], dtype=np.uint8)
            labels = np.asarray(d[key], dtype=np.int64)
        except (KeyError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a CIFAR python batch ({type(exc).__name__}: {exc})") from None
        if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise ValueError(f"{path}: field 'data' must be [N, 3072] with N labels, got {data.shape} and "
                             f"{len(labels)} labels")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def _download_cifar(root: Path, name: str) -> None:
    try:
        from torchvision import datasets  # lazy: only to download
    except ImportError:
        raise ImportError("downloading CIFAR needs torchvision (pip install torchvision, matching your torch), or put "
                          f"the python archive's folder {CIFAR_FOLDERS[name]}/ under --data-dir") from None
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    for train in (True, False):
        cls(str(root), train=train, download=True)


class _ImageDataset(Dataset):
    """uint8 HWC images -> float [C, H, W] in [0, 1], with an optional per-sample transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None):
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # [N, C, H, W] uint8
        self.labels = torch.from_numpy(labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x.float() / 255.0, self.labels[i]


def _autoaugment(name: str):
    try:
        from torchvision.transforms import AutoAugment, AutoAugmentPolicy
    except ImportError:
        warnings.warn("torchvision is not installed: CIFAR training runs without AutoAugment (random crop and flip "
                      "only)", RuntimeWarning, stacklevel=3)
        return None
    return AutoAugment(AutoAugmentPolicy.CIFAR10)


def random_crop_flip(x: Tensor, generator: torch.Generator | None = None, padding: int = 4) -> Tensor:
    """Random crop (zero padding ``padding``) and horizontal flip of a batch ``[B, C, H, W]`` (or frames
    ``[B, T, C, H, W]``, one crop per sample)."""
    B = x.shape[0]
    H, W = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
    flip = torch.rand(B, generator=generator) < 0.5
    out = torch.empty_like(x)
    for b in range(B):
        crop = padded[b, ..., int(dy[b]):int(dy[b]) + H, int(dx[b]):int(dx[b]) + W]
        out[b] = crop.flip(-1) if flip[b] else crop
    return out


def frames_augment(x: Tensor, generator: torch.Generator | None = None, max_shift: int = 5) -> Tensor:
    """DVS training augmentation (TET's for DVS-CIFAR): horizontal flip and a random translation of up to
    ``max_shift`` pixels (rolled), one per sample of ``[B, T, C, H, W]``."""
    B = x.shape[0]
    flip = torch.rand(B, generator=generator) < 0.5
    shifts = torch.randint(-max_shift, max_shift + 1, (B, 2), generator=generator)
    out = torch.empty_like(x)
    for b in range(B):
        f = x[b].flip(-1) if flip[b] else x[b]
        out[b] = torch.roll(f, shifts=(int(shifts[b, 0]), int(shifts[b, 1])), dims=(-2, -1))
    return out


def load_cifar(name: str = "cifar10", data_dir: str | os.PathLike | None = None, download: bool = False,
               val_fraction: float = 0.1, split_seed: int = 0, autoaugment: bool = True) -> ClassificationData:
    """CIFAR-10/100 from the python archive in ``data_dir`` (default ``~/.neurocode/data``).

    Training images get random crop + flip (per batch, in the training loop) and AutoAugment
    (per image, when torchvision is installed and ``autoaugment``).
    """
    if name not in CIFAR_FOLDERS:
        raise ValueError(f"dataset must be 'cifar10' or 'cifar100', got {name!r}")
    root = Path(data_dir).expanduser() if data_dir is not None else Path("~/.neurocode/data").expanduser()
    if not (root / CIFAR_FOLDERS[name]).is_dir():
        if not download:
            raise FileNotFoundError(f"{root / CIFAR_FOLDERS[name]}: no such folder ({name} is not in --data-dir "
                                    f"{root}; pass --download to fetch it with torchvision)")
        _download_cifar(root, name)
    x_train, y_train = read_cifar_split(root, name, True)
    x_test, y_test = read_cifar_split(root, name, False)
    rest, held = _split_indices(y_train, val_fraction, split_seed)
    transform = _autoaugment(name) if autoaugment else None
    mean = tuple((x_train[rest].reshape(-1, 3).mean(0) / 255.0).tolist())
    std = tuple((x_train[rest].reshape(-1, 3).std(0) / 255.0).tolist())
    n_classes = 10 if name == "cifar10" else 100
    return ClassificationData(
        name, _ImageDataset(x_train[rest], y_train[rest], transform), _ImageDataset(x_train[held], y_train[held]),
        _ImageDataset(x_test, y_test), n_classes, (3, 32, 32), True, mean, std, random_crop_flip, (0.0, 1.0))


# ------------------------------------------------------------------ events
def events_to_frames(events: np.ndarray, sensor_size: tuple[int, int, int], n_frames: int,
                     size: tuple[int, int] | None = None) -> np.ndarray:
    """Event counts per polarity in ``n_frames`` equal time windows.

    Parameters
    ----------
    events : structured array with fields ``x``, ``y``, ``p``, ``t`` (tonic's layout)
    sensor_size : (W, H, P)
        The sensor (tonic's ``sensor_size``), e.g. (128, 128, 2).
    n_frames : int
        T: the recording's time span [t_first, t_last] cut into T equal windows (like tonic's
        ``ToFrame(n_time_bins=T)``); the last event falls in the last window.
    size : (H, W), optional
        Output resolution; coordinates are scaled ``x * W // sensor_W`` (48x48 for DVS-CIFAR).

    Returns
    -------
    np.ndarray [T, P, H, W] int16
    """
    W0, H0, P = (int(v) for v in sensor_size)
    H, W = (H0, W0) if size is None else (int(size[0]), int(size[1]))
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames!r}")
    missing = {"x", "y", "p", "t"} - set(events.dtype.names or ())
    if missing:
        raise ValueError(f"events must be a structured array with fields x, y, p, t; missing {sorted(missing)}")
    frames = np.zeros((n_frames, P, H, W), dtype=np.int64)
    if len(events) == 0:
        return frames.astype(np.int16)
    t = events["t"].astype(np.float64)
    t0, t1 = t.min(), t.max()
    span = max(t1 - t0, 1e-12)
    k = np.minimum(((t - t0) / span * n_frames).astype(np.int64), n_frames - 1)
    x = np.clip(events["x"].astype(np.int64) * W // W0, 0, W - 1)
    y = np.clip(events["y"].astype(np.int64) * H // H0, 0, H - 1)
    p = np.clip(events["p"].astype(np.int64), 0, P - 1)
    np.add.at(frames, (k, p, y, x), 1)
    return np.minimum(frames, np.iinfo(np.int16).max).astype(np.int16)


def event_drop(events: np.ndarray, rho: float, rng: np.random.Generator | None = None,
               strategy: str = "random", sensor_size: tuple | None = None) -> np.ndarray:
    """EventDrop (Gu et al. 2021) on one recording.

    Parameters
    ----------
    events : structured array (fields x, y, p, t)
    rho : float in [0, 1]
        Drop ratio.
    strategy : {"random", "time", "area", "mixed"}
        ``random``: every event dropped independently with probability ``rho`` (the paper's);
        ``time``: the events of a random time window of ``rho`` of the recording; ``area``: the
        events of a random box of ``rho`` of the sensor area; ``mixed``: one of the three at random
        (the EventDrop augmentation).
    sensor_size : (W, H, P), optional
        Needed by ``area`` (default: the events' extent).
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho!r}")
    rng = np.random.default_rng() if rng is None else rng
    if strategy == "mixed":
        strategy = ("random", "time", "area")[int(rng.integers(3))]
    if rho == 0 or len(events) == 0:
        return events
    if strategy == "random":
        return events[rng.random(len(events)) >= rho]
    if strategy == "time":
        t = events["t"].astype(np.float64)
        t0, t1 = t.min(), t.max()
        width = rho * (t1 - t0)
        start = t0 + rng.random() * (t1 - t0 - width)
        return events[(t < start) | (t > start + width)]
    if strategy == "area":
        W = sensor_size[0] if sensor_size else int(events["x"].max()) + 1
        H = sensor_size[1] if sensor_size else int(events["y"].max()) + 1
        side = math.sqrt(rho)
        bw, bh = max(1, int(round(side * W))), max(1, int(round(side * H)))
        x0, y0 = int(rng.integers(0, W - bw + 1)), int(rng.integers(0, H - bh + 1))
        inside = ((events["x"] >= x0) & (events["x"] < x0 + bw) & (events["y"] >= y0) & (events["y"] < y0 + bh))
        return events[~inside]
    raise ValueError(f"strategy must be 'random', 'time', 'area' or 'mixed', got {strategy!r}")


def drop_frame_events(frames: Tensor, rho: float, generator: torch.Generator | None = None) -> Tensor:
    """Random EventDrop on event-count frames: each counted event kept with probability ``1 - rho``
    (binomial thinning; the same law as dropping events before binning).

    Parameters
    ----------
    frames : Tensor [..., H, W] of non-negative integer counts (any float or int dtype)
    rho : float in [0, 1]
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho!r}")
    if rho == 0:
        return frames
    counts = frames.to(torch.float64)
    if (counts < 0).any() or (counts != counts.round()).any():
        raise ValueError("frames must hold non-negative integer event counts for EventDrop")
    keep = torch.full_like(counts, 1.0 - rho)
    kept = torch.binomial(counts, keep, generator=generator)
    return kept.to(frames.dtype)


class FramesDataset(Dataset):
    """Frames ``[T, P, H, W]`` (float) of an event dataset, converted once and cached as int16 .npy files.

    Parameters
    ----------
    events_dataset : sequence of ``(events, label)`` (a tonic dataset, or any list)
    indices : sequence of int
        Which recordings.
    sensor_size : (W, H, P)
    n_frames : int
    size : (H, W), optional
    cache_dir : path, optional
        Where converted frames are kept (none: converted on every access).
    """

    def __init__(self, events_dataset, indices, sensor_size, n_frames: int, size=None, cache_dir=None):
        self.source = events_dataset
        self.indices = [int(i) for i in indices]
        self.sensor_size = tuple(sensor_size)
        self.n_frames = int(n_frames)
        self.size = size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        targets = getattr(events_dataset, "targets", None)
        self.labels = [int(targets[i]) for i in self.indices] if targets is not None else None

    def __len__(self) -> int:
        return len(self.indices)

    def frames(self, i: int) -> tuple[np.ndarray, int]:
        j = self.indices[i]
        path = self.cache_dir / f"{j}.npy" if self.cache_dir is not None else None
        if path is not None and path.is_file() and self.labels is not None:
            return np.load(path), self.labels[i]
        events, label = self.source[j]
        fr = events_to_frames(events, self.sensor_size, self.n_frames, self.size)
        if path is not None:
            from neurocode._io import atomic_path

            with atomic_path(path) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, fr)
        return fr, int(label)

    def __getitem__(self, i):
        fr, label = self.frames(i)
        return torch.from_numpy(fr.astype(np.float32)), torch.tensor(label, dtype=torch.int64)


def _tonic():
    try:
        import tonic
    except ImportError:
        raise ImportError("the DVS datasets need tonic: pip install 'neurocode-snn[vision]'") from None
    return tonic


def _event_data(name: str, train_src, test_src, train_idx, test_idx, sensor_size, n_frames, size, root, n_classes,
                val_fraction, split_seed, labels_train) -> ClassificationData:
    rest, held = _split_indices(np.asarray(labels_train), val_fraction, split_seed)
    cache = Path(root) / "neurocode_frames" / f"{name}-T{n_frames}-{size[0]}x{size[1]}"
    tr_idx, te_idx = np.asarray(train_idx), np.asarray(test_idx)
    mk = lambda src, idx, part: FramesDataset(src, idx, sensor_size, n_frames, size, cache / part)  # noqa: E731
    train = mk(train_src, tr_idx[rest], "train" if train_src is not test_src else "all")
    val = mk(train_src, tr_idx[held], "train" if train_src is not test_src else "all")
    test = mk(test_src, te_idx, "test" if train_src is not test_src else "all")
    return ClassificationData(name, train, val, test, n_classes, (sensor_size[2], size[0], size[1]), False, None,
                              None, frames_augment, None)


def _require(path: Path, name: str, download: bool) -> None:
    if not download and not path.exists():
        raise FileNotFoundError(f"{path}: no such folder ({name} is not in --data-dir {path.parent.parent}; pass "
                                "--download to let tonic fetch it)")


def load_dvs_gesture(data_dir, n_frames: int = 16, val_fraction: float = 0.1, split_seed: int = 0,
                     size: tuple[int, int] = (128, 128), download: bool = False) -> ClassificationData:
    """DVS-Gesture through tonic (``data_dir/DVSGesture/``; tonic downloads it when ``download``)."""
    tonic = _tonic()
    root = Path(data_dir).expanduser()
    _require(root / "DVSGesture" / "ibmGestureTrain", "dvs-gesture", download)
    train = tonic.datasets.DVSGesture(save_to=str(root), train=True)
    test = tonic.datasets.DVSGesture(save_to=str(root), train=False)
    sensor = tonic.datasets.DVSGesture.sensor_size
    return _event_data("dvs-gesture", train, test, range(len(train)), range(len(test)), sensor, n_frames, size, root,
                       11, val_fraction, split_seed, train.targets)


def _natural_key(path) -> tuple:
    import re

    name = os.path.basename(str(path))
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def cifar10dvs_split(targets, n_train_per_class: int = 900, paths=None) -> tuple[np.ndarray, np.ndarray]:
    """The 9k/1k split: per class, its first ``n_train_per_class`` recordings train, the rest test.

    "First" is by file name in natural order (``cifar10_cat_2`` before ``cifar10_cat_10``) when
    ``paths`` are given (the listing order of a folder is not defined), else by index.
    """
    targets = np.asarray(targets)
    train, test = [], []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        if paths is not None:
            idx = np.asarray(sorted(idx, key=lambda i: _natural_key(paths[i])), dtype=np.int64)
        train.append(idx[:n_train_per_class])
        test.append(idx[n_train_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_dvs_cifar10(data_dir, n_frames: int = 10, val_fraction: float = 0.1, split_seed: int = 0,
                     size: tuple[int, int] = (48, 48), n_train_per_class: int = 900,
                     download: bool = False) -> ClassificationData:
    """CIFAR10-DVS through tonic (``data_dir/CIFAR10DVS/``), the 9k/1k split, frames at 48x48."""
    tonic = _tonic()
    root = Path(data_dir).expanduser()
    _require(root / "CIFAR10DVS" / "airplane", "dvs-cifar10", download)
    src = tonic.datasets.CIFAR10DVS(save_to=str(root))
    train_idx, test_idx = cifar10dvs_split(src.targets, n_train_per_class, src.data)
    sensor = tonic.datasets.CIFAR10DVS.sensor_size
    labels = np.asarray(src.targets)[train_idx]
    return _event_data("dvs-cifar10", src, src, train_idx, test_idx, sensor, n_frames, size, root, 10, val_fraction,
                       split_seed, labels)


def load_dataset(name: str, *, data_dir=None, download: bool = False, timesteps: int | None = None,
                 val_fraction: float = 0.1, split_seed: int = 0) -> ClassificationData:
    """One of :data:`DATASETS` (see the module docstring)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(map(repr, DATASETS))}, got {name!r}")
    if name == "digits":
        return load_digits_data(val_fraction=val_fraction, split_seed=split_seed)
    if name in CIFAR_FOLDERS:
        return load_cifar(name, data_dir, download, val_fraction, split_seed)
    root = Path(data_dir).expanduser() if data_dir is not None else Path("~/.neurocode/data").expanduser()
    if name == "dvs-gesture":
        return load_dvs_gesture(root, timesteps or 16, val_fraction, split_seed, download=download)
    return load_dvs_cifar10(root, timesteps or 10, val_fraction, split_seed, download=download)
