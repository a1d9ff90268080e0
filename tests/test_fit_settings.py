"""A fit reaches only the settings of the parts it uses (issue 30): FitConfig holds the one
architecture config its fit uses, naming another is an error, and configs written when every fit
held all three (``architecture``, ``snn``, ``cnn``, ``rf``) still load as the same fit. The settings
of parts only some fits have are sections (``clips``: continuous recordings; ``spiking``: the spiking
families' training; ``ln``: the LN reference's; ``pairs``: the paper CNN's (stimulus, trial) pairs) that other
fits lack; their old flat names still reach them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from neurocode.fitting import (ARCH_CONFIGS, MODELS, MOVED_FIELDS, PRESETS, SECTIONS, ClipsConfig, FitConfig,
                               LNFitConfig, PairsFitConfig, SpikingFitConfig, make_config, reachable_settings)
from neurocode.models import CNNConfig, SNNConfig
from neurocode.models.rf import RFConfig, RFRateConfig
from neurocode.sweep._trials import settings_overrides

#: Settings every fit reached when FitConfig held all three architecture configs (measured on main at
#: 24f752b with the rule of reachable_settings: FitConfig's 32 other fields + SNNConfig 17 + CNNConfig 7
#: + RFConfig 18).
BEFORE = 75
#: Then, with the one architecture config a fit uses (measured on main at 38ef774): FitConfig's 32 other
#: fields plus the architecture's (the RF-aware rate models' without the neurons' 10).
ONE_ARCH = {("quick", "nsnn"): 50, ("quick", "cnn"): 40, ("quick", "ln"): 40, ("paper", "nsnn"): 49,
            ("paper", "cnn"): 39, ("movie", "nsnn"): 50, ("movie", "ln"): 40}
#: And now: FitConfig's 25 other fields, the architecture's, and the sections the fit has (spiking: 3 for the
#: NSNN and DSNN, where the five flat fields were; ln: 1, the LN's ridge; pairs: 1, the paper CNN's batch of
#: (stimulus, trial) pairs; clips: 2, the movie preset's).
AFTER = {("quick", "nsnn"): 46, ("quick", "cnn"): 33, ("quick", "ln"): 34, ("paper", "nsnn"): 45,
         ("paper", "cnn"): 33, ("movie", "nsnn"): 48, ("movie", "ln"): 36}


@pytest.mark.parametrize("preset, model", sorted(AFTER))
def test_a_fit_reaches_only_its_own_architectures_settings(preset, model):
    config = make_config(model, preset)
    names = reachable_settings(config)
    assert len(names) == len(set(names)) == AFTER[preset, model] <= ONE_ARCH[preset, model] < BEFORE
    prefixes = {n.split(".")[0] for n in names if "." in n}
    assert prefixes == {config.arch_name} | {name for name in SECTIONS if getattr(config, name) is not None}
    own = {f"{config.arch_name}.{f.name}" for f in dataclasses.fields(config.arch)}
    assert own <= set(names) and isinstance(config.arch, ARCH_CONFIGS[config.arch_name])
    assert not {"architecture", "snn", "cnn", "rf", "arch", *SECTIONS, *MOVED_FIELDS} & set(names)


def test_what_each_fit_exposes():
    exposes = {key: set(reachable_settings(make_config(key[1], key[0]))) for key in AFTER}
    # the CNNs and the LN carry no neuron: no noise, no threshold, no membrane time constant
    for key in (("paper", "cnn"), ("quick", "cnn"), ("quick", "ln")):
        assert not any(n.endswith(("noise_sigma", ".noise", ".tau", ".v_th", "substeps")) for n in exposes[key]), key
    assert {"cnn.channels", "cnn.strides"} <= exposes["paper", "cnn"]
    # the paper NSNN its SNN's noise, not the RF-aware model's
    assert "snn.noise_sigma" in exposes["paper", "nsnn"] and "rf.noise_sigma" not in exposes["paper", "nsnn"]
    assert "rf.output_substeps" in exposes["quick", "nsnn"] and "snn.hidden" not in exposes["quick", "nsnn"]
    # the LN is RF-aware in every preset
    assert exposes["quick", "ln"] == set(reachable_settings(make_config("ln", "paper")))


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("model", MODELS)
def test_the_architecture_follows_the_preset_and_model(preset, model):
    config = make_config(model, preset)
    paper = PRESETS[preset]["common"]["architecture"] == "paper" and model != "ln"
    want = (SNNConfig if config.kind.spiking else CNNConfig) if paper else \
        RFConfig if config.kind.spiking else RFRateConfig
    assert type(config.arch) is want
    assert config.architecture == ("paper" if paper else "rf")
    assert config.arch.input_size == config.input_size
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.architecture = "rf"
    # config.json: the architecture and its one config, read back as the same fit
    record = json.loads(json.dumps(config.to_dict()))
    assert record["architecture"] == config.architecture
    assert {k for k in ARCH_CONFIGS if k in record} == {config.arch_name}
    assert FitConfig.from_dict(record) == config


@pytest.mark.parametrize("model, preset, overrides, uses", [
    ("nsnn", "quick", dict(snn={"noise_sigma": 0.3}), "rf"),
    ("cnn", "quick", dict(cnn={"channels": (4, 4)}), "rf"),
    ("nsnn", "paper", dict(rf={"noise_sigma": 0.3}), "snn"),
    ("cnn", "paper", dict(snn={"hidden": (8,)}), "cnn"),
    ("ln", "paper", dict(snn={"noise_sigma": 0.3}), "rf"),  # the LN is RF-aware in every preset
    ("nsnn", "quick", dict(architecture="paper", rf={"tau": 0.6}), "snn"),
])
def test_another_architectures_setting_is_a_one_line_error(model, preset, overrides, uses):
    with pytest.raises(ValueError, match=f"uses {uses!r} \\(") as err:
        make_config(model, preset, **overrides)
    message = str(err.value)
    assert "\n" not in message and f"set {uses}.FIELD" in message


def test_settings_reach_the_architecture_the_fit_uses():
    quick = make_config("nsnn", "quick", rf={"noise_sigma": 0.3})
    assert quick.arch.noise_sigma == 0.3
    # the preset's own RF settings stay beside the override
    assert quick.arch.output_substeps == 3 and quick.arch.core_norm
    paper = make_config("nsnn", "paper", snn={"noise_sigma": 0.3})
    assert paper.arch.noise_sigma == 0.3 and paper.arch.hidden == (64, 64, 64)
    # the preset's entry for the model's architecture (the paper DSNN's population readout)
    assert make_config("dsnn", "paper").arch.readout == "mean"
    # sigma (CLI and sweeps) is the noise of whichever architecture the fit holds
    for preset, name in (("quick", "rf"), ("paper", "snn"), ("movie", "rf")):
        config = make_config("nsnn", preset, **settings_overrides({"sigma": 0.35}))
        assert config.arch_name == name and config.arch.noise_sigma == 0.35
    # a field the fit's architecture does not have names itself
    with pytest.raises(ValueError, match=r"cnn: unknown CNNConfig field\(s\) \['noise_sigma'\]"):
        make_config("cnn", "paper", arch={"noise_sigma": 0.3})
    with pytest.raises(ValueError, match=r"unknown RFRateConfig field\(s\) \['noise_sigma'\] \(a fit without spiking"):
        make_config("cnn", "quick", **settings_overrides({"sigma": 0.35}))
    # a rate model with a spiking core (a mixed model) holds the neurons' settings
    mixed = make_config("cnn", "quick", parts={"core": "spiking"}, rf={"core_neuron": {"family": "noisy_lif"}})
    assert type(mixed.arch) is RFConfig and mixed.arch.core_neuron == {"family": "noisy_lif"}
    with pytest.raises(ValueError, match="arch must be one of CNNConfig, RFRateConfig for model 'cnn'.*got SNNConfig"):
        FitConfig(model="cnn", loss="poisson", arch=SNNConfig())
    with pytest.raises(ValueError, match="arch must be one of CNNConfig, RFRateConfig for model 'cnn'.*got RFConfig"):
        FitConfig(model="cnn", loss="poisson", arch=RFConfig())


def _as_before(config: FitConfig, architecture: str | None = None) -> dict:
    """``config`` as a fit stored it when it held all three architecture configs (the unused two at
    their defaults); ``architecture=None``: a record from before that field existed either."""
    record = config.to_dict()
    if isinstance(config.arch, RFRateConfig) and not isinstance(config.arch, RFConfig):
        # every RF-aware fit held the neurons' settings, a rate model's some from a sweep over them
        record["rf"] = {**dataclasses.asdict(RFConfig(noise_sigma=0.4)), **record["rf"]}
    for name, kind in (("snn", SNNConfig), ("cnn", CNNConfig), ("rf", RFConfig)):
        record.setdefault(name, dataclasses.asdict(kind()))
    record.pop("architecture")
    if architecture is not None:
        record["architecture"] = architecture
    return json.loads(json.dumps(_flat(record)))


def _flat(record: dict) -> dict:
    """A config record as a fit stored it before the sections: every fit held the seven flat fields, a fit
    without the part its preset's values (``model_trials``) or the defaults."""
    preset = PRESETS.get(record["preset"], {"common": {}})["common"]
    sections = {name: {**dataclasses.asdict(kind()), **preset.get(name, {})} for name, kind in SECTIONS.items()}
    for name in SECTIONS:
        sections[name].update(record.pop(name) or {})
    for old, (name, field) in MOVED_FIELDS.items():
        record[old] = sections[name][field]
    return record


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("model", MODELS)
def test_a_config_holding_all_three_architectures_loads_as_the_same_fit(preset, model):
    config = make_config(model, preset)
    stored = FitConfig.from_dict(_as_before(config, config.architecture))
    assert stored == config and not config.differences(stored)


