"""Image preprocessing for models and the train/test split by stimulus."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["downsample", "ImageNormalizer", "kfold_split"]


def downsample(images: np.ndarray, size: int = 64) -> np.ndarray:
    """Area-average downsampling of square blocks.

    Parameters
    ----------
    images : np.ndarray
        ``[n, H, W]`` (uint8 or float); ``H`` and ``W`` must be multiples of ``size``.
    size : int
        Output side length in pixels (default 64: 256 -> 64 averages 4x4 blocks).

    Returns
    -------
    np.ndarray
        float32 ``[n, size, size]``; each output pixel is the mean of its block (computed in
        float64, so uint8 input keeps its exact block means up to float32 rounding).
    """
    x = np.asarray(images)
    if x.ndim != 3:
        raise ValueError(f"images must be [n, H, W], got shape {x.shape}")
    size = int(size)
    n, h, w = x.shape
    if size < 1 or h % size or w % size:
        raise ValueError(f"image size {h}x{w} is not a multiple of the target size {size}")
    blocks = x.reshape(n, size, h // size, size, w // size).astype(np.float64)
    return blocks.mean(axis=(2, 4)).astype(np.float32)


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
