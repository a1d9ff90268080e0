"""CNN baseline for retina responses to flashed images (paper: 32C25-BN-16C11-BN-FC-BN-PSoftPlus).

The network maps a static image to a firing rate (expected spikes per time
bin) for every cell and every time bin after the flash. It follows the
retina CNNs of McIntosh, Maheswaranathan et al. (2016): 'valid' convolutions,
BatchNorm, ReLU after each conv block, and a final fully-connected layer with
BatchNorm and a parameterised softplus output. The paper's FC49 (one output
per cell, movies with a temporal history as input) becomes an FC with
``n_cells × T`` outputs here, because a single flashed frame carries no time
axis: the network reads out the whole post-flash time course per cell.
Trained with the Poisson loss on spike counts (:func:`neurocode.losses.poisson_nll`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurocode.models.utils import conv_output_size

if TYPE_CHECKING:
    from neurocode.models.retina import ModelSpec

__all__ = ["CNNConfig", "PSoftplus", "RetinaCNN"]


@dataclass(frozen=True)
class CNNConfig:
    """Architecture of :class:`RetinaCNN`; the defaults are the paper's baseline.

    Attributes
    ----------
    input_size : int
        Image side in pixels; input is ``[B, 1, input_size, input_size]``
        float32, already normalised.
    channels : tuple[int, int]
        Output channels of the two conv layers (32, 16).
    kernel_sizes : tuple[int, int]
        Square kernel sides of the two conv layers in pixels (25, 11).
    strides : tuple[int, int]
        Conv strides (1, 1).
    pool : int
        Non-overlapping max-pool window after each conv block (1 = none).
    n_cells : int
        Number of recorded cells predicted (49).
    n_steps : int
        Number of time bins T after the flash (30).
    """

    input_size: int = 64
    channels: tuple[int, int] = (32, 16)
    kernel_sizes: tuple[int, int] = (25, 11)
    strides: tuple[int, int] = (1, 1)
    pool: int = 1
    n_cells: int = 49
    n_steps: int = 30

    def __post_init__(self) -> None:
        for name in ("input_size", "pool", "n_cells", "n_steps"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"CNNConfig.{name} must be a positive integer, got {val!r}")
        for name in ("channels", "kernel_sizes", "strides"):
            val = tuple(getattr(self, name))
            if len(val) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in val):
                raise ValueError(
                    f"CNNConfig.{name} must be two positive integers (one per conv layer), got {val!r}"
                )
            object.__setattr__(self, name, val)  # accept lists, store tuples (frozen dataclass)

    def feature_sizes(self) -> tuple[int, int]:
        """Side lengths of the feature maps after conv block 1 and 2.

        Raises
        ------
        ValueError
            If the configuration makes a map vanish (names the layer).
        """
        s1 = conv_output_size(
            self.input_size, self.kernel_sizes[0], self.strides[0], self.pool, name="conv1"
        )
        s2 = conv_output_size(s1, self.kernel_sizes[1], self.strides[1], self.pool, name="conv2")
        return s1, s2


class PSoftplus(nn.Module):
    """Parameterised softplus ``α·softplus(β·x)`` with learnable per-unit α, β.

    ``softplus(z) = log(1 + exp(z))``. β sets the sharpness of the rectifier
    and α the output gain. α is applied as ``|α|`` so the output is always a
    valid (non-negative) rate even if training drives α through zero; at
    α > 0 (including the init α = 1) this is exactly ``α·softplus(β·x)``.

    Parameters
    ----------
    num_features : int
        Number of output units U (last axis of the input).

    Shapes
    ------
    input : [..., U]; output : [..., U], ≥ 0.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.alpha = nn.Parameter(torch.ones(num_features))
        self.beta = nn.Parameter(torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        # F.softplus switches to the identity for large β·x, so no overflow
        return self.alpha.abs() * F.softplus(self.beta * x)

    def extra_repr(self) -> str:
        return f"num_features={self.alpha.numel()}"


class RetinaCNN(nn.Module):
    """Firing-rate CNN: 32C25-BN-ReLU-16C11-BN-ReLU-FC(n_cells·T)-BN-PSoftplus.

    Layers (defaults): Conv2d(1→32, 25×25, valid) → BatchNorm2d → ReLU
    [→ MaxPool] → Conv2d(32→16, 11×11, valid) → BatchNorm2d → ReLU
    [→ MaxPool] → flatten → Linear(16·30·30 → 49·30) → BatchNorm1d →
    PSoftplus. ReLU after each BN'd conv as in McIntosh et al. (2016); the
    output nonlinearity is the paper's PSoftPlus. Convs and the FC layer have
    no bias because the BatchNorm that follows each has its own shift, which
    makes a bias redundant.

    As with any BatchNorm network, training mode needs a batch of more than
    one image; use ``.eval()`` for single images.

    Parameters
    ----------
    config : CNNConfig, optional
        Architecture; ``None`` uses the paper's default ``CNNConfig()``.

    Raises
    ------
    ValueError
        If the configuration makes a feature map vanish (names the layer).
    """

    def __init__(self, config: CNNConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else CNNConfig()
        _, s2 = cfg.feature_sizes()  # validates geometry before allocating anything
        c1, c2 = cfg.channels
        k1, k2 = cfg.kernel_sizes
        st1, st2 = cfg.strides

        def pool() -> nn.Module:
            return nn.MaxPool2d(cfg.pool) if cfg.pool > 1 else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(1, c1, k1, stride=st1, bias=False),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            pool(),
            nn.Conv2d(c1, c2, k2, stride=st2, bias=False),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            pool(),
        )
        n_out = cfg.n_cells * cfg.n_steps
        self.readout = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * s2 * s2, n_out, bias=False),
            nn.BatchNorm1d(n_out),
            PSoftplus(n_out),
        )

    def forward(self, images: Tensor) -> Tensor:
        """Predict firing rates.

        Parameters
        ----------
        images : Tensor, shape [B, 1, H, W], H = W = config.input_size
            Normalised grayscale images (float).

        Returns
        -------
        Tensor, shape [T, B, n_cells]
            Firing rate in expected spikes per time bin, ≥ 0, time-major
            (T = config.n_steps). The FC output is read as [B, T, n_cells].
        """
        cfg = self.config
        if images.dim() != 4 or images.shape[1] != 1 or images.shape[2:] != (cfg.input_size,) * 2:
            raise ValueError(
                f"images must be [B, 1, {cfg.input_size}, {cfg.input_size}], "
                f"got {tuple(images.shape)}"
            )
        rates = self.readout(self.features(images))  # [B, T·n_cells]
        return rates.view(-1, cfg.n_steps, cfg.n_cells).transpose(0, 1)


def paper_cnn_spec(config: CNNConfig) -> "ModelSpec":
    """The :class:`~neurocode.models.retina.ModelSpec` of the paper's CNN configured by ``config``.

    The grey-level flash through a 'valid' conv1 without bias, a ReLU core with BatchNorm (and
    max-pooling), the dense readout of the whole time course (no bias, BatchNorm1d) and a
    parameterised softplus per cell and bin.
    """
    from neurocode.models.retina import ModelSpec

    _, s2 = config.feature_sizes()  # checks the geometry before allocating anything
    return ModelSpec(
        front_end="flash", core="relu", readout="dense", output="softplus_poisson", n_cells=config.n_cells,
        n_steps=config.n_steps, input_size=config.input_size, core_pool=1, channels=config.channels,
        kernel_sizes=config.kernel_sizes,
        front_end_options=dict(on_off=False, rf_features=False, stride=config.strides[0], same_padding=False,
                               conv_bias=False, temporal_profile=False),
        core_options=dict(norm=True, pool=config.pool, stride=config.strides[1], same_padding=False),
        readout_options=dict(features=config.channels[1] * s2 * s2, per_bin=True, norm=True),
        output_options=dict(per_bin=config.n_steps))
