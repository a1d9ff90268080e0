"""Retina models: spiking NSNN/DSNN, the CNN baseline and the LN reference.

Two families: the paper's networks (:class:`RetinaSNN`, :class:`RetinaCNN`) and the
receptive-field-aware models of :mod:`neurocode.models.rf` (:class:`RetinaRFSNN`,
:class:`RetinaRFCNN`, :class:`RetinaLN`), which read each cell out at its RF.
"""

from neurocode.models.cnn import CNNConfig, PSoftplus, RetinaCNN
from neurocode.models.readout import GaussianReadout, RFFeatures
from neurocode.models.rf import RetinaLN, RetinaRFCNN, RetinaRFSNN, RFConfig, calibrate_rf_snn
from neurocode.models.snn import RetinaSNN, SNNConfig, calibrate_rates
from neurocode.models.utils import conv_output_size, parameter_count

__all__ = [
    "CNNConfig", "PSoftplus", "RetinaCNN", "RetinaSNN", "SNNConfig", "calibrate_rates",
    "RFConfig", "RetinaLN", "RetinaRFSNN", "RetinaRFCNN", "calibrate_rf_snn",
    "GaussianReadout", "RFFeatures", "conv_output_size", "parameter_count",
]
