"""`runtime.preprocess`: the two-pass area shrink equals OpenCV's one-pass area resize, and the
one-call normalisation equals the numpy expression it replaced."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from saliency_ros.runtime.model_card import InputSpec
from saliency_ros.runtime.preprocess import normalize, resize


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


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_normalize_equals_the_numpy_expression_bit_for_bit(color: str) -> None:
    """Every grey level in every channel, each channel in another order, so a swapped channel,
    mean or scale shows; exact equality, since training and the nodes share this function and
    the shipped models were trained and scored with the numpy form."""
    spec = InputSpec(names=("image",), height=16, width=48, color=color, scale=1 / 255.0,
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), resize="area")
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    img = np.concatenate([np.stack([levels, levels.T, 255 - levels], axis=2)] * 3, axis=1)
    mean = np.asarray(spec.mean, np.float32) / np.float32(spec.scale)
    inv_std = np.float32(spec.scale) / np.asarray(spec.std, np.float32)
    ordered = img[:, :, ::-1] if color == "RGB" else img
    expected = ((ordered.astype(np.float32) - mean) * inv_std).transpose(2, 0, 1)
    out = normalize(img, spec)
    assert out.dtype == np.float32 and out.shape == (3, 16, 48) and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, expected)


def test_normalize_refuses_what_is_not_a_uint8_colour_frame() -> None:
    spec = InputSpec(names=("image",), height=4, width=4, color="RGB", scale=1 / 255.0,
                     mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="area")
    for bad in (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8 HxWx3"):
            normalize(bad, spec)
