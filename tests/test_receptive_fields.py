"""Receptive fields: stored-contour mapping, masks, STA estimation, choice per recording, plot."""

import json
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from neurocode.data import (  # noqa: E402
    DataFormatError,
    ReceptiveFields,
    Recording,
    estimate_receptive_fields,
    from_contours,
    kfold_split,
    receptive_fields_for,
)
from neurocode.plotting import plot_receptive_fields  # noqa: E402


def _ellipse_points(centre, cov, angles):
    """Points with Mahalanobis distance exactly 1 from ``centre`` under ``cov``: [2, n]."""
    chol = np.linalg.cholesky(np.asarray(cov, float))
    return np.asarray(centre, float)[:, None] + chol @ np.stack([np.cos(angles), np.sin(angles)])


def _mahalanobis(points, centre, cov):
    d = points - centre[:, None]
    return np.sqrt(np.einsum("in,ij,jn->n", d, np.linalg.inv(cov), d))


def _copy(rec, receptive_fields=None, stimuli="same"):
    return Recording(name=rec.name, spike_times_flat=rec.spike_times_flat, spike_offsets=rec.spike_offsets,
                     shape=rec.shape, window=rec.window,
                     stimuli=rec.stimuli if isinstance(stimuli, str) else stimuli,
                     receptive_fields=receptive_fields, source="copy")


@pytest.fixture(scope="module")
def no_rf_recording(natural_recording):
    return _copy(natural_recording, receptive_fields=None)


@pytest.fixture(scope="module")
def fold0():
    return kfold_split(60, 5, 0, 0)


# ---------------------------------------------------------------------- from_contours
def test_ellipse_fit_nonuniform_sampling_and_spec_mapping():
    rng = np.random.default_rng(0)
    cov_screen = np.array([[40.0, 12.0], [12.0, 15.0]])
    centre_screen = np.array([410.0, 300.0])
    # Strongly non-uniform in angle: bunched near 0, sparse elsewhere (np.cov would be biased).
    angles = 2 * np.pi * np.sort(rng.random(200)) ** 3
    pts = _ellipse_points(centre_screen, cov_screen, angles)
    contours = pts[None]
    h, w = 100, 160  # non-square
    rf = from_contours(contours, (h, w))
    assert rf.source == "stored" and rf.image_shape == (100, 160) and rf.polarity is None
    # SPEC mapping by hand: col = W/2 + (x - 404) = 80 + 6 = 86, row = H/2 - (y - 304) = 50 + 4 = 54.
    np.testing.assert_allclose(rf.centres[0], [86.0, 54.0], atol=1e-6)
    flip = np.diag([1.0, -1.0])
    np.testing.assert_allclose(rf.covariances[0], flip @ cov_screen @ flip, atol=1e-6)
    # the mapped contour points are at Mahalanobis distance 1
    mapped = np.stack([w / 2 + (pts[0] - 404), h / 2 - (pts[1] - 304)])
    np.testing.assert_allclose(_mahalanobis(mapped, rf.centres[0], rf.covariances[0]), 1.0, atol=1e-8)
    # the naive 2 x np.cov estimate is wrong here, so the conic fit is doing the work
    assert not np.allclose(2 * np.cov(pts), cov_screen, atol=1.0)

    up = from_contours(contours, (h, w), flip_y=False)
    np.testing.assert_allclose(up.centres[0], [86.0, 46.0], atol=1e-6)
    np.testing.assert_allclose(up.covariances[0], cov_screen, atol=1e-6)
    other = from_contours(contours, (h, w), screen_centre=(400.0, 300.0))
    np.testing.assert_allclose(other.centres[0], [90.0, 50.0], atol=1e-6)


