"""OpenCV baselines: maps in [0, 1] at frame size, per-sequence state for motion saliency."""

from __future__ import annotations

import numpy as np
import pytest

from saliency_ros.evaluation.baselines import BASELINES, Baseline
from saliency_ros.sources.synthetic import SyntheticDroneScene


@pytest.mark.parametrize("name", BASELINES)
def test_map_in_unit_range_at_frame_size(name: str) -> None:
    b = Baseline(name)
    for frame, _ in SyntheticDroneScene(96, 64, seed=1).frames(3):
        m = b(frame)
        assert m.shape == (64, 96) and m.dtype == np.float32
        assert 0.0 <= m.min() and m.max() <= 1.0


def test_static_baseline_finds_a_bright_object_on_flat_ground() -> None:
    frame = np.full((64, 96, 3), 90, np.uint8)
    frame[24:40, 40:56] = 250
    m = Baseline("spectral_residual")(frame)
    assert m[24:40, 40:56].mean() > 2 * m.mean()


def test_motion_baseline_restarts_on_reset_and_size_change() -> None:
    b = Baseline("binwang_motion")
    b(np.zeros((64, 96, 3), np.uint8))
    assert b(np.zeros((32, 48, 3), np.uint8)).shape == (32, 48)
    b.reset()
    assert b(np.zeros((64, 96, 3), np.uint8)).shape == (64, 96)


def test_unknown_baseline() -> None:
    with pytest.raises(ValueError, match="unknown baseline"):
        Baseline("itti")
