"""Motion prior for `/saliency`: lift what moves against the ground, lower what does not.

A single-frame saliency model sees appearance only. On a drone the target a tracker follows
usually moves, and so does everything in a raw frame pair, because the camera moves. Once the
camera's ego-motion is taken out (`runtime.egomotion`: a homography from sparse optical flow),
what still changes between the two frames is the world's own motion, plus some parallax and
noise. This module turns that change into a coarse map in [0, 1] and multiplies the saliency
map by `1 + strength * change`, rescaled so that the map's peak keeps its value.

Why coarse: the change of a moving object is strongest on its edges and texture; a sharp
change map fragments the object (S-measure fell from 0.80 to 0.55 on DAVIS val with a sharp
one). Blurred to region size it says "something moves here" and leaves the object's shape to
the model. Why a product: appearance decides what an object is, motion only re-ranks the
objects, so a static background that does not look like an object stays dark. Why a floor: a
static scene has no motion to speak of, and normalising its noise would lift random spots; when
the frame's `percentile` change is below `floor` grey levels the map is left as the model made it.

Measured choices (one stream at a time, DAVIS-2016 val and aerial_dev): docs/motion_prior.md.
No torch, no ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from saliency_ros.runtime import egomotion


@dataclass(frozen=True)
class MotionPriorConfig:
    """`strength`: how much more a moving region weighs than a static one (1 + strength);
    `blur`: Gaussian sigma of the change map as a fraction of the image width (10 px of 320:
    6 px cost DAVIS train clips 0.025 more S-measure); `percentile`: the change (per frame)
    that counts as fully moving; `floor`: grey levels of change below which a frame counts as
    static. `motion`: the ego-motion estimate, on the grey model-sized frame the pipeline
    already has (no second resize of the camera frame), with 60 corners and an 11 px
    Lucas-Kanade window: 0.8 ms at 256 x 128, against 2.3 ms for the students' 320 px image
    with 150 corners and a 15 px window (docs/motion_prior.md)."""

    strength: float = 3.0
    blur: float = 10.0 / 320.0
    percentile: float = 99.5
    floor: float = 2.0  # a still 720p scene with sensor noise (sd 3-8): 0.5-1.3; aerial_dev's stillest pair: 4.3
    motion: egomotion.MotionConfig = field(default_factory=lambda: egomotion.MotionConfig(max_corners=60, window=11))

    def __post_init__(self) -> None:
        if not (self.strength > 0 and 0 < self.blur < 1 and 50 <= self.percentile <= 100 and self.floor >= 0):
            raise ValueError(f"invalid motion prior settings: {self}")


def change(previous_gray: np.ndarray, current_gray: np.ndarray,
           config: MotionPriorConfig) -> tuple[np.ndarray | None, egomotion.Motion]:
    """Where the scene changed beyond the camera's motion, in [0, 1], at a quarter of the grey
    images' size (they are uint8 and the same size). None when the frame pair cannot be used:
    the ego-motion estimate failed (an unaligned difference would light up the whole
    background) or nothing changed beyond `floor`."""
    motion = egomotion.estimate(previous_gray, current_gray, config.motion)
    if not motion.ok:
        return None, motion
    diff = cv2.absdiff(current_gray, egomotion.warp(previous_gray, motion.homography)).astype(np.float32)
    # The map is blurred to region size anyway: averaged down first, the blur costs 1/16.
    h, w = diff.shape
    small = cv2.resize(diff, (max(w // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), config.blur * small.shape[1])
    scale = float(np.percentile(small, config.percentile))
    if scale < config.floor:
        return None, motion
    return np.minimum(small * (1.0 / scale), 1.0), motion


def lift(prob: np.ndarray, change_map: np.ndarray, strength: float) -> np.ndarray:
    """`prob * (1 + strength * change)` at `prob`'s size, rescaled to `prob`'s peak value, so a
    tracker's thresholds on the map keep their meaning."""
    h, w = prob.shape
    gain = 1.0 + strength * cv2.resize(change_map, (w, h), interpolation=cv2.INTER_LINEAR)
    lifted = prob * gain
    peak = float(lifted.max())
    if peak <= 0.0:
        return prob
    return (lifted * (float(prob.max()) / peak)).astype(np.float32)