def test_from_contours_rejects_bad_input():
    with pytest.raises(ValueError, match="contours"):
        from_contours(np.zeros((3, 2)), (10, 10))
    bad = _ellipse_points([0.0, 0.0], np.eye(2), np.linspace(0, 6, 20))[None].copy()
    bad[0, 1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        from_contours(bad, (10, 10))
    line = np.stack([np.arange(10.0), 2 * np.arange(10.0)])[None]
    with pytest.raises(ValueError, match=r"contours\[0\]"):
        from_contours(line, (10, 10))


def test_bundled_stored_rfs_map_inside_image(natural_recording):
    rec = natural_recording
    cont = rec.receptive_fields
    rf = from_contours(cont, rec.stimuli.shape[1:])
    assert rf.n_cells == 49 and rf.image_shape == (256, 256)
    assert np.all((rf.centres > 0) & (rf.centres < 256))
    for c in range(rf.n_cells):
        mapped = np.stack([128 + (cont[c, 0] - 404), 128 - (cont[c, 1] - 304)])
        np.testing.assert_allclose(_mahalanobis(mapped, rf.centres[c], rf.covariances[c]), 1.0, atol=1e-6)
        # the contours are uniform in angle (last point repeats the first): the mean is the centre
        np.testing.assert_allclose(mapped[:, :-1].mean(1), rf.centres[c], atol=1e-6)
    sig = rf.sigmas()
    assert np.all(sig[:, 0] <= sig[:, 1]) and 2 < sig.min() and sig.max() < 40


# ---------------------------------------------------------------------- container
def _two_rfs(shape=(64, 80)):
    return ReceptiveFields(centres=np.array([[30.3, 20.7], [40.0, 32.0]]),
                           covariances=np.array([[[4.0, 1.0], [1.0, 3.0]], [[9.0, 2.0], [2.0, 6.0]]]),
                           image_shape=shape, source="estimated", method="synthetic test RFs",
                           polarity=np.array([1.0, -1.0]))


def test_scaled_per_axis():
    rf = _two_rfs((256, 256))
    s = rf.scaled((64, 128))  # x × 1/2, y × 1/4
    np.testing.assert_allclose(s.centres, rf.centres * [0.5, 0.25])
    np.testing.assert_allclose(s.covariances[:, 0, 0], rf.covariances[:, 0, 0] * 0.25)
    np.testing.assert_allclose(s.covariances[:, 1, 1], rf.covariances[:, 1, 1] / 16)
    np.testing.assert_allclose(s.covariances[:, 0, 1], rf.covariances[:, 0, 1] / 8)
    q = rf.scaled((64, 64))
    np.testing.assert_allclose(q.covariances, rf.covariances / 16)
    assert q.image_shape == (64, 64) and q.method == rf.method
    np.testing.assert_array_equal(q.polarity, rf.polarity)


def test_masks_normalised_centred_and_with_pixel_variance():
    rf = _two_rfs((64, 80))
    m = rf.masks()
    assert m.dtype == np.float32 and m.shape == (2, 64, 80)
    np.testing.assert_allclose(m.sum(axis=(1, 2)), 1.0, atol=1e-5)
    yy, xx = np.mgrid[0:64, 0:80] + 0.5
    for c in range(2):
        w = m[c].astype(float)
        w /= w.sum()
        mx, my = (w * xx).sum(), (w * yy).sum()
        np.testing.assert_allclose([mx, my], rf.centres[c], atol=0.05)
        if c == 1:  # broad RF: second moment = covariance + 1/12 (pixel area)
            dx, dy = xx - mx, yy - my
            mom = np.array([[(w * dx * dx).sum(), (w * dx * dy).sum()], [(w * dx * dy).sum(), (w * dy * dy).sum()]])
            np.testing.assert_allclose(mom, rf.covariances[c] + np.eye(2) / 12, atol=2e-3)
    # on a resampled grid with scale 2: centre follows the scaled centre, width scale²Σ' + I/12
    big = _two_rfs((256, 320))
    m2 = big.masks((64, 80), scale=2.0)
    s = big.scaled((64, 80))
    w = m2[1].astype(float) / m2[1].sum()
    mx, my = (w * xx).sum(), (w * yy).sum()
    np.testing.assert_allclose([mx, my], s.centres[1], atol=0.05)
    np.testing.assert_allclose((w * (xx - mx) ** 2).sum(), 4 * s.covariances[1, 0, 0] + 1 / 12, atol=2e-3)
    # an RF far outside the grid still gives a finite, normalised map
    far = ReceptiveFields(centres=[[-500.0, 10.0]], covariances=[np.eye(2)], image_shape=(20, 20),
                          source="stored", method="test")
    mf = far.masks()
    assert np.isfinite(mf).all() and abs(mf.sum() - 1) < 1e-5 and mf[0, :, 0].sum() > 0.99


def test_validation_and_dict_round_trip():
    rf = _two_rfs()
    d = json.loads(json.dumps(rf.to_dict()))
    back = ReceptiveFields.from_dict(d)
    np.testing.assert_array_equal(back.centres, rf.centres)
    np.testing.assert_array_equal(back.covariances, rf.covariances)
    np.testing.assert_array_equal(back.polarity, rf.polarity)
    assert (back.image_shape, back.source, back.method) == (rf.image_shape, rf.source, rf.method)
    assert ReceptiveFields.from_dict({**d, "polarity": None}).polarity is None
    np.testing.assert_allclose(rf.sigmas()[0] ** 2, np.linalg.eigvalsh(rf.covariances[0]))
    with pytest.raises(AttributeError):
        rf.source = "stored"  # frozen
    with pytest.raises(ValueError):
        rf.centres[0, 0] = 1.0  # read-only arrays
    kw = dict(centres=rf.centres, covariances=rf.covariances, image_shape=(64, 80), source="stored", method="m")
    with pytest.raises(ValueError, match="centres"):
        ReceptiveFields(**{**kw, "centres": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="covariances.*positive definite"):
        ReceptiveFields(**{**kw, "covariances": np.array([np.eye(2), [[1.0, 2.0], [2.0, 1.0]]])})
    with pytest.raises(ValueError, match="covariances"):
        ReceptiveFields(**{**kw, "covariances": np.full((2, 2, 2), np.nan)})
    with pytest.raises(ValueError, match="polarity"):
        ReceptiveFields(**kw, polarity=np.array([1.0, 0.5]))
    with pytest.raises(ValueError, match="source"):
        ReceptiveFields(**{**kw, "source": "guessed"})
    with pytest.raises(ValueError, match="image_shape"):
        ReceptiveFields(**{**kw, "image_shape": (0, 5)})


# ---------------------------------------------------------------------- estimation
def _pink_noise(rng, n, size):
    """1/f-amplitude (natural-image-like) noise images, z-scored: [n, size, size]."""
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    f[0, 0] = np.inf
    spec = (rng.normal(size=(n, size, size)) + 1j * rng.normal(size=(n, size, size))) / np.maximum(f, 1 / size)
    x = np.real(np.fft.ifft2(spec))
    return (x - x.mean()) / x.std()


def _simulate(rng, images, n_trials=30):
    """8 cells with known Gaussian RFs (ON and OFF), rectified-linear rate, Poisson spikes.

    Returns (ground-truth ReceptiveFields, trial-averaged counts [n, 8], uint8 images).
    """
    n_img, size, _ = images.shape
    centres = rng.uniform(12, 52, size=(8, 2))
    sig = rng.uniform(1.5, 3.5, size=8)
    pol = np.array([1, -1, 1, -1, -1, -1, 1, -1], float)
    truth = ReceptiveFields(centres=centres, covariances=sig[:, None, None] ** 2 * np.eye(2),
                            image_shape=(size, size), source="estimated", method="ground truth", polarity=pol)
    drive = images.reshape(n_img, -1) @ truth.masks().reshape(8, -1).T.astype(float)  # [n, cells]
    rate = np.maximum(1.0 + 3.0 * pol * drive / drive.std(0), 0.0)  # spikes per trial
    responses = rng.poisson(rate * n_trials) / n_trials
    grey = np.clip(np.round(128 + 40 * images), 0, 255).astype(np.uint8)  # grey levels, as in a recording
    return truth, responses, grey


def test_estimate_recovers_centres_and_polarity():
    rng = np.random.default_rng(1)
    truth, responses, grey = _simulate(rng, rng.normal(size=(300, 64, 64)))
    est = estimate_receptive_fields(grey, responses)
    assert est.source == "estimated" and est.image_shape == (64, 64) and "300 training images" in est.method
    dist = np.linalg.norm(est.centres - truth.centres, axis=1)
    assert dist.max() < 1.5, dist  # measured over seeds 0-9: worst 0.8 px
    np.testing.assert_array_equal(est.polarity, truth.polarity)
    # same images at 256 px (block-replicated): the estimate maps back to 256-px coordinates
    big = np.repeat(np.repeat(grey[:100], 4, axis=1), 4, axis=2)
    est_big = estimate_receptive_fields(big, responses[:100])
    assert est_big.image_shape == (256, 256)
    est_small = estimate_receptive_fields(grey[:100], responses[:100])
    np.testing.assert_allclose(est_big.centres / 4, est_small.centres, atol=0.3)
    np.testing.assert_array_equal(est_big.polarity, est_small.polarity)


def test_estimate_with_natural_like_images():
    """1/f images blur the STA by their own correlations: centres are less precise."""
    rng = np.random.default_rng(1)
    truth, responses, grey = _simulate(rng, _pink_noise(rng, 300, 64))
    est = estimate_receptive_fields(grey, responses)
    dist = np.linalg.norm(est.centres - truth.centres, axis=1)
    assert np.median(dist) < 1.5 and dist.max() < 3.0, dist  # seeds 0-9: worst 2.1 px
    np.testing.assert_array_equal(est.polarity, truth.polarity)
    assert np.all(est.sigmas() > truth.sigmas())  # blurred, never sharper


def test_estimate_rejects_bad_input():
    rng = np.random.default_rng(2)
    x, r = rng.random((10, 16, 16)), rng.random((10, 3))
    with pytest.raises(DataFormatError, match="at least 20 training stimuli, got 10"):
        estimate_receptive_fields(x, r, min_stimuli=20)
    x, r = rng.random((30, 16, 16)), rng.random((30, 3))
    with pytest.raises(DataFormatError, match="responses"):
        estimate_receptive_fields(x, r[:29])
    with pytest.raises(DataFormatError, match="stimuli"):
        estimate_receptive_fields(x[0], r)
    r_nan = r.copy()
    r_nan[3, 1] = np.nan
    with pytest.raises(DataFormatError, match="responses.*NaN"):
        estimate_receptive_fields(x, r_nan)
    # a silent cell gets the broad centred Gaussian and is counted in `method`
    r0 = r.copy()
    r0[:, 2] = 0.0
    est = estimate_receptive_fields(x, r0)
    np.testing.assert_allclose(est.centres[2], [8.0, 8.0])
    assert "1 cell(s) without response variation" in est.method


# ---------------------------------------------------------------------- per recording
def test_receptive_fields_for_stored(natural_recording, fold0):
    train, _ = fold0
    rf = receptive_fields_for(natural_recording, train)
    assert rf.source == "stored" and rf.image_shape == (256, 256) and "48 training images" in rf.method
    assert int((rf.polarity < 0).sum()) == 44  # SPEC §3: 44 of the 49 cells are OFF cells
    ref = from_contours(natural_recording.receptive_fields, (256, 256))
    np.testing.assert_array_equal(rf.centres, ref.centres)


def test_receptive_fields_for_estimated_matches_stored(natural_recording, no_rf_recording, fold0):
    train, _ = fold0
    stored = receptive_fields_for(natural_recording, train)
    est = receptive_fields_for(no_rf_recording, train)
    assert est.source == "estimated" and "no stored receptive fields" in est.method
    dist = np.linalg.norm(est.centres - stored.centres, axis=1)
    assert np.median(dist) < 25.0, np.median(dist)  # px at 256 (measured: ~15)
    for k in range(2):
        assert np.corrcoef(est.centres[:, k], stored.centres[:, k])[0, 1] > 0.4
    assert (est.polarity == stored.polarity).mean() > 0.75


def test_receptive_fields_for_uses_only_training_stimuli(natural_recording, fold0):
    """Scrambling the test stimuli's frames and responses changes nothing."""
    train, test = fold0
    idx = np.arange(60)
    idx[test] = np.roll(test, 1)  # test slots now hold other test stimuli's responses
    poisoned = natural_recording.subset(idx)
    poisoned.stimuli[test] = np.random.default_rng(3).integers(0, 256, size=(len(test), 256, 256), dtype=np.uint8)
    assert not np.array_equal(poisoned.stimuli, natural_recording.stimuli)
    assert not np.array_equal(poisoned.spike_counts(), natural_recording.spike_counts())
    for make in (lambda r: r, lambda r: _copy(r, receptive_fields=None)):
        a = receptive_fields_for(make(natural_recording), train)
        b = receptive_fields_for(make(poisoned), train)
        assert a.source == b.source
        np.testing.assert_array_equal(a.centres, b.centres)
        np.testing.assert_array_equal(a.covariances, b.covariances)
        np.testing.assert_array_equal(a.polarity, b.polarity)


def test_receptive_fields_for_fallback_and_errors(natural_recording, no_rf_recording):
    with pytest.warns(UserWarning, match=r"no stored receptive fields.*too few training images \(n = 10 < 20\)"):
        rf = receptive_fields_for(no_rf_recording, np.arange(10))
    assert rf.source == "fallback" and rf.polarity is None
    np.testing.assert_allclose(rf.centres, np.tile([128.0, 128.0], (49, 1)))
    np.testing.assert_allclose(rf.sigmas(), 64.0)
    # stored RFs with a centre outside the image are not used
    shifted = natural_recording.receptive_fields.copy()
    shifted[5, 0] += 1000.0
    rf2 = receptive_fields_for(_copy(natural_recording, receptive_fields=shifted), np.arange(30))
    assert rf2.source == "estimated" and "unusable" in rf2.method and "cell 5" in rf2.method
    with pytest.raises(DataFormatError, match="copy.*'stimuli'"):
        receptive_fields_for(_copy(natural_recording, stimuli=None), np.arange(30))
    with pytest.raises(IndexError):
        receptive_fields_for(natural_recording, [0, 60])


# ---------------------------------------------------------------------- plot
def test_plot_receptive_fields(tmp_path):
    rf = _two_rfs((64, 80))
    path = tmp_path / "rf.png"
    fig = plot_receptive_fields(rf, image=np.zeros((64, 80)), path=path, n_sigma=2.0, label_cells=True)
    assert isinstance(fig, Figure) and path.stat().st_size > 0
    ax = fig.axes[0]
    ells = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ells) == rf.n_cells
    evals = np.linalg.eigvalsh(rf.covariances[1])
    np.testing.assert_allclose([ells[1].width, ells[1].height], 4 * np.sqrt(evals[::-1]))
    np.testing.assert_allclose(ells[1].center, rf.centres[1])
    assert ells[0].get_edgecolor() != ells[1].get_edgecolor()  # ON vs OFF
    assert ax.images[0].get_extent() == [0, 80, 64, 0]
    # an image of another size: ellipses drawn in its pixel coordinates
    fig2 = plot_receptive_fields(rf, image=np.zeros((128, 160)))
    e2 = [p for p in fig2.axes[0].patches if isinstance(p, Ellipse)]
    np.testing.assert_allclose(e2[0].center, rf.centres[0] * 2)