def test_old_records_pick_their_architecture_by_model_and_field():
    # no architecture field: the old default, the paper network
    paper = make_config("cnn", "paper")
    assert FitConfig.from_dict(_as_before(paper)) == paper
    # an LN record of the paper architecture (as fits of the paper architecture wrote for their LN)
    ln = make_config("ln", "quick")
    assert FitConfig.from_dict(_as_before(ln, "paper")) == ln
    # a record naming an architecture whose config it lacks is refused, naming both
    record = make_config("nsnn", "quick").to_dict()
    record["architecture"] = "paper"
    with pytest.raises(ValueError, match=r"architecture 'paper' of model 'nsnn' is 'snn', but it holds \['rf'\]"):
        FitConfig.from_dict(record)


def test_clips_need_the_rf_aware_architecture():
    """A continuous recording's clips are fitted by the RF-aware models: a fit of the paper's network is
    refused when its data are prepared, before a run folder is written."""
    import numpy as np

    from neurocode.data import ContinuousRecording
    from neurocode.fitting import prepare_data

    fps = 1 / 0.033
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 2, (300, 6, 8), dtype=np.uint8) * 255
    frames[200:270] = frames[50:120]
    trains = [np.sort(rng.uniform(0, 300 / fps, 100)) for _ in range(2)]
    repeats = [(50 * 0.033, 50 * 0.033 + 2.0), (200 * 0.033, 200 * 0.033 + 2.0)]  # frames 50 and 200 on
    movie = ContinuousRecording.from_spike_times(trains, frames, np.arange(300) / fps, (0.0, 300 / fps),
                                                 repeats=repeats)
    with pytest.raises(ValueError, match="holds clips: they need the RF-aware architecture"):
        prepare_data(make_config("nsnn", "movie", architecture="paper"), movie)
    assert prepare_data(make_config("nsnn", "movie", input_size=8), movie).n_lags > 0


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("model", MODELS)
def test_a_fit_has_the_sections_of_its_parts(preset, model):
    config = make_config(model, preset)
    assert (config.spiking is not None) == config.kind.spiking
    assert (config.ln is not None) == config.kind.reference == (model == "ln")
    assert (config.pairs is not None) == (model == "cnn" and config.architecture == "paper")
    assert (config.clips is not None) == (preset == "movie")
    if config.kind.spiking:
        # the preset's values, read where old code reads them, read-only
        assert config.model_trials == config.spiking.model_trials == PRESETS[preset]["common"]["spiking"]["model_trials"]
        assert (config.tau_s, config.hidden_rate) == (2.0, 0.1)
        with pytest.raises(AttributeError):
            config.model_trials = 3
    else:
        with pytest.raises(AttributeError, match=f"^tau_s: a {model} fit trains no spiking network"):
            config.tau_s
    if model == "ln":
        assert config.ln_ridge == config.ln.ridge == LNFitConfig().ridge
    else:
        with pytest.raises(AttributeError, match=f"^ln_ridge: a {model} fit is not the LN reference, so it has "
                                                 "no ln settings \\(they apply to ln\\)$"):
            config.ln_ridge
    # a fit of flashed stimuli reads the defaults a continuous recording would be cut with
    assert (config.clip_duration, config.clip_history) == (1.0, 0.3)
    record = json.loads(json.dumps(config.to_dict()))
    assert not set(MOVED_FIELDS) & set(record) and {name for name in SECTIONS if record[name] is not None} == \
        {name for name in SECTIONS if getattr(config, name) is not None}


