"""Clip models (time-varying stimuli): causal filtering, STA start, shapes, masked MMD."""

import numpy as np
import torch

from neurocode.losses import set_mmd_loss
from neurocode.models.parts.front_ends import SpatioTemporalFilter, spike_triggered_average
from neurocode.models.retina import RetinaModel
from neurocode.models.rf import RFConfig, rf_model_spec


def test_filter_is_causal_and_separable():
    torch.manual_seed(0)
    f = SpatioTemporalFilter(n_cells=2, frame_shape=(5, 5), n_lags=4)
    with torch.no_grad():
        f.spatial.normal_()
        f.temporal.normal_()
    clips = torch.randn(12, 3, 5, 5)  # [F, B, H, W]
    out = f(clips)
    assert out.shape == (9, 3, 2)
    proj = torch.einsum("fbhw,nhw->fbn", clips, f.spatial)
    ref = torch.stack([sum(f.temporal[:, lag] * proj[t + 3 - lag] for lag in range(4)) for t in range(9)])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # causal: changing a frame changes no earlier output bin
    later = clips.clone()
    later[8] += 1.0
    torch.testing.assert_close(f(later)[:5], out[:5])


def test_sta_start_recovers_a_linear_filter():
    # responses from a known separable filter: the STA's rank-1 factors recover it
    g = torch.Generator().manual_seed(1)
    n, Fr, T, S, L = 400, 14, 10, 6, 5
    clips = torch.randn(n, Fr, S, S, generator=g)
    spatial = torch.zeros(S, S)
    spatial[2:4, 1:3] = 1.0
    temporal = torch.tensor([0.0, 1.0, 0.5, -0.3, 0.0])
    proj = torch.einsum("nfhw,hw->nf", clips, spatial)
    drive = torch.stack([sum(temporal[lag] * proj[:, Fr - T + t - lag] for lag in range(L)) for t in range(T)], 1)
    counts = torch.poisson(torch.nn.functional.softplus(drive - 1.0), generator=g)[..., None]  # [n, T, 1]
    sta = spike_triggered_average(clips, counts, L)
    f = SpatioTemporalFilter(1, (S, S), L)
    f.init_from_sta(sta, clips)
    cs = np.corrcoef(f.spatial.detach().ravel(), spatial.ravel())[0, 1]
    ct = np.corrcoef(f.temporal.detach().ravel(), temporal)[0, 1]
    assert cs > 0.9 and ct > 0.9
    assert f(clips.transpose(0, 1)).std().item() == __import__("pytest").approx(1.0, rel=1e-3)


def test_clip_models_shapes_and_time_invariance():
    cfg = RFConfig(input_size=16, n_cells=3, n_steps=5, core_pool=2, channels=(4, 4), kernel_sizes=(3, 3))
    torch.manual_seed(0)
    clips = torch.randn(9, 2, 16, 16)
    snn = RetinaModel(rf_model_spec(cfg, "spiking", "noisy_lif", n_lags=4), generator=torch.Generator().manual_seed(0))
    spikes, prob = snn(clips, n_trials=3, return_probability=True)
    assert spikes.shape == prob.shape == (6, 3, 2, 3)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0} and bool(((prob >= 0) & (prob <= 1)).all())
    for model in (RetinaModel(rf_model_spec(cfg, None, "softplus", 4)),
                  RetinaModel(rf_model_spec(cfg, "relu", "softplus_poisson", 4)).eval()):
        rates = model(clips)
        assert rates.shape == (6, 2, 3) and bool((rates >= 0).all())
        # time-invariant: a longer clip predicts more bins, the same ones where they overlap
        longer = torch.cat([clips, torch.randn(4, 2, 16, 16)])
        torch.testing.assert_close(model(longer)[:6], rates)


def test_masked_set_mmd_equals_the_mmd_of_each_stimulus_s_own_trials():
    g = torch.Generator().manual_seed(0)
    model = torch.rand(8, 4, 3, 5, generator=g)
    recorded = (torch.rand(8, 6, 3, 5, generator=g) < 0.3).float()
    mask = torch.ones(6, 3, dtype=torch.bool)
    torch.testing.assert_close(set_mmd_loss(model, recorded, reduction="none", recorded_mask=mask),
                               set_mmd_loss(model, recorded, reduction="none"))
    mask[4:, 1] = False
    own = set_mmd_loss(model[:, :, 1:2], recorded[:, :4, 1:2], reduction="none")
    torch.testing.assert_close(set_mmd_loss(model, recorded, reduction="none", recorded_mask=mask)[1:2], own)
    # absent trials' content does not matter
    noisy = recorded.clone()
    noisy[:, 4:, 1] = 7.0
    torch.testing.assert_close(set_mmd_loss(model, noisy, reduction="none", recorded_mask=mask),
                               set_mmd_loss(model, recorded, reduction="none", recorded_mask=mask))
