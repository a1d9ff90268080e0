"""Retina models: CNN baseline (and spiking models)."""

from neurocode.models.cnn import CNNConfig, PSoftplus, RetinaCNN
from neurocode.models.utils import conv_output_size, parameter_count
