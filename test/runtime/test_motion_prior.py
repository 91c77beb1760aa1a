"""Motion prior: the change left after ego-motion compensation marks what moves against the
ground, not the camera's own motion; lifting a map by it keeps the map's peak value."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from saliency_ros.runtime.motion_prior import MotionPriorConfig, change, lift
from test.runtime.test_egomotion import H, W, camera_motion, ground_texture

CONFIG = MotionPriorConfig()


def _gray(frame: np.ndarray) -> np.ndarray:
    """The grey image the saliency pipeline gives the prior: the frame at a model's input size."""
    return cv2.cvtColor(cv2.resize(frame, (256, 144), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)


def test_what_moves_against_the_ground_is_marked_and_the_camera_motion_is_not() -> None:
    """The camera pans 6 px; a grey block moves 12 px the other way. The change map peaks on
    the block (both its old and new place) and stays low on the panned ground."""
    previous = ground_texture()
    current = cv2.warpPerspective(previous, camera_motion(6.0, -4.0, 0.0), (W, H), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
    cv2.rectangle(previous, (300, 160), (330, 190), (128, 128, 128), -1)
    cv2.rectangle(current, (288, 160), (318, 190), (128, 128, 128), -1)
    change_map, motion = change(_gray(previous), _gray(current), CONFIG)
    assert motion.ok and change_map is not None
    assert change_map.shape == (144 // 4, 256 // 4) and change_map.dtype == np.float32
    assert 0.0 <= change_map.min() and change_map.max() <= 1.0
    block = cv2.resize(change_map, (W, H))[160:191, 280:340]
    ground = cv2.resize(change_map, (W, H))
    ground[120:231, 240:380] = np.nan  # the block and its blur
    assert block.max() == pytest.approx(1.0)
    # Resampling the fine texture leaves some change on the ground, well under the block.
    assert np.nanmedian(ground) < 0.3 and np.nanmax(ground) < 0.6


def test_a_static_scene_and_a_failed_estimate_leave_no_change_map() -> None:
    ground = ground_texture()
    rng = np.random.default_rng(1)
    noisy = np.clip(ground + rng.normal(0, 3, ground.shape), 0, 255).astype(np.uint8)
    change_map, motion = change(_gray(ground), _gray(noisy), CONFIG)
    assert motion.ok and change_map is None  # sensor noise alone stays under the floor
    blank = np.full((H, W, 3), 90, np.uint8)
    change_map, motion = change(_gray(blank), _gray(blank), CONFIG)
    assert not motion.ok and change_map is None  # nothing to track: no unaligned difference


def test_lift_weighs_moving_regions_up_and_keeps_the_peak() -> None:
    prob = np.zeros((10, 20), np.float32)
    prob[2:5, 2:5] = 0.8  # static object
    prob[2:5, 12:15] = 0.8  # moving object
    prob[8, 0] = 0.1
    moving = np.zeros((5, 10), np.float32)  # a coarser change map, as at working size
    moving[:, 5:] = 1.0
    out = lift(prob, moving, strength=3.0)
    assert out.dtype == np.float32 and out.shape == prob.shape
    assert out.max() == pytest.approx(0.8)
    np.testing.assert_allclose(out[3, 13], 0.8, rtol=1e-6)
    np.testing.assert_allclose(out[3, 3], 0.8 / 4, rtol=1e-6)  # 1 / (1 + strength)
    np.testing.assert_allclose(out[8, 0], 0.1 / 4, rtol=1e-6)
    # No change anywhere or an empty map: nothing moves relative to anything else.
    np.testing.assert_allclose(lift(prob, np.zeros_like(moving), 3.0), prob, rtol=1e-6)
    empty = np.zeros_like(prob)
    np.testing.assert_array_equal(lift(empty, moving, 3.0), empty)


@pytest.mark.parametrize("bad", [dict(strength=0.0), dict(blur=0.0), dict(percentile=20.0), dict(floor=-1.0)])
def test_settings_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="motion prior"):
        MotionPriorConfig(**bad)