def test_the_old_flat_names_reach_the_sections():
    movie = make_config("dsnn", "movie", clip_duration=0.5, clip_history=0.2, model_trials=3, tau_s=3.0,
                        hidden_rate=0.15)
    assert movie.clips == ClipsConfig(0.5, 0.2) and movie.spiking == SpikingFitConfig(3, 3.0, 0.15)
    assert movie == make_config("dsnn", "movie", clips={"duration": 0.5, "history": 0.2},
                                spiking={"model_trials": 3, "tau_s": 3.0, "hidden_rate": 0.15})
    # a section given in part keeps the preset's other fields
    assert make_config("nsnn", "paper", spiking={"tau_s": 3.0}).spiking == SpikingFitConfig(8, 3.0, 0.1)
    assert make_config("nsnn", "movie", clips={"history": 0.1}).clips == ClipsConfig(1.0, 0.1)
    # --set, old and new names (the CLI's and the sweeps' parsing)
    from neurocode.sweep.cli import parse_fit_set

    for items in (["clip_duration=2", "model_trials=6"], ["clips.duration=2", "spiking.model_trials=6"]):
        config = make_config("nsnn", "quick", **parse_fit_set(items))
        assert config.clips == ClipsConfig(2, 0.3) and config.spiking.model_trials == 6
        assert {"clips.duration", "spiking.model_trials"} <= set(reachable_settings(config))
    for items in (["batch_size=32"], ["pairs.batch_size=32"]):
        config = make_config("cnn", "paper", **parse_fit_set(items))
        assert config.pairs == PairsFitConfig(32) and config.batch_size == 32
    for items in (["ln_ridge=(1,10)"], ["ln.ridge=(1,10)"]):
        config = make_config("ln", "quick", **parse_fit_set(items))
        assert config.ln == LNFitConfig((1.0, 10.0)) and config.ln_ridge == (1.0, 10.0)


