"""Named training settings: the paper's Table 4 and the offline digits preset.

Table 4 gives, per model (DSNN / NSNN), dataset, method and architecture, the simulation
time steps, the initial learning rate (chosen by the authors' grid search) and the mini-batch
size ("2/4" and "256/128" rows: T = 2 with the first batch size, T = 4 with the second). It
does not give the number of epochs: the presets use 300 for CIFAR (the NSNN authors' run
script; TET's too) and 200 for the event datasets, our choice. Membrane noise: sigma = 0.3
for CIFAR and DVS-Gesture, 0.2 for DVS-CIFAR (paper, Experimental procedures). Every run uses
Adam and cosine annealing of the learning rate to 0 over the run.

Names are ``{dataset}-{method}-{arch}-{model}`` plus ``-T{steps}`` where Table 4 lists two
settings, e.g. ``cifar10-stbp-cifarnet-nsnn-T2``; :func:`find_preset` looks one up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["TrainPreset", "PRESETS", "find_preset", "get_preset", "DIGITS_PRESET"]


@dataclass(frozen=True)
class TrainPreset:
    """One training setting.

    Attributes
    ----------
    name : str
    dataset, method, arch, model : str
    timesteps : int
        Simulation time steps T.
    lr : float
        Initial learning rate (Adam, cosine-annealed to 0).
    batch_size : int
    epochs : int
    noise_sigma : float
        NSNN membrane-noise SD (ignored by a DSNN).
    weight_decay : float
    source : str
        Where the numbers come from.
    """

    name: str
    dataset: str
    method: str
    arch: str
    model: str
    timesteps: int
    lr: float
    batch_size: int
    epochs: int
    noise_sigma: float
    weight_decay: float = 0.0
    source: str = "paper Table 4"

    def to_dict(self) -> dict:
        return asdict(self)


# (model, dataset, method, arch, timesteps, lr, batch sizes) -- paper Table 4, row by row
_TABLE4 = [
    ("dsnn", "cifar10", "stbp", "resnet18", (2, 4), 0.01, (256, 256)),
    ("dsnn", "cifar10", "tet", "resnet18", (2, 4), 0.01, (256, 256)),
    ("dsnn", "cifar10", "stbp", "cifarnet", (2, 4), 0.004, (256, 256)),
    ("dsnn", "cifar100", "stbp", "resnet18", (2, 4), 0.005, (256, 256)),
    ("dsnn", "cifar100", "tet", "resnet18", (2, 4), 0.005, (256, 256)),
    ("dsnn", "cifar100", "stbp", "cifarnet", (2, 4), 0.001, (256, 256)),
    ("dsnn", "dvs-cifar10", "stbp", "resnet19", (10,), 0.0005, (32,)),
    ("dsnn", "dvs-cifar10", "tet", "vggsnn", (10,), 0.0002, (64,)),
    ("dsnn", "dvs-cifar10", "tdbn", "vggsnn", (10,), 0.0002, (64,)),
    ("dsnn", "dvs-gesture", "stbp", "7bnet", (16,), 0.001, (10,)),
    ("nsnn", "cifar10", "stbp", "resnet18", (2, 4), 0.002, (256, 256)),
    ("nsnn", "cifar10", "tet", "resnet18", (2, 4), 0.002, (256, 256)),
    ("nsnn", "cifar10", "stbp", "cifarnet", (2, 4), 0.003, (256, 128)),
    ("nsnn", "cifar100", "stbp", "resnet18", (2, 4), 0.001, (256, 256)),
    ("nsnn", "cifar100", "tet", "resnet18", (2, 4), 0.001, (256, 256)),
    ("nsnn", "cifar100", "stbp", "cifarnet", (2, 4), 0.002, (256, 128)),
    ("nsnn", "dvs-cifar10", "stbp", "resnet19", (10,), 0.0005, (20,)),
    ("nsnn", "dvs-cifar10", "tet", "vggsnn", (10,), 0.0003, (32,)),
    ("nsnn", "dvs-cifar10", "tdbn", "vggsnn", (10,), 0.0003, (32,)),
    ("nsnn", "dvs-gesture", "stbp", "7bnet", (16,), 0.0005, (8,)),
]

_SIGMA = {"cifar10": 0.3, "cifar100": 0.3, "dvs-gesture": 0.3, "dvs-cifar10": 0.2}
_EPOCHS = {"cifar10": 300, "cifar100": 300, "dvs-gesture": 200, "dvs-cifar10": 200}


def _table4() -> dict[str, TrainPreset]:
    out = {}
    for model, dataset, method, arch, steps, lr, batches in _TABLE4:
        for T, batch in zip(steps, batches):
            name = f"{dataset}-{method}-{arch}-{model}" + (f"-T{T}" if len(steps) > 1 else "")
            out[name] = TrainPreset(name, dataset, method, arch, model, T, lr, batch, _EPOCHS[dataset],
                                    _SIGMA[dataset])
    return out


#: The offline default (scikit-learn's 8x8 digits): settings chosen on the validation split only.
DIGITS_PRESET = TrainPreset("digits", "digits", "stbp", "digits", "nsnn", timesteps=4, lr=3e-3, batch_size=32,
                            epochs=40, noise_sigma=0.3, weight_decay=0.0,
                            source="neurocode: chosen on the digits' validation split")

PRESETS: dict[str, TrainPreset] = {"digits": DIGITS_PRESET, **_table4()}


def get_preset(name: str) -> TrainPreset:
    """The preset called ``name`` (ValueError listing a few names)."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of the names in neurocode.recognition.PRESETS (e.g. 'digits', "
                         f"'cifar10-stbp-cifarnet-nsnn-T2'), got {name!r}")
    return PRESETS[name]


def find_preset(dataset: str, method: str, arch: str, model: str, timesteps: int | None = None) -> TrainPreset | None:
    """The Table 4 preset of this combination (the T = 2 one where two exist), or None.

    For the digits, the digits preset with the requested method, architecture and model.
    """
    if dataset == "digits":
        from dataclasses import replace

        return replace(DIGITS_PRESET, method=method, arch=arch, model=model)
    base = f"{dataset}-{method}-{arch}-{model}"
    for name in ([f"{base}-T{timesteps}"] if timesteps else [f"{base}-T2"]) + [base]:
        if name in PRESETS and (timesteps is None or PRESETS[name].timesteps == timesteps):
            return PRESETS[name]
    return None
