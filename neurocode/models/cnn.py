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

from neurocode.models.utils import conv_output_size

if TYPE_CHECKING:
    from neurocode.models.retina import ModelSpec

__all__ = ["CNNConfig", "paper_cnn_spec"]


@dataclass(frozen=True)
class CNNConfig:
    """Architecture of the paper's CNN (:func:`paper_cnn_spec`); the defaults are the paper's baseline.

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
