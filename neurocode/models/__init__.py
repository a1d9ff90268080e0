"""Retina models: spiking NSNN/DSNN, the CNN baseline and the LN reference, each a :class:`RetinaModel`
composed of parts (front end, core, readout, output; :mod:`neurocode.models.parts`) from a :class:`ModelSpec`.

The specs of the two architectures: the paper's networks (:func:`paper_snn_spec`, :func:`paper_cnn_spec`)
and the receptive-field-aware models, which read each cell out at its RF (:func:`rf_model_spec`).
"""

from neurocode.models.cnn import CNNConfig, paper_cnn_spec
from neurocode.models.parts.outputs import PSoftplus
from neurocode.models.readout import GaussianReadout, RFFeatures
from neurocode.models.retina import ModelSpec, RetinaModel, build_retina_model, calibrate_dense, calibrate_spiking
from neurocode.models.rf import RFConfig, RFRateConfig, rf_model_spec
from neurocode.models.snn import SNNConfig, paper_snn_spec
from neurocode.models.utils import conv_output_size, parameter_count

__all__ = [
    "CNNConfig", "PSoftplus", "paper_cnn_spec", "SNNConfig", "paper_snn_spec", "RFConfig", "RFRateConfig",
    "rf_model_spec",
    "ModelSpec", "RetinaModel", "build_retina_model", "calibrate_spiking", "calibrate_dense",
    "GaussianReadout", "RFFeatures", "conv_output_size", "parameter_count",
]
