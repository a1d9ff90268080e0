"""The stimulus type's front end carries its stimuli's layout (issue 30): how a fit stores prepared
stimuli, how a batch of them enters the model, and which new stimuli it takes -- the fit and its
predictions ask the front end, not whether the data are clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurocode.fitting import FitData, make_config, predict, predict_stimuli, prepare_data, train
from neurocode.models.parts import FRONT_ENDS

FLASH, CLIPS = FRONT_ENDS["flash"], FRONT_ENDS["clips"]


def test_each_front_end_stores_and_batches_its_own_layout():
    frames = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(2, 3, 3)
    stored = FLASH.stored(frames)
    assert stored.shape == (2, 1, 3, 3) and torch.equal(FLASH.batch(stored), stored)
    clips = torch.arange(2 * 5 * 3 * 3, dtype=torch.float32).reshape(2, 5, 3, 3)  # [n, F, H, W]
    assert torch.equal(CLIPS.stored(clips), clips)
    batch = CLIPS.batch(clips)
    assert batch.shape == (5, 2, 3, 3) and torch.equal(batch[4, 1], clips[1, 4])  # time-major
    # a fit's data hand each model its own layout: the stimuli of index 1 and 0, in that order
    counts = torch.zeros(2, 3, 1, 1)
    for images, n_lags, want in ((stored, 0, stored[[1, 0]]), (clips, 3, clips[[1, 0]].transpose(0, 1))):
        data = FitData(images=images, counts=counts, train_idx=np.arange(2), test_idx=np.arange(0), bin_size=0.01,
                       recording=None, n_lags=n_lags)
        assert data.front_end is (CLIPS if n_lags else FLASH)
        assert torch.equal(data.inputs([1, 0]), want)


@pytest.mark.parametrize("front_end, shape, message", [
    (FLASH, (2, 5, 8, 8), r"^stimuli must be flashed frames \[n, H, W\] for this model, got shape \(2, 5, 8, 8\)$"),
    (FLASH, (0, 8, 8), r"^stimuli must be flashed frames"),
    (CLIPS, (2, 8, 8), r"^stimuli must be clips \[n, F >= 4, H, W\] for this model, got shape \(2, 8, 8\)$"),
    (CLIPS, (2, 3, 8, 8), r"^clips need at least 4 frames \(the temporal filter's length\), got 3$"),
])
def test_new_stimuli_of_another_layout_are_a_one_line_error(front_end, shape, message):
    with pytest.raises(ValueError, match=message):
        front_end.check_stimuli(shape, 4)
    (FLASH if front_end is CLIPS else CLIPS).check_stimuli((2, 4, 8, 8) if front_end is FLASH else (2, 8, 8), 4)


def test_new_flashes_predict_as_the_recordings_own(natural_recording):
    config = make_config("ln", "quick", input_size=16)
    data = prepare_data(config, natural_recording.subset(range(15)))
    model, _ = train(config, data, progress=False)
    test = data.test_idx[:2]
    np.testing.assert_array_equal(predict_stimuli(config, model, data, data.recording.stimuli[test]),
                                  predict(config, model, data, test))
    with pytest.raises(ValueError, match=r"^stimuli must be flashed frames \[n, H, W\] for this model"):
        predict_stimuli(config, model, data, data.recording.stimuli[test][:, None])
