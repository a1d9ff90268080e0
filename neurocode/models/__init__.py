"""Retina models: spiking NSNN/DSNN, the CNN baseline and the LN reference.

Two families: the paper's networks (:class:`RetinaSNN`, :class:`RetinaCNN`) and the
receptive-field-aware models, composed of parts (:class:`RetinaModel` of a :class:`ModelSpec`:
front end, core, readout, output; :mod:`neurocode.models.parts`), which read each cell out at its RF.
"""

from neurocode.models.cnn import CNNConfig, PSoftplus, RetinaCNN
from neurocode.models.readout import GaussianReadout, RFFeatures
from neurocode.models.retina import ModelSpec, RetinaModel, build_retina_model, calibrate_spiking
from neurocode.models.rf import RFConfig, rf_model_spec
from neurocode.models.snn import RetinaSNN, SNNConfig, calibrate_rates
from neurocode.models.utils import conv_output_size, parameter_count

__all__ = [
    "CNNConfig", "PSoftplus", "RetinaCNN", "RetinaSNN", "SNNConfig", "calibrate_rates",
    "RFConfig", "rf_model_spec", "ModelSpec", "RetinaModel", "build_retina_model", "calibrate_spiking",
    "GaussianReadout", "RFFeatures", "conv_output_size", "parameter_count",
]
