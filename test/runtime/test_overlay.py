"""Debug overlay: heat map blended where the map is high, contours drawn around the mask."""

from __future__ import annotations

import numpy as np

from saliency_ros.runtime.overlay import overlay


def test_overlay_marks_salient_region_and_mask_outline() -> None:
    frame = np.full((120, 160, 3), 100, np.uint8)
    sal = np.zeros((30, 40), np.float32)  # model-size map: resized to the frame
    sal[10:20, 10:20] = 1.0
    mask = np.zeros((120, 160), np.uint8)
    mask[40:80, 40:80] = 255
    out = overlay(frame, sal, mask)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert not np.array_equal(out, frame)
    # JET: hot (red) inside the salient block, blue-ish outside
    assert out[60, 60, 2] > out[60, 60, 0]
    assert out[5, 5, 0] > out[5, 5, 2]
    # the mask outline is green, its interior is not
    assert out[40, 60, 1] > 200 and out[40, 60, 0] < 100 and out[60, 60, 1] < 200
    np.testing.assert_array_equal(frame, 100)  # input untouched


def test_overlay_without_maps_is_a_copy() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    out = overlay(frame)
    np.testing.assert_array_equal(out, frame)
    assert out is not frame