@pytest.mark.parametrize("overrides, message", [
    (dict(model_trials=2), r"^model_trials \(now spiking\.model_trials\): a cnn fit trains no spiking network, so "
                           r"it has no spiking settings \(they apply to nsnn, dsnn\)$"),
    (dict(spiking={"tau_s": 3.0}), r"^spiking\.tau_s: a cnn fit trains no spiking network"),
    (dict(spiking=SpikingFitConfig()), r"^spiking\.model_trials: a cnn fit"),
    (dict(ln_ridge=(1.0,)), r"^ln_ridge \(now ln\.ridge\): a cnn fit is not the LN reference, so it has no ln "
                            r"settings \(they apply to ln\)$"),
    (dict(batch_size=32), r"^batch_size \(now pairs\.batch_size\): a cnn fit in the 'rf' architecture trains on "
                          r"whole stimuli \(batch_images\), not on \(stimulus, trial\) pairs, so it has no pairs "
                          r"settings \(they apply to cnn in the 'paper' architecture\)$"),
])
def test_a_section_the_fit_lacks_is_a_one_line_error(overrides, message):
    with pytest.raises(ValueError, match=message) as err:
        make_config("cnn", "quick", **overrides)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"^spiking=\{.*\}: a ln fit trains no spiking network"):
        FitConfig(model="ln", loss="mse", spiking=SpikingFitConfig())
    # a field a section does not have, and bad values, name the section's field
    with pytest.raises(ValueError, match=r"^spiking: unknown SpikingFitConfig field\(s\) \['tau'\]; it has "
                                         r"model_trials, tau_s, hidden_rate$"):
        make_config("nsnn", "quick", spiking={"tau": 3.0})
    with pytest.raises(ValueError, match=r"^ln\.ridge must be non-negative numbers, got \(\)$"):
        make_config("ln", "quick", ln_ridge=())
    for kw, field in ((dict(clip_duration=0), "clips.duration"), (dict(clips={"history": -1}), "clips.history"),
                      (dict(tau_s=0.5), "spiking.tau_s"), (dict(model_trials=0), "spiking.model_trials"),
                      (dict(hidden_rate=1.5), "spiking.hidden_rate")):
        with pytest.raises(ValueError, match=f"^{field} must be"):
            make_config("nsnn", "movie", **kw)
    with pytest.raises(ValueError, match=r"^spiking\.model_trials must be >= 2 for a set-level MMD"):
        make_config("nsnn", "quick", model_trials=1)
    assert make_config("nsnn", "quick", model_trials=1, loss="paired").spiking.model_trials == 1


