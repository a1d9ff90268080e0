"""Real retina data: the Onken et al. (2016) loader, the canonical HDF5 format, views.

Quick start::

    from neurocode.data import load_recording, downsample, kfold_split, receptive_fields_for
    rec = load_recording()              # bundled retina 2, 60 flashed natural images
    counts = rec.binned(0.01)           # int [60, 30, 30 trials, 49 cells]
    x = downsample(rec.stimuli, 64)     # float32 [60, 64, 64]
    train, test = kfold_split(rec.n_stimuli, n_folds=5, fold=0)
    rfs = receptive_fields_for(rec, train)  # Gaussian RFs in image px (training images only)

Fitting uses the flashed natural images; the movie recordings are for stimulus-free analyses
(their presentation timing is undocumented). See ``datasets/README.md``.
"""

from neurocode.data.errors import DataFormatError
from neurocode.data.onken2016 import load_onken2016
from neurocode.data.preprocessing import ImageNormalizer, downsample, kfold_split
from neurocode.data.receptive_fields import (
    ReceptiveFields,
    estimate_receptive_fields,
    from_contours,
    receptive_fields_for,
)
from neurocode.data.recording import Recording
from neurocode.data.continuous import ContinuousRecording
# the file formats register their writers (neurocode.data.formats) for Recording.save / .to_nwb
from neurocode.data.hdf5 import bundled_path, list_recordings, load_recording
from neurocode.data.nwb import NWBMetadata, NWBSubject, read_nwb, write_nwb

__all__ = [
    "Recording",
    "ContinuousRecording",
    "load_onken2016",
    "load_recording",
    "list_recordings",
    "bundled_path",
    "downsample",
    "ImageNormalizer",
    "kfold_split",
    "DataFormatError",
    "NWBMetadata",
    "NWBSubject",
    "read_nwb",
    "write_nwb",
    "ReceptiveFields",
    "from_contours",
    "estimate_receptive_fields",
    "receptive_fields_for",
]
