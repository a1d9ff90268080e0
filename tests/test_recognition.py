"""neurocode.recognition: architectures, methods, presets, training and resume, robustness, coding, CLI.

Everything runs on CPU with one thread; the end-to-end CLI run on the digits is marked slow.
Dataset readers are tested on tiny fixtures written in each library's on-disk format
(tests/test_recognition_data.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurocode.neurons import LIF, NoisyLIF
from neurocode.recognition import (ARCHITECTURES, METHODS, PRESETS, NeuronSpec, TdBN, build_classifier,
                                   classifier_coding_analysis, direct_optimization, evaluate, fgsm, get_preset,
                                   load_digits_data, make_config, noise_source, parameter_count, rate_loss,
                                   robustness_curves, tet_loss, train_classifier, two_trials)

torch.set_num_threads(1)


# ------------------------------------------------------------------ architectures
def _conv(cin, cout, k=3, bias=False):
    return cin * cout * k * k + (cout if bias else 0)


def _bn(c):
    return 2 * c


def _basic(cin, cout):  # BasicBlock: two 3x3 conv + BN, 1x1 conv + BN shortcut when the shape changes
    n = _conv(cin, cout) + _bn(cout) + _conv(cout, cout) + _bn(cout)
    return n + (_conv(cin, cout, 1) + _bn(cout) if cin != cout else 0)


def test_resnet18_parameter_count_is_he_et_al_cifar_resnet18():
    # 11,173,962: He et al.'s CIFAR ResNet-18 (3x3 stem, no max pool, 10 classes), the count of the
    # common reference implementation (kuangliu/pytorch-cifar), i.e. the "11.2M" of the SNN literature.
    m = build_classifier("resnet18", neuron=NeuronSpec("dsnn"))
    assert parameter_count(m) == 11_173_962
    # and the paper's layer string, counted by hand
    n = _conv(3, 64) + _bn(64)
    cin = 64
    for w in (64, 128, 256, 512):
        n += _basic(cin, w) + _basic(w, w)
        cin = w
    assert parameter_count(m) == n + 512 * 10 + 10


def test_resnet19_parameter_count_is_tdbn_resnet19():
    # ResNet-19 of Zheng et al. (2021) as implemented by TET and the NSNN authors: 12.63 M parameters
    # (the "12.63M" quoted for ResNet-19 in SNN papers); counted here from its layer list.
    m = build_classifier("resnet19")
    n = _conv(3, 64) + _bn(64) + _basic(64, 128) + 2 * _basic(128, 128) + _basic(128, 256) + 2 * _basic(256, 256)
    n += _basic(256, 512) + _basic(512, 512) + (512 * 256 + 256) + (256 * 10 + 10)
    assert parameter_count(m) == n
    assert round(parameter_count(m) / 1e6, 2) == 12.63


def test_cifarnet_vggsnn_7bnet_digits_parameter_counts_follow_their_layer_strings():
    # Wu et al. 2019 CIFARNet: 128C3-256C3-AP2-512C3-AP2-1024C3-512C3-1024FC-512FC-(10)
    convs = [(3, 128), (128, 256), (256, 512), (512, 1024), (1024, 512)]
    n = sum(_conv(a, b) + _bn(b) for a, b in convs) + (512 * 8 * 8 * 1024 + _bn(1024)) + (1024 * 512 + _bn(512))
    assert parameter_count(build_classifier("cifarnet")) == n + 512 * 10 + 10
    # TET's VGGSNN at 48x48: 64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-AP2-FC10
    convs = [(2, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    n = sum(_conv(a, b) + _bn(b) for a, b in convs)
    assert parameter_count(build_classifier("vggsnn")) == n + 512 * 3 * 3 * 10 + 10
    # SEW ResNet 7B-Net (authors' code): 32C1-{SEW(32)-MP2}x7-FC11
    n = _conv(2, 32, 1) + _bn(32) + 7 * 2 * (_conv(32, 32) + _bn(32)) + 32 * 11 + 11
    assert parameter_count(build_classifier("7bnet")) == n
    n = _conv(1, 32) + _bn(32) + _conv(32, 64) + _bn(64) + 64 * 4 * 4 * 128 + _bn(128) + 128 * 10 + 10
    assert parameter_count(build_classifier("digits")) == n


# the input each architecture was defined for: CIFAR 32x32 static, DVS-CIFAR 48x48 and DVS-Gesture 128x128 frames
_INPUTS = {"cifarnet": (3, 32, 32, True), "resnet18": (3, 32, 32, True), "resnet19": (3, 32, 32, True),
           "vggsnn": (2, 48, 48, False), "7bnet": (2, 128, 128, False), "digits": (1, 8, 8, True)}
_HEAVY = {"cifarnet", "resnet19", "vggsnn"}
_COMBOS = [pytest.param(a, m, marks=pytest.mark.slow if (a in _HEAVY and m != "stbp") else ())
           for a in ARCHITECTURES for m in METHODS]


@pytest.mark.parametrize("arch,method", _COMBOS)
def test_every_architecture_and_method_takes_a_training_step_at_its_real_input_shape(arch, method):
    c, h, w, static = _INPUTS[arch]
    model_kind = "nsnn" if (list(ARCHITECTURES).index(arch) + list(METHODS).index(method)) % 2 else "dsnn"
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    T, B = 2, 2
    norm = METHODS[method].norm
    model = build_classifier(arch, neuron=NeuronSpec(model_kind), norm=norm, n_steps=T, generator=gen)
    assert model.input_shape == (c, h, w)
    x = torch.rand(B, c, h, w) if static else (torch.rand(T, B, c, h, w) < 0.2).float()
    y = torch.tensor([0, 1])
    out = model(x)
    assert out.shape == (T, B, model.n_classes)
    loss = METHODS[method].loss_fn(out, y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert grads[0].abs().sum() > 0  # the gradient reaches the first convolution through every spiking layer
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    n_spiking = len(model.spiking_layers)
    assert n_spiking >= 3 and model.code_layer is model.spiking_layers[-1]
    assert all(isinstance(s, NoisyLIF if model_kind == "nsnn" else LIF) for s in model.spiking_layers)


def test_resnet19_takes_dvs_cifar_frames():
    """The paper trains ResNet-19 on DVS-CIFAR too: 2-polarity 48x48 frames, T = 2 here (10 in Table 4)."""
    gen = torch.Generator().manual_seed(0)
    model = build_classifier("resnet19", input_shape=(2, 48, 48), neuron=NeuronSpec("nsnn", 0.2), generator=gen)
    x = (torch.rand(2, 2, 2, 48, 48) < 0.1).float()
    out = model(x)
    assert out.shape == (2, 2, 10)
    METHODS["stbp"].loss_fn(out, torch.tensor([3, 4])).backward()
    assert model.stem[0].weight.grad.abs().sum() > 0


def test_static_input_equals_its_frames_repeated_over_time():
    """The stem of a static image is computed once; feeding the same image as T frames gives the same output."""
    model = build_classifier("digits", neuron=NeuronSpec("dsnn"), n_steps=3)
    x = torch.rand(5, 1, 8, 8)
    model.train()
    a = model(x)
    b = model(x.unsqueeze(0).repeat(3, 1, 1, 1, 1))
    torch.testing.assert_close(a, b)


def test_tdbn_normalises_to_alpha_times_threshold():
    torch.manual_seed(0)
    x = torch.randn(6 * 4, 3, 5, 5) * torch.tensor([0.5, 3.0, 10.0])[None, :, None, None] + 7.0
    for v_th, alpha in ((2.0, 0.5), (1.0, 1 / math.sqrt(2)), (0.5, 1.0)):
        bn = TdBN(3, v_th=v_th, alpha=alpha).train()
        y = bn(x)
        mean = y.mean((0, 2, 3))
        std = y.var((0, 2, 3), unbiased=False).sqrt()
        torch.testing.assert_close(mean, torch.zeros(3), atol=1e-5, rtol=0)
        torch.testing.assert_close(std, torch.full((3,), alpha * v_th), atol=1e-4, rtol=1e-4)
    # ordinary batch norm when alpha * v_th = 1; running statistics in eval mode
    bn, ref = TdBN(3), torch.nn.BatchNorm2d(3)
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.eval()(x), ref.eval()(x))
    with pytest.raises(ValueError, match="TdBN expects"):
        bn(torch.zeros(3))


def test_tdbn_method_builds_residual_branches_with_alpha_one_over_sqrt2():
    m = build_classifier("resnet18", norm="tdbn")
    block = m.body[0]
    assert block.conv2.fwd.module[1].alpha == pytest.approx(1 / math.sqrt(2))
    assert block.conv1.fwd.module[1].alpha == 1.0
    down = m.body[2]  # first block of the 128-channel stage: a projection shortcut
    assert down.shortcut.fwd.module[1].alpha == pytest.approx(1 / math.sqrt(2))


# ------------------------------------------------------------------ losses
def test_tet_loss_is_the_mean_over_time_of_the_cross_entropy():
    torch.manual_seed(1)
    out = torch.randn(4, 6, 10)
    y = torch.randint(0, 10, (6,))
    per_t = torch.stack([F.cross_entropy(out[t], y) for t in range(4)]).mean()
    torch.testing.assert_close(tet_loss(out, y, lamb=0.0), per_t)
    lam = 0.05
    expected = (1 - lam) * per_t + lam * F.mse_loss(out, torch.ones_like(out))
    torch.testing.assert_close(tet_loss(out, y, lamb=lam), expected)
    # the STBP loss is the cross-entropy of the mean -- a different number
    torch.testing.assert_close(rate_loss(out, y), F.cross_entropy(out.mean(0), y))
    assert not torch.isclose(rate_loss(out, y), per_t)
    with pytest.raises(ValueError, match=r"outputs must be per-step class scores \[T, B, n_classes\]"):
        tet_loss(out[0], y)
    with pytest.raises(ValueError, match="lamb"):
        tet_loss(out, y, lamb=2.0)


# ------------------------------------------------------------------ presets
def test_table4_presets():
    assert len(PRESETS) == 1 + 32  # the digits preset and Table 4's 20 rows, 12 of them for T = 2 and for T = 4
    p = get_preset("cifar10-stbp-cifarnet-nsnn-T4")
    assert (p.timesteps, p.lr, p.batch_size, p.noise_sigma) == (4, 0.003, 128, 0.3)
    p = get_preset("dvs-cifar10-tdbn-vggsnn-nsnn")
    assert (p.timesteps, p.lr, p.batch_size, p.noise_sigma) == (10, 0.0003, 32, 0.2)
    p = get_preset("dvs-gesture-stbp-7bnet-dsnn")
    assert (p.timesteps, p.lr, p.batch_size) == (16, 0.001, 10)
    with pytest.raises(FrozenInstanceError):
        p.lr = 1.0
    cfg = make_config("cifar100", "nsnn", "tet", "resnet18", timesteps=4)
    assert cfg.preset == "cifar100-tet-resnet18-nsnn-T4" and cfg.lr == 0.001 and cfg.batch_size == 256
    with pytest.raises(ValueError, match="preset"):
        get_preset("nope")


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="dataset must be one of"):
        make_config("mnist")
    with pytest.raises(ValueError, match="model must be one of"):
        make_config("digits", model="snn")
    with pytest.raises(ValueError, match="method must be one of"):
        make_config("digits", method="bptt")
    with pytest.raises(ValueError, match="arch must be one of"):
        make_config("digits", arch="vgg16")
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        make_config("digits", epochs=0)
    with pytest.raises(ValueError, match="flip_betas"):
        make_config("digits", flip_betas=(0.0, 1.5))
    with pytest.raises(ValueError, match="drop_rhos"):
        make_config("digits", drop_rhos=(0.1,))
    with pytest.raises(ValueError, match="unknown setting"):
        make_config("digits", epoch=3)
    with pytest.raises(ValueError, match="no Table 4 preset for arch 'digits'"):
        make_config("cifar10", arch="digits")
    with pytest.raises(ValueError, match="noise_sigma must be a finite positive number"):
        NeuronSpec(noise_sigma=-0.1)
    with pytest.raises(ValueError, match="norm must be one of"):
        build_classifier("digits", norm="layer")
    with pytest.raises(ValueError, match=r"expects inputs of shape \(C, H, W\) = \(1, 8, 8\)"):
        build_classifier("digits")(torch.zeros(2, 1, 9, 9))
    with pytest.raises(ValueError, match="multiples of 16"):
        build_classifier("vggsnn", input_shape=(2, 40, 40))


def test_cli_parser_choices_match_the_registries():
    from neurocode.recognition import cli
    from neurocode.recognition.data import DATASETS

    assert cli.DATASETS == DATASETS and cli.ARCHITECTURES == tuple(ARCHITECTURES) and cli.METHODS == tuple(METHODS)


def test_cli_errors_are_one_line_and_name_the_problem(tmp_path, capsys):
    from neurocode.cli import main

    assert main(["classify", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neurocode: error:") and "cifar-10-batches-py" in err and "--download" in err
    assert len(err.splitlines()) == 1
    assert main(["classify", "--epochs", "0", "--out", str(tmp_path / "r")]) == 2
    assert "epochs must be a positive integer" in capsys.readouterr().err


# ------------------------------------------------------------------ training, resume, robustness, coding
@pytest.fixture(scope="module")
def digits():
    return load_digits_data()


def _quick(model="nsnn", **kw):
    base = dict(epochs=3, flip_betas=(), fgsm_eps=(), do_gammas=(), coding_samples=0)
    base.update(kw)
    return make_config("digits", model, **base)


@pytest.fixture(scope="module")
def trained(digits):
    """A digits NSNN and DSNN after 3 epochs (well above chance)."""
    out = {}
    for kind in ("nsnn", "dsnn"):
        model, _ = train_classifier(_quick(kind), digits, progress=False)
        out[kind] = model.eval()
    return out


def test_digits_split_is_fixed_stratified_and_disjoint(digits):
    again = load_digits_data()
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1077, 180, 540)
    torch.testing.assert_close(digits.test.tensors[0], again.test.tensors[0])
    labels = digits.test.tensors[1].numpy()
    assert np.bincount(labels).min() >= 50  # stratified: every class ~54 times
    rows = {tuple(r) for r in digits.train.tensors[0].flatten(1).numpy().round(4).tolist()}
    test_rows = [tuple(r) for r in digits.test.tensors[0].flatten(1).numpy().round(4).tolist()]
    assert sum(r in rows for r in test_rows) < 10  # (the digits hold a few duplicate images)
    assert 0.0 <= float(digits.train.tensors[0].min()) and float(digits.train.tensors[0].max()) <= 1.0


def test_resume_gives_the_same_result(digits, tmp_path):
    cfg = _quick("nsnn", epochs=2)
    full, hist_full = train_classifier(cfg, digits, tmp_path / "a.pt", progress=False)

    class Stop(Exception):
        pass

    def stop(epoch, record):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train_classifier(cfg, digits, tmp_path / "b.pt", progress=False, on_epoch=stop)
    resumed, hist_res = train_classifier(cfg, digits, tmp_path / "b.pt", resume=True, progress=False)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(hist_full) == strip(hist_res)
    # a checkpoint of another configuration is refused, naming the fields
    from neurocode.runs import RunFolderError

    with pytest.raises(RunFolderError, match="lr"):
        train_classifier(replace(cfg, lr=0.1), digits, tmp_path / "b.pt", resume=True, progress=False)


def test_classify_run_folder_refuses_to_overwrite_and_resumes(digits, tmp_path):
    from neurocode.recognition import classify
    from neurocode.runs import RunFolderError

    out = tmp_path / "run"
    r = classify(config=_quick("dsnn", epochs=1, flip_betas=(0.0, 0.1), robust_repeats=2), data=digits, out=out,
                 progress=False, figures=False)
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_accuracy"] == r.metrics["test_accuracy"] and {"test_loss", "robustness"} <= set(m)
    assert m["robustness"]["flip"]["level"] == [0.0, 0.1] and len(m["robustness"]["flip"]["accuracy_runs"][1]) == 2
    assert json.loads((out / "config.json").read_text())["model"] == "dsnn"
    from neurocode.recognition import load_run

    cfg, model, stored = load_run(out, data=digits)  # the chosen model, scored again: the same test result
    again = evaluate(model, digits.test, seed=cfg.seed + 20_000)
    assert again["accuracy"] == stored["test_accuracy"] and again["loss"] == pytest.approx(stored["test_loss"])
    with pytest.raises(FileExistsError, match="--resume"):
        classify(config=_quick("dsnn", epochs=1), data=digits, out=out, progress=False)
    with pytest.raises(RunFolderError, match="epochs"):
        classify(config=_quick("dsnn", epochs=2), data=digits, out=out, resume=True, progress=False)
    # resuming a finished run re-scores it with new evaluation settings (they are not part of the run)
    again = classify(config=_quick("dsnn", epochs=1, flip_betas=(0.0,)), data=digits, out=out, resume=True,
                     progress=False, figures=False)
    assert again.metrics["test_accuracy"] == r.metrics["test_accuracy"]


def test_evaluation_is_seeded_and_an_nsnn_is_stochastic(trained, digits):
    nsnn, dsnn = trained["nsnn"], trained["dsnn"]
    a = evaluate(nsnn, digits.test, seed=3)
    assert a == evaluate(nsnn, digits.test, seed=3)
    x = digits.test.tensors[0][:64]
    with noise_source(nsnn, torch.Generator().manual_seed(0)):
        o1 = nsnn(x)
    with noise_source(nsnn, torch.Generator().manual_seed(1)):
        o2 = nsnn(x)
    assert not torch.equal(o1, o2)
    torch.testing.assert_close(dsnn(x), dsnn(x))
    assert a["accuracy"] > 0.85 and evaluate(dsnn, digits.test)["accuracy"] > 0.85


def test_flip_with_beta_zero_is_the_identity_and_beta_perturbs_every_spiking_layer(trained, digits):
    from neurocode.analysis import perturb_spikes

    for model in trained.values():
        base = evaluate(model, digits.test, seed=5)
        assert evaluate(model, digits.test, seed=5, beta=0.0) == base
        x = digits.test.tensors[0][:32]
        with noise_source(model, torch.Generator().manual_seed(0)):
            clean = model(x)
        with noise_source(model, torch.Generator().manual_seed(0)), \
                perturb_spikes(model, 0.0, (NoisyLIF, LIF)) as layers:
            same = model(x)
        assert len(layers) == len(model.spiking_layers) == 3  # stem, conv, FC
        torch.testing.assert_close(clean, same, rtol=0, atol=0)
        flipped = evaluate(model, digits.test, seed=5, beta=0.3)
        assert flipped["loss"] > base["loss"] and flipped["accuracy"] < base["accuracy"]


def test_fgsm_and_do_increase_the_loss(trained, digits):
    x, y = digits.test.tensors[0][:128], digits.test.tensors[1][:128]
    for model in trained.values():
        with noise_source(model, torch.Generator().manual_seed(0)), torch.no_grad():
            clean = float(rate_loss(model(x), y))
        adv = fgsm(model, x, y, 0.1)
        assert adv.shape == x.shape and float(adv.min()) >= 0 and float(adv.max()) <= 1
        d = (adv - x).abs()
        assert float(d.max()) <= 0.1 + 1e-6 and float((d > 0).float().mean()) > 0.5
        with noise_source(model, torch.Generator().manual_seed(0)), torch.no_grad():
            attacked = float(rate_loss(model(adv), y))
        assert attacked > clean + 0.05
        torch.testing.assert_close(fgsm(model, x, y, 0.0), x)
        do = direct_optimization(model, x, y, gamma=1.0, clamp=None)
        norms = (do - x).flatten(1).norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-4, rtol=1e-4)
        with noise_source(model, torch.Generator().manual_seed(0)), torch.no_grad():
            assert float(rate_loss(model(do), y)) > clean
    with pytest.raises(ValueError, match="eps must be >= 0"):
        fgsm(trained["dsnn"], x, y, -0.1)


def test_robustness_curves_report_mean_and_sd_over_repeats(trained, digits):
    res = robustness_curves(trained["nsnn"], digits.test, flip_betas=(0.0, 0.2), fgsm_eps=(0.0, 0.2), repeats=2,
                            seed=0, limit=200)
    for kind in ("flip", "fgsm"):
        c = res[kind]
        assert c["level"] == [0.0, 0.2] and len(c["accuracy_sd"]) == 2 and c["repeats"] == 2
        assert c["accuracy_mean"][1] < c["accuracy_mean"][0] and c["loss_mean"][1] > c["loss_mean"][0]
        assert c["accuracy_sd"][0] >= 0 and len(c["accuracy_runs"][0]) == 2
    with pytest.raises(ValueError, match="EventDrop"):
        robustness_curves(trained["nsnn"], digits.test, drop_rhos=(0.1,))


def test_event_drop_curve_on_frames():
    """EventDrop on event-count frames ([B, T, C, H, W] items, time-major into the model)."""
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    frames = torch.poisson(torch.full((24, 3, 1, 8, 8), 2.0))
    ds = TensorDataset(frames, torch.arange(24) % 10)
    model = build_classifier("digits", neuron=NeuronSpec("nsnn"), n_steps=3)
    res = robustness_curves(model, ds, static=False, drop_rhos=(0.0, 0.5, 1.0), flip_betas=(0.0,), repeats=2, seed=0)
    drop, flip = res["event_drop"], res["flip"]
    assert drop["level"] == [0.0, 0.5, 1.0]
    assert drop["accuracy_runs"][0] == flip["accuracy_runs"][0]  # rho = 0 is the unperturbed evaluation
    assert drop["loss_mean"][1] != drop["loss_mean"][0]
    assert drop["loss_mean"][2] != drop["loss_mean"][0] and len(drop["accuracy_runs"][2]) == 2


def test_coding_analysis_on_the_final_spiking_layer(trained, digits):
    res = classifier_coding_analysis(trained["nsnn"], digits.test, n_samples=60, n_trials=6, seed=0)
    assert res.mean_fano.shape == (60,) and res.cosine.shape == (60,)
    assert np.nanmax(res.cosine) <= 1 + 1e-9 and np.nanmin(res.mean_fano) >= 0 and np.isfinite(res.r)
    again = classifier_coding_analysis(trained["nsnn"], digits.test, n_samples=60, n_trials=6, seed=0)
    np.testing.assert_array_equal(res.mean_fano, again.mean_fano)
    det = classifier_coding_analysis(trained["dsnn"], digits.test, n_samples=20, n_trials=3, seed=0)
    np.testing.assert_allclose(det.cosine, 1.0)  # a DSNN's trials are identical
    assert np.all((det.mean_fano == 0) | np.isnan(det.mean_fano))
    trials = two_trials(trained["nsnn"], digits.test.tensors[0][:1], seed=0)
    assert trials["spikes"].shape == (2, 4, 128) and trials["predictions"].shape == (2, 10)
    assert (trials["spikes"][0] != trials["spikes"][1]).any()
    from neurocode.recognition import plot_two_trials

    fig = plot_two_trials(trials)
    assert len(fig.axes) == 6


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_cli_default_on_digits_reaches_97_percent(tmp_path, capsys):
    from neurocode.cli import main

    out = tmp_path / "digits-nsnn"
    assert main(["classify", "--dataset", "digits", "--model", "nsnn", "--out", str(out), "--threads", "1",
                 "--no-progress"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_accuracy"] >= 0.97 and m["n_test"] == 540
    assert {"flip", "fgsm", "do"} <= set(m["robustness"])
    assert m["robustness"]["flip"]["level"] == [0.0, 0.01, 0.02, 0.04, 0.1]
    assert m["coding"]["n_valid"] >= 500 and m["coding"]["r"] < 0 and m["coding"]["p"] < 0.01
    for name in ("config.json", "checkpoint.pt", "history.json", "training_curve.png", "robustness.png",
                 "coding_scatter.png"):
        assert (out / name).is_file(), name
    assert "test accuracy" in capsys.readouterr().out
