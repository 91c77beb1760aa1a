"""Ego-motion compensation of a frame pair: warp the previous frame onto the current one.

A drone camera moves, so in a raw (current, previous) pair everything moves and the temporal
cue "this moved" fires on the whole background. Aligning the previous frame with a global
homography (or affine) leaves motion only where the world itself moves: a small target.

One estimate per pair, from sparse optical flow on a small grey image (`MotionConfig.width`
wide): Shi-Tomasi corners in the previous frame, pyramidal Lucas-Kanade into the current one,
then RANSAC. The result is a homography in normalised image coordinates (the unit square,
pixel centres at (i + 0.5) / size), so the same estimate warps the full frame, a 64x64 model
input or a 128x128 one. Training (`training/skd.py`), the saliency pipeline (node) and the
offline evaluation all call this module, so what is trained is what flies. No torch, no ROS.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MODELS = ("homography", "affine")
IDENTITY = np.eye(3)


@dataclass(frozen=True)
class MotionConfig:
    """How the global motion is estimated. `width`: grey working image width in pixels."""

    model: str = "homography"
    width: int = 320
    max_corners: int = 150  # RANSAC needs far fewer; each costs a Lucas-Kanade track
    # Corner strength relative to the strongest: low, so that one high-contrast target does
    # not leave smooth ground (fields, plazas, the synthetic terrain) with too few corners.
    corner_quality: float = 0.001
    min_distance: int = 7
    window: int = 15  # Lucas-Kanade window (pixels at working size), 3 pyramid levels
    ransac_px: float = 1.0  # inlier distance at working size
    min_inliers: int = 12

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"ego-motion model must be one of {MODELS}, got {self.model!r}")
        if (self.width < 32 or self.max_corners < 8 or self.min_inliers < 4 or self.ransac_px <= 0
                or not 0 < self.corner_quality < 1):
            raise ValueError(f"invalid ego-motion settings: {self}")


@dataclass(frozen=True)
class Motion:
    """Previous -> current homography in normalised coordinates; identity when not `ok`."""

    homography: np.ndarray
    inliers: int
    ok: bool


def _to_normalised(width: int, height: int) -> np.ndarray:
    return np.array([[1.0 / width, 0, 0.5 / width], [0, 1.0 / height, 0.5 / height], [0, 0, 1]])


def working_gray(frame_bgr: np.ndarray, config: MotionConfig = MotionConfig()) -> np.ndarray:
    """The grey image motion is estimated on (kept per frame by streams, ~60 KB)."""
    gray = frame_bgr if frame_bgr.ndim == 2 else cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    if w == config.width:
        return gray
    height = max(int(round(h * config.width / w)), 8)
    return cv2.resize(gray, (config.width, height), interpolation=cv2.INTER_AREA)


def estimate(previous_gray: np.ndarray, current_gray: np.ndarray, config: MotionConfig = MotionConfig()) -> Motion:
    """Global motion from `previous_gray` to `current_gray` (same size, from `working_gray`)."""
    if previous_gray.shape != current_gray.shape:
        return Motion(IDENTITY, 0, False)  # a size change restarts pairing anyway
    corners = cv2.goodFeaturesToTrack(previous_gray, config.max_corners, config.corner_quality, config.min_distance)
    if corners is None or len(corners) < config.min_inliers:
        return Motion(IDENTITY, 0, False)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous_gray, current_gray, corners, None,
                                                winSize=(config.window, config.window), maxLevel=3)
    good = status.ravel() == 1
    p0, p1 = corners[good].reshape(-1, 2), moved[good].reshape(-1, 2)
    if len(p0) < config.min_inliers:
        return Motion(IDENTITY, 0, False)
    if config.model == "homography":
        h, inl = cv2.findHomography(p0, p1, cv2.RANSAC, config.ransac_px)
    else:
        a, inl = cv2.estimateAffine2D(p0, p1, method=cv2.RANSAC, ransacReprojThreshold=config.ransac_px)
        h = None if a is None else np.vstack([a, [0, 0, 1]])
    inliers = 0 if inl is None else int(inl.sum())
    if h is None or inliers < config.min_inliers or not np.isfinite(h).all():
        return Motion(IDENTITY, inliers, False)
    height, width = previous_gray.shape
    n = _to_normalised(width, height)
    return Motion(n @ h @ np.linalg.inv(n), inliers, True)


def in_pixels(homography: np.ndarray, width: int, height: int) -> np.ndarray:
    """A normalised homography as a pixel homography for an image of `width` x `height`."""
    n = _to_normalised(width, height)
    return np.linalg.inv(n) @ homography @ n


def warp(image: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """An H x W (x C) image warped by a normalised previous -> current homography, so that it
    lines up with the current frame. Areas with no source are filled from the nearest edge, so
    they read as "no motion" rather than as a black edge that moved."""
    if np.array_equal(homography, IDENTITY):
        return image
    h, w = image.shape[:2]
    out = cv2.warpPerspective(image, in_pixels(homography, w, h), (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(image.shape)


def warp_input(tensor: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """A (1 x) C x H x W model input warped like `warp` (the pair buffer keeps model inputs)."""
    if np.array_equal(homography, IDENTITY):
        return tensor
    chw = tensor.reshape(tensor.shape[-3:])
    hwc = np.ascontiguousarray(chw.transpose(1, 2, 0))
    return np.ascontiguousarray(warp(hwc, homography).transpose(2, 0, 1)).reshape(tensor.shape)


def align_previous(previous_input: np.ndarray, previous_gray: np.ndarray, current_gray: np.ndarray,
                   config: MotionConfig) -> tuple[np.ndarray, Motion]:
    """The previous model input warped onto the current frame: the one call the saliency
    pipeline and validation make per pair (training warps with estimates cached once)."""
    motion = estimate(previous_gray, current_gray, config)
    return warp_input(previous_input, motion.homography), motion
