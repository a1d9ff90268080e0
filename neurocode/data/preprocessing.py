"""Image preprocessing for models and the train/test split by stimulus."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["downsample", "pad_to_square", "ImageNormalizer", "kfold_split"]


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]``: the fraction of output pixel i covered by input pixel j (rows sum to 1)."""
    edges_in = np.arange(n_in + 1) / n_in
    edges_out = np.arange(n_out + 1) / n_out
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    return np.clip(hi - lo, 0.0, None) * n_out


def downsample(images: np.ndarray, size: int = 64) -> np.ndarray:
    """Area-average resampling of square frames to ``size × size``.

    Each output pixel is the area-weighted mean of the input pixels it covers (as
    OpenCV's ``INTER_AREA``); when the side is a multiple of ``size`` that is the plain mean
    of each block (256 -> 64 averages 4×4 blocks), otherwise partial pixels are weighted by
    their overlap (600 -> 64). Computed in float64.

    Parameters
    ----------
    images : np.ndarray
        ``[n, H, W]`` frames or ``[n, F, H, W]`` clips (uint8 or float) with ``H == W``
        (letterbox other frames first with :func:`pad_to_square`: a silent squash would
        distort every receptive field).
    size : int
        Output side length in pixels.

    Returns
    -------
    np.ndarray
        float32, the input's shape with the last two axes ``size``.
    """
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be [n, H, W] or [n, F, H, W], got shape {x.shape}")
    size = int(size)
    h, w = x.shape[-2:]
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if h != w:
        raise ValueError(f"frames are {h}x{w}, not square: letterbox them with pad_to_square() first "
                         "(resampling to a square would squash them)")
    if h % size == 0:
        k = h // size
        blocks = x.reshape(*x.shape[:-2], size, k, size, k).astype(np.float64)
        return blocks.mean(axis=(-3, -1)).astype(np.float32)
    A = _area_matrix(h, size)
    return np.einsum("ih,...hw,jw->...ij", A, x.astype(np.float64), A, optimize=True).astype(np.float32)


def pad_to_square(frames: np.ndarray, fill: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Letterbox frames ``[..., H, W]`` to ``S × S`` (``S = max(H, W)``), centred, padded with ``fill``.

    Returns
    -------
    padded : np.ndarray
        Same dtype as ``frames`` (``fill`` rounded for integer frames).
    offset : (int, int)
        ``(rows, cols)`` added before the frame: a pixel ``(r, c)`` moves to ``(r + rows, c + cols)``.
        The centre stays the centre, so centre-relative coordinates are unchanged.
    """
    x = np.asarray(frames)
    h, w = x.shape[-2:]
    if h == w:
        return x, (0, 0)
    S = max(h, w)
    top, left = (S - h) // 2, (S - w) // 2
    value = np.round(fill) if np.issubdtype(x.dtype, np.integer) else fill
    out = np.full(x.shape[:-2] + (S, S), value, dtype=x.dtype)
    out[..., top: top + h, left: left + w] = x
    return out, (top, left)


@dataclass
class ImageNormalizer:
    """Global z-scoring of images with statistics fitted on training images only.

    Attributes
    ----------
    mean_, std_ : float or None
        Scalar mean and standard deviation of all training pixels (None before :meth:`fit`).
    """

    mean_: float | None = None
    std_: float | None = None

    def fit(self, train_images: np.ndarray) -> "ImageNormalizer":
        """Fit mean/std on the training images (``[n, H, W]``, any numeric dtype)."""
        x = np.asarray(train_images, dtype=np.float64)
        if x.size == 0:
            raise ValueError("cannot fit ImageNormalizer on an empty array")
        std = float(x.std())
        if not np.isfinite(std) or std == 0.0:
            raise ValueError(f"training images have standard deviation {std}; cannot normalise")
        self.mean_, self.std_ = float(x.mean()), std
        return self

    def transform(self, images: np.ndarray) -> np.ndarray:
        """``(images - mean_) / std_`` as float32, same shape."""
        if self.mean_ is None or self.std_ is None:
            raise RuntimeError("ImageNormalizer.transform called before fit")
        return ((np.asarray(images, dtype=np.float64) - self.mean_) / self.std_).astype(np.float32)

    def fit_transform(self, train_images: np.ndarray) -> np.ndarray:
        return self.fit(train_images).transform(train_images)


def kfold_split(n_stimuli: int = 60, n_folds: int = 5, fold: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split stimulus indices into train and test sets, fold ``fold`` of ``n_folds``.

    The stimuli are shuffled once with ``seed`` and cut into ``n_folds`` near-equal folds;
    fold ``fold`` is the test set. Over all folds every stimulus is tested exactly once and
    no stimulus is ever in both sets (60 stimuli, 5 folds: 48 train / 12 test).

    Returns
    -------
    train_idx, test_idx : np.ndarray
        int64, sorted, disjoint, together ``0..n_stimuli-1``.
    """
    n_stimuli, n_folds, fold = int(n_stimuli), int(n_folds), int(fold)
    if not 2 <= n_folds <= n_stimuli:
        raise ValueError(f"n_folds={n_folds} must be between 2 and n_stimuli={n_stimuli}")
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold={fold} out of range for n_folds={n_folds} (0..{n_folds - 1})")
    perm = np.random.default_rng(seed).permutation(n_stimuli)
    test = np.sort(np.array_split(perm, n_folds)[fold]).astype(np.int64)
    train = np.setdiff1d(np.arange(n_stimuli, dtype=np.int64), test)
    return train, test
