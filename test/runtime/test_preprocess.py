"""`runtime.preprocess.resize`: the two-pass area shrink equals OpenCV's one-pass area resize."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from saliency_ros.runtime.preprocess import resize


def _frame(height: int, width: int, channels: int | None = 3) -> np.ndarray:
    """Smooth structure plus noise, so that both the box average and its rounding matter."""
    rng = np.random.default_rng(height * width)
    y, x = np.mgrid[0:height, 0:width]
    base = 127 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)
    shape = (height, width) if channels is None else (height, width, channels)
    noise = rng.normal(0, 20, shape)
    img = (base if channels is None else base[..., None]) + noise
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("source, size", [
    ((720, 1280), (128, 128)),  # width by 10 first, height by 5.625 after
    ((720, 1280), (256, 256)),  # width by 5 first
    ((480, 640), (64, 64)),  # width by 10 first
    ((512, 300), (128, 128)),  # height by 4 first
    ((480, 854), (128, 128)),  # no whole factor: one pass
    ((512, 512), (128, 128)),  # both whole: one (fast) pass
])
def test_area_resize_matches_one_pass_within_a_grey_level(source: tuple[int, int], size: tuple[int, int]) -> None:
    img = _frame(*source)
    ours = resize(img, size[1], size[0], "area")
    opencv = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    assert ours.shape == opencv.shape and ours.dtype == np.uint8
    diff = np.abs(ours.astype(int) - opencv)
    assert diff.max() <= 1
    assert diff.mean() < 0.3  # rounding, not a shifted grid (which would miss by many levels)


def test_area_resize_of_float_maps_is_the_same_average() -> None:
    prob = _frame(720, 1280, None).astype(np.float32) / 255
    np.testing.assert_allclose(resize(prob, 128, 128, "area"),
                               cv2.resize(prob, (128, 128), interpolation=cv2.INTER_AREA), atol=1e-5)


def test_bilinear_and_enlarging_are_plain_opencv() -> None:
    img = _frame(36, 64)
    np.testing.assert_array_equal(resize(img, 128, 128, "bilinear"),
                                  cv2.resize(img, (128, 128), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(resize(img, 128, 72, "area"),
                                  cv2.resize(img, (128, 72), interpolation=cv2.INTER_AREA))
