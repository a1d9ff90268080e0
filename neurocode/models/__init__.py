"""Retina models: spiking NSNN/DSNN and the CNN baseline."""

from neurocode.models.cnn import CNNConfig, PSoftplus, RetinaCNN
from neurocode.models.utils import conv_output_size, parameter_count
from neurocode.models.snn import RetinaSNN, SNNConfig, calibrate_rates
