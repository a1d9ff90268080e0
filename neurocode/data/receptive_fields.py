"""Receptive-field (RF) estimates in image-pixel coordinates.

Three sources, in order of preference (see ``docs/receptive_fields.md``):

``"stored"``
    The recording ships RF contours (Onken et al. 2016: per cell the 1-σ contour of a
    Gaussian RF fit, an exact ellipse, in *screen* pixels). :func:`from_contours` maps them to
    image pixels with the mapping verified in SPEC §3 (images shown centred on the screen,
    1 screen px = 1 image px, y flipped) and recovers centre and covariance with an algebraic
    least-squares ellipse fit, so the sampling of the contour does not matter.
``"estimated"``
    No stored RFs: :func:`estimate_receptive_fields` computes the response-weighted average
    of the (training) images (the spike-triggered average for flashed images), smooths it
    lightly and fits a 2-D Gaussian around its largest absolute value.
``"fallback"``
    No stored RFs and too few training images to estimate them: one broad Gaussian per cell
    at the image centre (σ = min(H, W)/4), with a warning.

Coordinates: pixel ``(row i, col j)`` of an ``H × W`` image covers ``[j, j+1) × [i, i+1)``,
so pixel centres lie at ``(j + 0.5, i + 0.5)``; ``x`` is the column coordinate and ``y`` the
row coordinate (rows grow downwards). Covariances are in px² in ``(x, y)`` order.

:func:`receptive_fields_for` picks the source for a :class:`~neurocode.data.Recording` and a
training split, and only ever looks at the training stimuli.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from neurocode.data.errors import DataFormatError

__all__ = [
    "ReceptiveFields",
    "from_contours",
    "estimate_receptive_fields",
    "receptive_fields_for",
]

_SOURCES = ("stored", "estimated", "fallback")
#: Screen pixel at which the images' centre was shown (SPEC §3, retina 2).
DEFAULT_SCREEN_CENTRE = (404.0, 304.0)
#: Largest side of the working resolution used by :func:`estimate_receptive_fields`.
_WORK_SIZE = 64


# ---------------------------------------------------------------------- container
@dataclass(frozen=True, eq=False)
class ReceptiveFields:
    """Gaussian receptive fields of ``n_cells`` cells in the pixel coordinates of an image.

    Parameters
    ----------
    centres : np.ndarray
        float64 ``[n_cells, 2]``: RF centre ``(x = column, y = row)`` in pixels of images of
        shape ``image_shape`` (continuous coordinates, pixel centres at ``j + 0.5``).
    covariances : np.ndarray
        float64 ``[n_cells, 2, 2]``: 1-σ Gaussian covariance in px², ``(x, y)`` order;
        symmetric positive definite.
    image_shape : tuple of int
        ``(H, W)`` of the images the coordinates refer to.
    source : str
        ``"stored"``, ``"estimated"`` or ``"fallback"``.
    method : str
        One sentence saying how the RFs were obtained (shown to users, stored in run folders).
    polarity : np.ndarray or None
        float64 ``[n_cells]``: ``+1`` ON, ``-1`` OFF (sign of the centre response), or None
        when unknown.

    Raises
    ------
    ValueError
        If a field has the wrong shape, a non-finite value, a covariance is not symmetric
        positive definite, ``source`` is unknown or a polarity is not ±1; the message names
        the field.

    Notes
    -----
    Arrays are copied and made read-only. Instances compare by identity (``==`` is not
    element-wise); compare :meth:`to_dict` outputs or the arrays themselves instead.
    """

    centres: np.ndarray
    covariances: np.ndarray
    image_shape: tuple[int, int]
    source: str
    method: str
    polarity: np.ndarray | None = None

    def __post_init__(self) -> None:
        try:
            shape = tuple(int(v) for v in self.image_shape)
        except (TypeError, ValueError):
            raise ValueError(f"image_shape must be (H, W) positive integers, got {self.image_shape!r}") from None
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"image_shape must be (H, W) positive integers, got {self.image_shape!r}")
        object.__setattr__(self, "image_shape", shape)

        centres = np.array(self.centres, dtype=np.float64)
        if centres.ndim != 2 or centres.shape[1] != 2 or centres.shape[0] < 1:
            raise ValueError(f"centres must be float [n_cells >= 1, 2] (x, y), got shape {centres.shape}")
        if not np.isfinite(centres).all():
            raise ValueError(f"centres contain NaN or infinite values (cell {_first_bad(centres)})")
        n = centres.shape[0]

        cov = np.array(self.covariances, dtype=np.float64)
        if cov.shape != (n, 2, 2):
            raise ValueError(f"covariances must be float [n_cells={n}, 2, 2], got shape {cov.shape}")
        if not np.isfinite(cov).all():
            raise ValueError(f"covariances contain NaN or infinite values (cell {_first_bad(cov)})")
        asym = np.abs(cov[:, 0, 1] - cov[:, 1, 0]) > 1e-9 * (1.0 + np.abs(cov).reshape(n, -1).max(1))
        if asym.any():
            raise ValueError(f"covariances must be symmetric (cell {int(np.argmax(asym))} is not)")
        cov[:, 1, 0] = cov[:, 0, 1]
        det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] ** 2
        not_pd = (cov[:, 0, 0] <= 0) | (det <= 0)
        if not_pd.any():
            c = int(np.argmax(not_pd))
            raise ValueError(f"covariances must be positive definite (cell {c}: {cov[c].tolist()})")

        if self.source not in _SOURCES:
            raise ValueError(f"source must be one of {_SOURCES}, got {self.source!r}")
        if not isinstance(self.method, str) or not self.method.strip():
            raise ValueError("method must be a non-empty sentence saying how the RFs were obtained")

        pol = self.polarity
        if pol is not None:
            pol = np.array(pol, dtype=np.float64)
            if pol.shape != (n,):
                raise ValueError(f"polarity must be float [n_cells={n}] or None, got shape {pol.shape}")
            bad = ~np.isin(pol, (-1.0, 1.0))
            if bad.any():
                raise ValueError(f"polarity must be +1 (ON) or -1 (OFF); cell {int(np.argmax(bad))} has {pol[bad][0]}")
            pol.setflags(write=False)
        for a in (centres, cov):
            a.setflags(write=False)
        object.__setattr__(self, "centres", centres)
        object.__setattr__(self, "covariances", cov)
        object.__setattr__(self, "polarity", pol)

    # ------------------------------------------------------------------ views
    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return int(self.centres.shape[0])

    def sigmas(self) -> np.ndarray:
        """float64 ``[n_cells, 2]``: 1-σ radii ``(minor, major)`` in px (sqrt of eigenvalues)."""
        return np.sqrt(np.linalg.eigvalsh(self.covariances))

    def scaled(self, image_shape: Sequence[int]) -> "ReceptiveFields":
        """The same RFs on a resampled image of shape ``image_shape = (H', W')``.

        Coordinates scale per axis (``x × W'/W``, ``y × H'/H``; pixel edges map to pixel
        edges, as in area-average downsampling) and the covariance as ``S Σ S`` with
        ``S = diag(W'/W, H'/H)``; e.g. 256 → 64 px multiplies coordinates by 1/4 and the
        covariance by 1/16. ``source``, ``method`` and ``polarity`` are kept.
        """
        h2, w2 = (int(v) for v in image_shape)
        if h2 < 1 or w2 < 1:
            raise ValueError(f"image_shape must be (H, W) positive integers, got {tuple(image_shape)!r}")
        h, w = self.image_shape
        s = np.array([w2 / w, h2 / h])
        return ReceptiveFields(
            centres=self.centres * s,
            covariances=self.covariances * s[None, :, None] * s[None, None, :],
            image_shape=(h2, w2),
            source=self.source,
            method=self.method,
            polarity=self.polarity,
        )

    def masks(self, image_shape: Sequence[int] | None = None, scale: float = 1.0) -> np.ndarray:
        """Normalised Gaussian weight maps of the RFs.

        Parameters
        ----------
        image_shape : (H, W), optional
            Grid to evaluate on (the RFs are :meth:`scaled` to it first); default
            :attr:`image_shape`.
        scale : float
            Multiplies the RF radii: the covariance used is ``scale² Σ + I/12`` (px² of the
            target grid); the ``I/12`` term is the variance of a uniform pixel, so that even
            a tiny RF spreads over a whole pixel.

        Returns
        -------
        np.ndarray
            float32 ``[n_cells, H, W]``: the Gaussian evaluated at the pixel centres
            ``(j + 0.5, i + 0.5)``, each map normalised to sum 1 (computed in log space, so an
            RF far outside the grid still gives a finite map concentrated at the nearest edge).
        """
        scale = float(scale)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number, got {scale}")
        rf = self if image_shape is None else self.scaled(image_shape)
        h, w = rf.image_shape
        cov = scale**2 * rf.covariances + np.eye(2) / 12.0
        prec = np.linalg.inv(cov)  # [n, 2, 2]
        dx = (np.arange(w) + 0.5)[None, :] - rf.centres[:, 0:1]  # [n, W]
        dy = (np.arange(h) + 0.5)[None, :] - rf.centres[:, 1:2]  # [n, H]
        q = (
            prec[:, 0, 0, None, None] * dx[:, None, :] ** 2
            + 2.0 * prec[:, 0, 1, None, None] * dy[:, :, None] * dx[:, None, :]
            + prec[:, 1, 1, None, None] * dy[:, :, None] ** 2
        )  # [n, H, W]
        logp = -0.5 * q
        logp -= logp.max(axis=(1, 2), keepdims=True)
        m = np.exp(logp)
        m /= m.sum(axis=(1, 2), keepdims=True)
        return m.astype(np.float32)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (plain lists and str) for run folders; see :meth:`from_dict`."""
        return {
            "centres": self.centres.tolist(),
            "covariances": self.covariances.tolist(),
            "image_shape": list(self.image_shape),
            "source": self.source,
            "method": self.method,
            "polarity": None if self.polarity is None else self.polarity.tolist(),
            "units": "image pixels; x = column, y = row; covariance px^2 in (x, y) order",
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReceptiveFields":
        """Rebuild from :meth:`to_dict` output (extra keys such as ``units`` are ignored)."""
        missing = [k for k in ("centres", "covariances", "image_shape", "source", "method") if k not in d]
        if missing:
            raise ValueError(f"receptive-field dict lacks the key(s) {missing}")
        return cls(
            centres=np.asarray(d["centres"], dtype=np.float64),
            covariances=np.asarray(d["covariances"], dtype=np.float64),
            image_shape=tuple(d["image_shape"]),  # type: ignore[arg-type]
            source=str(d["source"]),
            method=str(d["method"]),
            polarity=None if d.get("polarity") is None else np.asarray(d["polarity"], dtype=np.float64),
        )

    def __repr__(self) -> str:
        if self.polarity is None:
            pol = "None"
        else:
            pol = f"{int((self.polarity > 0).sum())} ON / {int((self.polarity < 0).sum())} OFF"
        return (
            f"ReceptiveFields(n_cells={self.n_cells}, image_shape={self.image_shape}, source={self.source!r}, "
            f"polarity={pol}, method={self.method!r})"
        )


def _first_bad(a: np.ndarray) -> int:
    return int(np.argmax(~np.isfinite(a.reshape(a.shape[0], -1)).any(axis=1)))


# ---------------------------------------------------------------------- stored contours
def _fit_ellipse(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Algebraic least-squares ellipse fit (Halíř & Flusser 1998, numerically stable
    version of Fitzgibbon et al. 1999) through points ``(x, y)``.

    Returns the centre ``[2]`` and the matrix ``Σ [2, 2]`` with
    ``(p - c)ᵀ Σ⁻¹ (p - c) = 1`` on the fitted ellipse (so ``Σ`` is the 1-σ covariance when
    the points are a 1-σ contour). Exact for points on an ellipse, whatever their sampling.
    """
    mx, my = x.mean(), y.mean()
    s = math.sqrt(np.mean((x - mx) ** 2 + (y - my) ** 2))
    if not s > 0:
        raise ValueError("all contour points coincide")
    u, v = (x - mx) / s, (y - my) / s  # normalised for conditioning
    d1 = np.stack([u * u, u * v, v * v], axis=1)
    d2 = np.stack([u, v, np.ones_like(u)], axis=1)
    s1, s2, s3 = d1.T @ d1, d1.T @ d2, d2.T @ d2
    t = -np.linalg.solve(s3, s2.T)
    m = s1 + s2 @ t
    m = np.array([m[2] / 2.0, -m[1], m[0] / 2.0])  # C1⁻¹ M
    evals, evecs = np.linalg.eig(m)
    evecs = np.real(evecs)
    cond = 4.0 * evecs[0] * evecs[2] - evecs[1] ** 2
    ok = np.flatnonzero(cond > 0)
    if ok.size == 0:
        raise ValueError("points are not on an ellipse (no elliptic conic fits them)")
    a1 = evecs[:, ok[np.argmin(np.abs(np.real(evals[ok])))]]
    a, b, c = a1
    dd, ee, ff = t @ a1
    amat = np.array([[a, b / 2.0], [b / 2.0, c]])
    g = np.array([dd, ee])
    centre_n = -0.5 * np.linalg.solve(amat, g)
    k = centre_n @ amat @ centre_n - ff  # (p - c)ᵀ A (p - c) = k on the conic
    if not k / a > 0:
        raise ValueError("fitted conic is an imaginary ellipse")
    cov_n = np.linalg.inv(amat / k)
    centre = np.array([mx, my]) + s * centre_n
    cov = s * s * cov_n
    cov = 0.5 * (cov + cov.T)
    return centre, cov


def from_contours(
    contours: np.ndarray,
    image_shape: Sequence[int],
    screen_centre: Sequence[float] = DEFAULT_SCREEN_CENTRE,
    flip_y: bool = True,
) -> ReceptiveFields:
    """Receptive fields from stored 1-σ ellipse contours in screen pixels.

    Each contour point ``(x, y)`` (screen px) is mapped to image pixels of an ``H × W`` image
    shown centred on the screen, 1 screen px = 1 image px (SPEC §3, verified on retina 2)::

        col = W/2 + (x − screen_centre[0])
        row = H/2 − (y − screen_centre[1])      (flip_y=True; + when flip_y=False)

    and an algebraic least-squares ellipse fit gives the centre and the matrix ``Σ`` with
    Mahalanobis distance 1 on the contour, i.e. the 1-σ covariance. The fit is exact for
    exact ellipses however the points are spaced along them.

    Parameters
    ----------
    contours : np.ndarray
        float ``[n_cells, 2, n_points]`` (row 0 = x, row 1 = y), screen px; ``n_points >= 5``.
    image_shape : (H, W)
        Shape of the images the RFs are to refer to.
    screen_centre : (float, float)
        Screen pixel ``(x, y)`` at which the image centre was shown; default (404, 304).
    flip_y : bool
        Screen y grows upwards relative to image rows (True for the Onken et al. data).

    Returns
    -------
    ReceptiveFields
        ``source="stored"``, ``polarity=None`` (see :func:`receptive_fields_for`).

    Raises
    ------
    ValueError
        If ``contours`` has the wrong shape or non-finite values, or a contour is not
        (close to) an ellipse; the message names the cell.
    """
    cont = np.asarray(contours, dtype=np.float64)
    if cont.ndim != 3 or cont.shape[1] != 2 or cont.shape[0] < 1 or cont.shape[2] < 5:
        raise ValueError(f"contours must be float [n_cells, 2 (x, y), n_points >= 5], got shape {cont.shape}")
    if not np.isfinite(cont).all():
        raise ValueError(f"contours contain NaN or infinite values (cell {_first_bad(cont)})")
    h, w = (int(v) for v in image_shape)
    cx, cy = (float(v) for v in screen_centre)
    cols = w / 2.0 + (cont[:, 0] - cx)
    rows = h / 2.0 - (cont[:, 1] - cy) if flip_y else h / 2.0 + (cont[:, 1] - cy)
    centres = np.empty((cont.shape[0], 2))
    covs = np.empty((cont.shape[0], 2, 2))
    for c in range(cont.shape[0]):
        try:
            centres[c], covs[c] = _fit_ellipse(cols[c], rows[c])
        except (ValueError, np.linalg.LinAlgError) as e:
            raise ValueError(f"contours[{c}]: cannot fit an ellipse ({e})") from None
    sign = "−" if flip_y else "+"
    method = (
        f"stored 1-σ contours of Gaussian RF fits in screen px, mapped to image px by "
        f"col = W/2 + (x − {cx:g}), row = H/2 {sign} (y − {cy:g}) (SPEC §3) and fitted with an "
        f"algebraic least-squares ellipse"
    )
    return ReceptiveFields(centres=centres, covariances=covs, image_shape=(h, w), source="stored", method=method)


# ---------------------------------------------------------------------- estimation
def _gauss2d(p: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """amp · exp(−½ dᵀ(LLᵀ)⁻¹d) + offset with L = [[l11, 0], [l21, l22]]."""
    amp, x0, y0, l11, l21, l22, off = p
    dx, dy = xx - x0, yy - y0
    u = dx / l11
    v = (dy - l21 * u) / l22
    return amp * np.exp(-0.5 * (u * u + v * v)) + off


def _fit_gaussian(img: np.ndarray, peak: tuple[int, int], radius: int) -> np.ndarray | None:
    """Fit :func:`_gauss2d` (amp >= 0) to ``img`` in a window around ``peak`` (row, col).

    Returns ``[amp, x0, y0, l11, l21, l22, offset]`` in working px (pixel centres at +0.5),
    or None if the fit failed.
    """
    from scipy.optimize import least_squares

    h, w = img.shape
    i0, j0 = peak
    r0, r1 = max(i0 - radius, 0), min(i0 + radius + 1, h)
    c0, c1 = max(j0 - radius, 0), min(j0 + radius + 1, w)
    win = img[r0:r1, c0:c1]
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64) + 0.5
    off0 = float(np.median(win))
    amp0 = max(float(img[i0, j0]) - off0, 1e-12)
    big = float(max(h, w))
    p0 = np.array([amp0, j0 + 0.5, i0 + 0.5, 1.5, 0.0, 1.5, off0])
    lo = np.array([0.0, c0, r0, 0.25, -big, 0.25, -np.inf])
    hi = np.array([np.inf, c1, r1, big, big, big, np.inf])
    p0 = np.clip(p0, lo + 1e-9, hi - 1e-9)
    try:
        res = least_squares(
            lambda p: (_gauss2d(p, xx, yy) - win).ravel(), p0, bounds=(lo, hi), x_scale="jac", max_nfev=400
        )
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not np.isfinite(res.x).all() or res.x[0] <= 0:
        return None
    return res.x


def _as_float_array(a: Any, name: str, ndim: int) -> np.ndarray:
    try:
        x = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataFormatError(f"{name}: not a numeric array ({e})") from None
    if x.ndim != ndim:
        raise DataFormatError(f"{name}: expected a {ndim}-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataFormatError(f"{name}: contains NaN or infinite values")
    return x


def _broad(n_cells: int, image_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = image_shape
    sigma = min(h, w) / 4.0
    centres = np.tile([w / 2.0, h / 2.0], (n_cells, 1))
    covs = np.tile(np.eye(2) * sigma**2, (n_cells, 1, 1))
    return centres, covs


def estimate_receptive_fields(
    stimuli: np.ndarray,
    responses: np.ndarray,
    *,
    min_stimuli: int = 20,
    smooth_px: float | None = None,
) -> ReceptiveFields:
    """Estimate Gaussian RFs from responses to flashed images (response-weighted average).

    1. Images are area-averaged to a working resolution of at most 64 px per side (block
       factor ``k = ceil(side / 64)`` per axis; trailing rows/columns that do not fill a
       block are dropped) and z-scored with the mean image and the global std of these
       images.
    2. ``STA_c = Σ_i (r_ic − r̄_c) z_i / n`` (the spike-triggered average for flashes),
       smoothed with a Gaussian of ``smooth_px`` image px.
    3. Polarity = sign of the STA's largest absolute value; a 2-D Gaussian (amplitude ≥ 0,
       centre, covariance via Cholesky factors, constant offset) is fitted by
       ``scipy.optimize.least_squares`` to ``polarity × STA`` in a window around that peak
       (half-width a quarter of the working image).
    4. The smoothing variance is subtracted from the fitted covariance, radii are clipped to
       ``[0.5 working px, min(H, W)/2]`` and centres into the image; all mapped back to
       image px (``x = k_x · x_work``).

    The STA of natural images is blurred by the images' own spatial correlations, so the
    fitted radii overestimate the RF size; centres and polarity are the reliable part.

    Parameters
    ----------
    stimuli : np.ndarray
        ``[n, H, W]`` images, any numeric dtype (use only training images).
    responses : np.ndarray
        float ``[n, n_cells]``: response of each cell to each image (e.g. trial-averaged
        spike count in the response window).
    min_stimuli : int
        Refuse to estimate from fewer images.
    smooth_px : float, optional
        σ of the Gaussian smoothing of the STA in image px; None means half a working pixel
        (``k/2`` image px, e.g. 2 px for 256-px images); 0 disables smoothing.

    Returns
    -------
    ReceptiveFields
        ``source="estimated"``, coordinates in px of ``(H, W)`` images, polarity ±1. A cell
        whose response never varies gets a broad Gaussian at the image centre
        (σ = min(H, W)/4) and polarity +1; ``method`` counts such cells.

    Raises
    ------
    DataFormatError
        If ``stimuli`` or ``responses`` has the wrong shape or non-finite values, their
        numbers of stimuli differ, or ``n < min_stimuli``; the message names the argument.
    """
    from scipy.ndimage import gaussian_filter

    x = _as_float_array(stimuli, "stimuli", 3)
    r = _as_float_array(responses, "responses", 2)
    n, h, w = x.shape
    if r.shape[0] != n:
        raise DataFormatError(
            f"responses: has {r.shape[0]} stimuli (shape {r.shape}), stimuli has {n} (shape {x.shape})"
        )
    if r.shape[1] < 1 or min(h, w) < 1:
        raise DataFormatError(f"responses/stimuli: empty arrays (responses {r.shape}, stimuli {x.shape})")
    if n < int(min_stimuli):
        raise DataFormatError(
            f"stimuli: estimating receptive fields needs at least {int(min_stimuli)} training stimuli, got {n}"
        )
    n_cells = r.shape[1]

    # 1. working resolution and z-scoring
    kh, kw = math.ceil(h / _WORK_SIZE), math.ceil(w / _WORK_SIZE)
    hw, ww = h // kh, w // kw
    xw = x[:, : hw * kh, : ww * kw].reshape(n, hw, kh, ww, kw).mean(axis=(2, 4))
    xw -= xw.mean(axis=0, keepdims=True)
    sd = float(xw.std())
    if not sd > 0:
        raise DataFormatError("stimuli: all images are identical; cannot estimate receptive fields")
    xw /= sd

    # 2. STA (covariance of response and pixel), smoothed
    rc = r - r.mean(axis=0, keepdims=True)
    sta = np.einsum("nc,nhw->chw", rc, xw) / n
    s_img = 0.5 * min(kh, kw) if smooth_px is None else float(smooth_px)
    if not (np.isfinite(s_img) and s_img >= 0):
        raise DataFormatError(f"smooth_px: must be >= 0 image px, got {smooth_px}")
    s_w = np.array([s_img / kw, s_img / kh])  # (x, y) in working px
    if s_img > 0:
        sta = np.stack([gaussian_filter(s, sigma=(s_w[1], s_w[0]), mode="nearest") for s in sta])

    # 3./4. polarity, Gaussian fit, map back
    radius = max(4, min(hw, ww) // 4)
    scale = np.array([kw, kh], dtype=np.float64)
    lo_sig, hi_sig = 0.5 * min(kh, kw), min(h, w) / 2.0
    centres, covs = _broad(n_cells, (h, w))
    polarity = np.ones(n_cells)
    flat, failed = [], []
    for c in range(n_cells):
        if not np.any(rc[:, c]) or not np.any(sta[c]):
            flat.append(c)
            continue
        i0, j0 = np.unravel_index(int(np.argmax(np.abs(sta[c]))), sta[c].shape)
        pol = 1.0 if sta[c, i0, j0] > 0 else -1.0
        polarity[c] = pol
        p = _fit_gaussian(pol * sta[c], (int(i0), int(j0)), radius)
        if p is None:
            failed.append(c)
            centre_w = np.array([j0 + 0.5, i0 + 0.5])
            cov_w = np.eye(2) * 1.5**2
        else:
            centre_w = p[1:3]
            lmat = np.array([[p[3], 0.0], [p[4], p[5]]])
            cov_w = lmat @ lmat.T
        cov_w = cov_w - np.diag(s_w**2)
        cov = cov_w * scale[:, None] * scale[None, :]
        evals, evecs = np.linalg.eigh(0.5 * (cov + cov.T))
        evals = np.clip(evals, lo_sig**2, hi_sig**2)
        covs[c] = (evecs * evals) @ evecs.T
        centres[c] = np.clip(centre_w * scale, 0.0, [w, h])

    method = (
        f"estimated from {n} training images: response-weighted average (STA) at {hw}×{ww} px, "
        f"smoothed with σ = {s_img:g} image px, 2-D Gaussian fitted around its largest |value| "
        f"(polarity = sign of that peak)"
    )
    if flat:
        method += f"; {len(flat)} cell(s) without response variation got a broad centred Gaussian"
    if failed:
        method += f"; {len(failed)} fit(s) failed and use the STA peak with σ = 1.5 working px"
    return ReceptiveFields(
        centres=centres, covariances=covs, image_shape=(h, w), source="estimated", method=method, polarity=polarity
    )


# ---------------------------------------------------------------------- recording-level choice
def _polarity_from_training(rfs: ReceptiveFields, images: np.ndarray, responses: np.ndarray) -> np.ndarray | None:
    """Sign of the correlation between RF-centre-weighted contrast and response, per cell.

    Undetermined cells (constant response or contrast) get +1; None if ``n < 3``.
    """
    n = images.shape[0]
    if n < 3:
        return None
    x = images.astype(np.float64)
    x -= x.mean()
    m = rfs.masks().reshape(rfs.n_cells, -1).astype(np.float64)  # [cells, H*W]
    contrast = x.reshape(n, -1) @ m.T  # [n, cells]
    a = contrast - contrast.mean(0)
    b = responses - responses.mean(0)
    cov = (a * b).sum(0)
    return np.where(cov < 0, -1.0, 1.0)


def _recording_label(recording: Any) -> str:
    """The file and recording name for a message, escaped: a warning reaches the terminal as it is."""
    from neurocode._io import printable

    return printable(f"{getattr(recording, 'source', '<memory>')} (recording {getattr(recording, 'name', '?')!r})")


def _clip_samples(train: Any, bin_size: float, max_samples: int = 6000, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Clips as flashes for the RF estimate: the frame at the best lag before each response bin.

    The lag (0 .. history bins) is the one whose spike-triggered average has the most power
    summed over cells; each (clip, bin) then becomes one "image" (that frame) with one
    response (the bin's trial-averaged count). At most ``max_samples`` samples (seeded).
    """
    clips = train.stimuli
    psth = train.psth(bin_size)  # [n, T, cells]
    n, Fr = clips.shape[:2]
    T = psth.shape[1]
    if clips.shape[1] < T:
        raise DataFormatError(f"{_recording_label(train)}: clips have {Fr} frames for {T} bins of {bin_size:g} s")
    pick = np.random.default_rng(seed).permutation(n * T)[:max_samples]
    ci, ti = np.divmod(pick, T)
    r = psth[ci, ti] - psth[ci, ti].mean(0)
    mean, sd = clips.mean(dtype=np.float64), clips.std(dtype=np.float64) or 1.0
    power = []
    for lag in range(Fr - T + 1):
        frames = (clips[ci, Fr - T + ti - lag].astype(np.float64) - mean) / sd  # [m, H, W]
        power.append(float(np.square(np.einsum("mc,mhw->chw", r, frames)).sum()))
    best = int(np.argmax(power))
    return clips[ci, Fr - T + ti - best], psth[ci, ti]


def receptive_fields_for(
    recording: Any,
    train_idx: Sequence[int] | np.ndarray,
    *,
    bin_size: float = 0.01,
    min_stimuli: int = 20,
) -> ReceptiveFields:
    """Receptive fields for a recording, using only its training stimuli.

    * Stored contours (``recording.receptive_fields``) → :func:`from_contours` on the
      recording's image shape, polarity = sign of the correlation between RF-centre-weighted
      contrast and spike count over the training images. If a stored centre falls outside
      the image the stored RFs are unusable and are estimated instead (``method`` says so).
    * No (usable) stored RFs → :func:`estimate_receptive_fields` from the training images
      and their spike counts (summed over the window, averaged over trials).
    * No (usable) stored RFs and fewer than ``min_stimuli`` training images → one broad
      Gaussian per cell at the image centre (σ = min(H, W)/4), ``source="fallback"``, and a
      :class:`UserWarning`.

    Parameters
    ----------
    recording : neurocode.data.Recording
        With ``stimuli`` uint8 ``[n_stimuli, H, W]``.
    train_idx : sequence of int
        Training stimulus indices (e.g. from :func:`~neurocode.data.kfold_split`); no other
        stimulus or response is read.
    bin_size : float
        Bin width (s) used to count spikes (the count over the window does not depend on it).
    min_stimuli : int
        Fewest training images from which RFs are estimated.

    Raises
    ------
    DataFormatError
        If ``recording.stimuli`` is None (message names the recording and the field).
    IndexError
        If a training index is out of range.
    """
    label = _recording_label(recording)
    if getattr(recording, "stimuli", None) is None:
        raise DataFormatError(f"{label}: field 'stimuli' is None; receptive fields need the stimulus frames")
    idx = np.asarray(train_idx, dtype=np.int64).ravel()
    n_all = recording.n_stimuli
    if idx.size and (idx.min() < 0 or idx.max() >= n_all):
        raise IndexError(f"train_idx must be in 0..{n_all - 1}, got {idx.tolist()[:10]}")
    if np.unique(idx).size != idx.size:
        raise ValueError("train_idx contains repeated indices")
    image_shape = tuple(int(v) for v in recording.stimuli.shape[-2:])
    h, w = image_shape
    n = int(idx.size)

    if n:
        train = recording.subset(idx)  # only the training stimuli from here on
        if train.stimuli.ndim == 4:
            images, responses = _clip_samples(train, bin_size)
            n = images.shape[0]
        else:
            images = train.stimuli
            responses = train.psth(bin_size).sum(axis=1)  # [n, cells] mean count in the window
    else:
        images = np.zeros((0, h, w), dtype=np.uint8)
        responses = np.zeros((0, recording.n_cells))

    reason = "no stored receptive fields"
    if recording.receptive_fields is not None:
        stored = from_contours(recording.receptive_fields, image_shape)
        cx, cy = stored.centres[:, 0], stored.centres[:, 1]
        outside = np.flatnonzero((cx < 0) | (cx > w) | (cy < 0) | (cy > h))
        if outside.size == 0:
            pol = _polarity_from_training(stored, images, responses)
            if pol is None:
                method = stored.method + "; polarity unknown (fewer than 3 training images)"
            else:
                method = stored.method + (
                    "; polarity = sign of the correlation between RF-centre-weighted contrast and spike count "
                    f"on the {n} training images"
                )
            return ReceptiveFields(
                centres=stored.centres, covariances=stored.covariances, image_shape=image_shape,
                source="stored", method=method, polarity=pol,
            )
        c = int(outside[0])
        reason = (
            f"stored receptive fields unusable ({outside.size} centre(s) outside the {h}×{w} image, e.g. cell {c} "
            f"at ({cx[c]:.1f}, {cy[c]:.1f}) px)"
        )

    if n >= int(min_stimuli):
        est = estimate_receptive_fields(images, responses, min_stimuli=min_stimuli)
        return ReceptiveFields(
            centres=est.centres, covariances=est.covariances, image_shape=image_shape,
            source="estimated", method=f"{reason}; {est.method}", polarity=est.polarity,
        )

    sigma = min(h, w) / 4.0
    msg = (
        f"{label}: {reason} and too few training images (n = {n} < {int(min_stimuli)}) to estimate them; "
        f"using a broad centred Gaussian (σ = {sigma:g} px) for every cell"
    )
    warnings.warn(msg, UserWarning, stacklevel=2)
    centres, covs = _broad(recording.n_cells, image_shape)
    return ReceptiveFields(
        centres=centres, covariances=covs, image_shape=image_shape, source="fallback",
        method=f"{reason} and too few training images (n = {n} < {int(min_stimuli)}) to estimate them: "
        f"one broad Gaussian per cell at the image centre (σ = min(H, W)/4 = {sigma:g} px)",
        polarity=None,
    )
