"""Synthetic drone scene: deterministic, exact masks, real motion between frames."""

from __future__ import annotations

import numpy as np
import pytest

from saliency_ros.sources.synthetic import SyntheticDroneScene


def test_frames_are_deterministic_for_a_seed() -> None:
    a, b = SyntheticDroneScene(160, 96, seed=3), SyntheticDroneScene(160, 96, seed=3)
    for i in (0, 7):
        np.testing.assert_array_equal(a.frame(i)[0], b.frame(i)[0])
        np.testing.assert_array_equal(a.frame(i)[1], b.frame(i)[1])
    assert not np.array_equal(a.frame(0)[0], SyntheticDroneScene(160, 96, seed=4).frame(0)[0])


def test_mask_is_binary_small_and_marks_the_targets() -> None:
    scene = SyntheticDroneScene(320, 180, targets=3, seed=0)
    image, mask = scene.frame(5)
    assert image.shape == (180, 320, 3) and image.dtype == np.uint8
    assert mask.shape == (180, 320) and set(np.unique(mask)) <= {0, 255}
    fraction = (mask > 0).mean()
    assert 0.001 < fraction < 0.1, fraction  # small targets, as seen from a drone
    # Target pixels differ from the terrain around them: the colours are the salient cue.
    inside = image[mask > 0].astype(float).mean(axis=0)
    outside = image[mask == 0].astype(float).mean(axis=0)
    assert np.abs(inside - outside).max() > 30


def test_camera_and_targets_move() -> None:
    scene = SyntheticDroneScene(160, 96, targets=2, seed=1)
    (f0, m0), (f1, m1) = scene.frame(0), scene.frame(10)
    assert np.abs(f0.astype(int) - f1.astype(int)).mean() > 1.0
    assert not np.array_equal(m0, m1)
    assert SyntheticDroneScene(160, 96, targets=0).frame(0)[1].max() == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least 32x32"):
        SyntheticDroneScene(16, 16)
    with pytest.raises(ValueError, match="index"):
        SyntheticDroneScene(64, 64).frame(-1)


def test_camera_moves_smoothly_without_jumps() -> None:
    """Consecutive frames differ by the slow drift and shake only: the view must not wrap
    around (a jump of the whole scene) within the clips training uses."""
    from saliency_ros.runtime import egomotion

    for seed in range(6):
        scene = SyntheticDroneScene(320, 180, seed=seed)
        grays = [egomotion.working_gray(scene.frame(i)[0]) for i in range(0, 60, 3)]
        for a, b in zip(grays, grays[1:]):
            motion = egomotion.estimate(a, b)
            assert motion.ok, seed
            shift = egomotion.in_pixels(motion.homography, 320, 180)[:2, 2]
            assert np.abs(shift).max() < 15, (seed, shift)