def test_old_flat_records_keep_what_their_fit_read():
    """A record of before the sections holds the five flat fields whatever the fit: the spiking fit's are
    its ``spiking``, a rate model's are dropped; clip settings are kept for the movie preset and where
    they differ from the defaults, and such settings on flashed stimuli are refused naming them."""
    record = _flat(make_config("cnn", "paper").to_dict())
    assert record["model_trials"] == 8 and FitConfig.from_dict(record) == make_config("cnn", "paper")
    assert FitConfig.from_dict({**record, "batch_size": 32}).pairs == PairsFitConfig(32)
    quick = _flat(make_config("cnn", "quick").to_dict())  # the RF-aware CNN never read batch_size
    assert FitConfig.from_dict({**quick, "batch_size": 32}) == make_config("cnn", "quick")
    ln = _flat(make_config("ln", "quick").to_dict())
    assert FitConfig.from_dict({**ln, "ln_ridge": [1, 10]}) == make_config("ln", "quick", ln={"ridge": (1, 10)})
    nsnn = _flat(make_config("nsnn", "quick").to_dict())
    assert FitConfig.from_dict({**nsnn, "tau_s": 3.0}) == make_config("nsnn", "quick", tau_s=3.0)
    assert FitConfig.from_dict({**nsnn, "clip_duration": 2.0}).clips == ClipsConfig(2.0, 0.3)
    assert FitConfig.from_dict(nsnn).clips is None
    custom = {**nsnn, "preset": "custom", "clip_history": 0.3}
    assert FitConfig.from_dict(custom).clips is None
    # the movie preset's, at the defaults
    assert FitConfig.from_dict(_flat(make_config("ln", "movie").to_dict())) == make_config("ln", "movie")

    from neurocode.data import load_recording
    from neurocode.fitting import prepare_data

    rec = load_recording().subset(range(12))
    with pytest.raises(ValueError, match=r"^clips=\{'duration': 2\.0, 'history': 0\.3\}: recording 'natural_images' "
                                         r"holds flashed stimuli; clips settings apply to continuous recordings"):
        prepare_data(FitConfig.from_dict({**nsnn, "clip_duration": 2.0}), rec)


@pytest.mark.parametrize("argv, message", [
    (["--model", "cnn", "--set", "model_trials=8"],
     "model_trials (now spiking.model_trials): a cnn fit trains no spiking network"),
    (["--model", "nsnn", "--set", "clips.duration=2"],
     "clips={'duration': 2, 'history': 0.3}: recording 'natural_images' holds flashed stimuli"),
])
def test_the_cli_refuses_a_setting_its_fit_does_not_use_before_writing(argv, message, tmp_path, capsys):
    from neurocode.cli import main

    assert main(["fit", *argv, "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"neurocode: error: {message}")
    assert not (tmp_path / "run").exists()
