"""Ego-motion alignment: a known camera motion is recovered within half a pixel, and warping
the previous frame with it lines the pair up (model inputs too)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from saliency_ros.runtime import egomotion
from saliency_ros.runtime.egomotion import MotionConfig, estimate, in_pixels, warp, warp_input, working_gray

W, H = 640, 360


def ground_texture(seed: int = 0) -> np.ndarray:
    """Ground seen from above: smooth random texture with corners to track."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 255, (45, 80, 3), dtype=np.uint8), (W, H), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (3, 3), 0)


def camera_motion(dx: float, dy: float, degrees: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D((W / 2, H / 2), degrees, 1.0)
    m[:, 2] += (dx, dy)
    return np.vstack([m, [0, 0, 1]])


def _corner_error(pixel_h: np.ndarray, truth: np.ndarray) -> float:
    corners = np.array([[0, 0, 1], [W - 1, 0, 1], [0, H - 1, 1], [W - 1, H - 1, 1], [W / 2, H / 2, 1]], float).T
    a, b = pixel_h @ corners, truth @ corners
    return float(np.abs(a[:2] / a[2] - b[:2] / b[2]).max())


@pytest.mark.parametrize("model", egomotion.MODELS)
@pytest.mark.parametrize("motion", [(3.3, -2.1, 0.0), (-6.0, 4.5, 2.0), (1.2, 0.7, -1.5)])
def test_known_shift_and_rotation_recovered_within_half_a_pixel(model: str, motion: tuple[float, float, float]) -> None:
    truth = camera_motion(*motion)
    previous = ground_texture()
    current = cv2.warpPerspective(previous, truth, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    cfg = MotionConfig(model=model)
    est = estimate(working_gray(previous, cfg), working_gray(current, cfg), cfg)
    assert est.ok and est.inliers >= cfg.min_inliers
    assert _corner_error(in_pixels(est.homography, W, H), truth) < 0.5


def test_alignment_removes_background_motion_but_keeps_a_moving_target() -> None:
    truth = camera_motion(5.0, -3.0, 1.0)
    previous = ground_texture(1)
    current = cv2.warpPerspective(previous, truth, (W, H), borderMode=cv2.BORDER_REFLECT)
    current[100:112, 300:312] = (0, 0, 255)  # a small target that appears: real motion
    est = estimate(working_gray(previous), working_gray(current))
    aligned = warp(previous, est.homography)
    inner = (slice(20, H - 20), slice(20, W - 20))
    raw = np.abs(current.astype(float) - previous)[inner].mean()
    residual = np.abs(current.astype(float) - aligned)[inner]
    assert residual.mean() < raw / 4
    target = residual[100 - 20:112 - 20, 300 - 20:312 - 20].mean()
    assert target > 20 * np.median(residual)


def test_normalised_homography_warps_model_inputs_consistently() -> None:
    """The estimate made at working size lines up a 64x64 model input as it does the frame."""
    truth = camera_motion(8.0, 0.0, 0.0)
    previous = ground_texture(2)
    current = cv2.warpPerspective(previous, truth, (W, H), borderMode=cv2.BORDER_REFLECT)
    est = estimate(working_gray(previous), working_gray(current))
    small_prev = cv2.resize(previous, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    small_cur = cv2.resize(current, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    tensor = np.ascontiguousarray(small_prev.transpose(2, 0, 1))[None]
    warped = warp_input(tensor, est.homography)
    assert warped.shape == tensor.shape and warped.dtype == np.float32
    aligned = warped[0].transpose(1, 2, 0)
    inner = (slice(4, 60), slice(4, 60))
    assert np.abs(small_cur - aligned)[inner].mean() < 0.5 * np.abs(small_cur - small_prev)[inner].mean()


def test_featureless_or_mismatched_frames_fall_back_to_identity() -> None:
    flat = np.full((H, W, 3), 128, np.uint8)
    est = estimate(working_gray(flat), working_gray(flat))
    assert not est.ok and np.array_equal(est.homography, egomotion.IDENTITY)
    assert warp(flat, est.homography) is flat
    other = estimate(working_gray(ground_texture()), working_gray(cv2.resize(ground_texture(), (320, 240))))
    assert not other.ok


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        MotionConfig(model="optical")
    with pytest.raises(ValueError, match="invalid ego-motion"):
        MotionConfig(width=8)
