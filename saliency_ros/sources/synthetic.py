"""Synthetic drone scene: textured terrain under camera ego-motion with small moving targets.

Every frame comes with the exact salient-object mask, which makes the scene useful three
ways: the built-in camera of the demo, smoke tests of training and evaluation without real
data, and extra training data. numpy and OpenCV only (it runs on board as a camera source).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

# Earth tones of fields, soil, scrub and gravel (BGR).
_TERRAIN_PALETTE = np.array(
    [[60, 110, 70], [45, 90, 110], [80, 130, 120], [110, 120, 125], [40, 75, 55]], np.float32
)
# Vehicle-like colours that stand out from terrain (BGR).
_TARGET_COLOURS = np.array(
    [[30, 30, 220], [240, 240, 240], [20, 200, 240], [200, 90, 20], [20, 20, 20]], np.uint8
)


@dataclass
class _Target:
    x: float
    y: float
    vx: float
    vy: float
    length: float
    width: float
    colour: tuple[int, int, int]


def _value_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 5) -> np.ndarray:
    """Multi-octave value noise in [0, 1]: coarse random grids upsampled and summed."""
    out = np.zeros((h, w), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        grid = rng.random((cells, cells), dtype=np.float32)
        out += amplitude * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= 0.5
    out /= total
    return (out - out.min()) / max(float(np.ptp(out)), 1e-6)


def _terrain(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A BGR terrain texture: noise-blended palette, fine grain and a few straight tracks."""
    weights = np.stack([_value_noise(rng, h, w, octaves=4) for _ in range(len(_TERRAIN_PALETTE))])
    weights = np.exp(4.0 * weights)
    weights /= weights.sum(axis=0, keepdims=True)
    img = np.einsum("khw,kc->hwc", weights, _TERRAIN_PALETTE)
    img *= (0.75 + 0.5 * _value_noise(rng, h, w, octaves=6))[..., None]
    img += rng.normal(0.0, 6.0, img.shape).astype(np.float32)
    terrain = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        p0 = (int(rng.integers(0, w)), 0)
        p1 = (int(rng.integers(0, w)), h - 1)
        cv2.line(terrain, p0, p1, (150, 160, 165), int(rng.integers(6, 14)), cv2.LINE_AA)
    return terrain


class SyntheticDroneScene:
    """Frames of a drone flying over terrain; `frame(i)` is deterministic for a given seed.

    `targets` small vehicles move across the ground; the camera drifts, yaws slowly and
    shakes a little. Target length is a fraction of the frame height (drone altitude).
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 360,
        targets: int = 3,
        seed: int = 0,
        target_scale: tuple[float, float] = (0.05, 0.12),
    ) -> None:
        if width < 32 or height < 32:
            raise ValueError(f"synthetic frames must be at least 32x32, got {width}x{height}")
        if targets < 0:
            raise ValueError(f"targets must be >= 0, got {targets}")
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        self._seed = seed
        margin = 2
        self._terrain = _terrain(rng, height * margin, width * margin)
        self._cam_v = rng.uniform(-1.5, 1.5, 2) * (width / 640)
        self._yaw_rate = float(rng.uniform(-0.1, 0.1))  # degrees per frame
        self._targets = []
        for _ in range(targets):
            length = float(rng.uniform(*target_scale)) * height
            speed = float(rng.uniform(0.5, 3.0)) * (width / 640)
            heading = float(rng.uniform(0, 2 * np.pi))
            colour = _TARGET_COLOURS[int(rng.integers(len(_TARGET_COLOURS)))]
            self._targets.append(
                _Target(
                    x=float(rng.uniform(0.2, 0.8)) * width,
                    y=float(rng.uniform(0.2, 0.8)) * height,
                    vx=speed * np.cos(heading),
                    vy=speed * np.sin(heading),
                    length=length,
                    width=length * float(rng.uniform(0.4, 0.55)),
                    colour=tuple(int(c) for c in colour),
                )
            )

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(BGR uint8 frame, mask uint8 0/255) at frame `index`."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        h, w = self.height, self.width
        th, tw = self._terrain.shape[:2]
        shake = np.random.default_rng((self._seed, index)).normal(0.0, 0.6, 2)
        # The view starts mid-way through the room it can pan over, so it wraps around (a jump
        # of the whole scene) only after hundreds of frames, not as soon as the shake is negative.
        cx = ((tw - w) / 2 + self._cam_v[0] * index + shake[0]) % (tw - w) + w / 2
        cy = ((th - h) / 2 + self._cam_v[1] * index + shake[1]) % (th - h) + h / 2
        rot = cv2.getRotationMatrix2D((cx, cy), self._yaw_rate * index, 1.0)
        rot[:, 2] += (w / 2 - cx, h / 2 - cy)
        image = cv2.warpAffine(self._terrain, rot, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        mask = np.zeros((h, w), np.uint8)
        for t in self._targets:
            x = (t.x + t.vx * index) % w
            y = (t.y + t.vy * index) % h
            angle = float(np.degrees(np.arctan2(t.vy, t.vx)))
            box = cv2.boxPoints(((x, y), (t.length, t.width), angle)).astype(np.int32)
            shadow = box + np.int32(max(2, round(t.width * 0.25)))
            cv2.fillConvexPoly(image, shadow, (25, 30, 30), cv2.LINE_AA)
            cv2.fillConvexPoly(image, box, t.colour, cv2.LINE_AA)
            roof = cv2.boxPoints(((x, y), (t.length * 0.45, t.width * 0.7), angle)).astype(np.int32)
            cv2.fillConvexPoly(image, roof, tuple(int(c * 0.7) for c in t.colour), cv2.LINE_AA)
            cv2.fillConvexPoly(mask, box, 255)
        return image, mask

    def frames(self, count: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The first `count` frames in order."""
        for i in range(count):
            yield self.frame(i)
