"""Frame pairs (current, previous at gap k) with identical augmentation on both frames.

Both papers learn from a frame and a temporal neighbour; NOTES.md fixes the neighbour to the
previous frame (what a live node has). The gap k is drawn per sample from [gap_min, gap_max]
(1 <= k <= 3 by default). Augmentation is one random affine (resized crop, rotation, flip)
and one colour jitter shared by the two frames and their masks, so the motion between them is
the real one. Tensors are normalised by the same function the runtime uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from saliency_ros.runtime.model_card import InputSpec
from saliency_ros.runtime.preprocess import normalize
from saliency_ros.sources.layouts import DatasetError, VideoSequence


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the shared augmentation (the SOD paper: crop, rotation 10 deg, flip)."""

    crop_scale: tuple[float, float] = (0.6, 1.0)  # fraction of the frame area kept
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rotation_deg: float = 10.0
    flip: float = 0.5
    jitter: float = 0.15  # brightness, contrast and saturation, +- this fraction
    # Chance that a sample zooms out instead of cropping in: the whole frame shrinks by a side
    # factor drawn log-uniformly from [1, zoom_out_max] and the rest of the input is `border`.
    # DUTS and DAVIS objects fill a good part of their frame; a drone's target fills a few pixels
    # of it (measured, not kept: docs/training_levers.md §6).
    zoom_out: float = 0.0
    zoom_out_max: float = 3.0
    # What lies outside the frame (rotation corners, zoom-out): "mirror" (the frame reflected at
    # its borders), or "mean" (the model's mean colour, mask 0: SSD's zoom-out canvas).
    border: str = "mirror"


def read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read image {path}")
    return img


def read_mask(path: Path) -> np.ndarray:
    """Mask or map as float32 in [0, 1]."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DatasetError(f"cannot read mask {path}")
    return mask.astype(np.float32) / 255.0


def _affine(rng: np.random.Generator, h: int, w: int, size: tuple[int, int], aug: AugmentConfig,
            stretch: float = 1.0) -> np.ndarray:
    """2x3 matrix mapping a random rotated crop of an h x w frame onto `size` (w, h). The crop's
    width:height is drawn from `aug.crop_ratio` times `stretch` (a batch wider than the
    dataset's shape gets wider crops, so its objects keep their proportions)."""
    area = h * w * rng.uniform(*aug.crop_scale)
    ratio = stretch * np.exp(rng.uniform(np.log(aug.crop_ratio[0]), np.log(aug.crop_ratio[1])))
    cw = min(w, np.sqrt(area * ratio))
    ch = min(h, np.sqrt(area / ratio))
    if aug.zoom_out > 0 and rng.random() < aug.zoom_out:  # no draw when off: old runs replay
        factor = np.exp(rng.uniform(0.0, np.log(aug.zoom_out_max)))
        cw, ch = max(cw, np.sqrt(h * w * ratio)) * factor, max(ch, np.sqrt(h * w / ratio)) * factor
    # A crop larger than the frame holds the frame at a random place inside it.
    cx = rng.uniform(min(cw / 2, w - cw / 2), max(cw / 2, w - cw / 2))
    cy = rng.uniform(min(ch / 2, h - ch / 2), max(ch / 2, h - ch / 2))
    angle = rng.uniform(-aug.rotation_deg, aug.rotation_deg)
    out_w, out_h = size
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)  # rotate about the crop centre
    m = np.vstack([m, [0, 0, 1]])
    crop = np.array([[out_w / cw, 0, out_w / 2 - cx * out_w / cw],
                     [0, out_h / ch, out_h / 2 - cy * out_h / ch], [0, 0, 1]])
    full = crop @ m
    if rng.random() < aug.flip:
        full = np.array([[-1, 0, out_w - 1], [0, 1, 0], [0, 0, 1]]) @ full
    return full[:2]


def _jitter(rng: np.random.Generator, strength: float) -> tuple[float, float, float]:
    return tuple(1.0 + rng.uniform(-strength, strength) for _ in range(3))  # type: ignore[return-value]


def _apply_jitter(img: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    brightness, contrast, saturation = gains
    f = img.astype(np.float32) * brightness
    f = (f - f.mean()) * contrast + f.mean()
    grey = f.mean(axis=2, keepdims=True)
    f = (f - grey) * saturation + grey
    return np.clip(f, 0, 255).astype(np.uint8)


def _warp(img: np.ndarray, m: np.ndarray, size: tuple[int, int], downscale: float,
          fill: tuple[float, ...] | None = None) -> np.ndarray:
    """Warp with area pre-filtering when the crop shrinks a lot (avoids aliasing at 64x64);
    outside the frame, `fill` or (None) the frame mirrored."""
    if downscale > 2.0:
        small = cv2.resize(img, None, fx=1 / downscale, fy=1 / downscale, interpolation=cv2.INTER_AREA)
        m = m @ np.array([[downscale, 0, 0], [0, downscale, 0], [0, 0, 1]])
        img = small
    if fill is None:
        return cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)


class FramePairDataset(Dataset):
    """Samples {"current", "previous": 3xHxW, "mask", "previous_mask": 1xHxW, "gap": k}.

    With `augment=None` samples are deterministic (validation): both frames area-resized,
    gap = gap_min. Image datasets (`temporal=False`) pair a frame with itself.
    """

    def __init__(
        self,
        sequences: list[VideoSequence],
        spec: InputSpec,
        gap: tuple[int, int] = (1, 3),
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        if not sequences:
            raise DatasetError("no sequences given")
        if not 1 <= gap[0] <= gap[1]:
            raise ValueError(f"gap must satisfy 1 <= min <= max, got {gap}")
        self.sequences, self.spec, self.gap, self.augment = sequences, spec, gap, augment
        self.seed = seed
        self.epoch = 0
        # Every frame with at least one earlier frame can be a current frame.
        self.index = [(s, t) for s, seq in enumerate(sequences)
                      for t in range(1 if seq.temporal and len(seq) > 1 else 0, len(seq))]
        if not self.index:
            raise DatasetError("no frame pairs: every sequence has a single frame")

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """New augmentation draws each epoch, reproducible from (seed, epoch, item)."""
        self.epoch = epoch

    def _fill(self) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
        """Border values for (frames, masks): None (mirror), or the spec's mean colour as a BGR
        pixel (it normalises to 0) and mask 0."""
        if self.augment is None or self.augment.border == "mirror":
            return None, None
        mean = [v / self.spec.scale for v in self.spec.mean]
        return tuple(mean[::-1] if self.spec.color == "RGB" else mean), (0.0,)

    def __getitem__(self, item: int | tuple[int, tuple[int, int]]) -> dict[str, torch.Tensor | int]:
        """Sample `item` at the dataset's shape, or `(item, (height, width))` at that shape
        (`training.common.ShapedBatches`)."""
        item, (height, width) = item if isinstance(item, tuple) else (item, (self.spec.height, self.spec.width))
        s, t = self.index[item]
        seq = self.sequences[s]
        rng = np.random.default_rng((self.seed, self.epoch, item))
        k = int(rng.integers(self.gap[0], self.gap[1] + 1)) if self.augment else self.gap[0]
        p = max(t - k, 0) if seq.temporal else t
        frames = [read_image(seq.frames[t]), read_image(seq.frames[p])]
        masks = [read_mask(seq.masks[t]), read_mask(seq.masks[p])]
        for f, m, fp, mp in zip(frames, masks, (seq.frames[t], seq.frames[p]), (seq.masks[t], seq.masks[p])):
            if f.shape[:2] != m.shape or f.shape != frames[0].shape:
                raise DatasetError(
                    f"size mismatch in {seq.name!r}: {fp.name} is {f.shape[1]}x{f.shape[0]}, "
                    f"{mp.name} is {m.shape[1]}x{m.shape[0]}, current frame "
                    f"{frames[0].shape[1]}x{frames[0].shape[0]}"
                )
        size = (width, height)
        if self.augment is None:
            frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
            masks = [cv2.resize(m, size, interpolation=cv2.INTER_AREA) for m in masks]
        else:
            h, w = frames[0].shape[:2]
            stretch = (width / height) / (self.spec.width / self.spec.height)
            m_aff = _affine(rng, h, w, size, self.augment, stretch)
            downscale = float(np.sqrt(abs(np.linalg.det(m_aff[:, :2])))) ** -1
            gains = _jitter(rng, self.augment.jitter)
            colour, zero = self._fill()
            frames = [_apply_jitter(_warp(f, m_aff, size, downscale, colour), gains) for f in frames]
            masks = [_warp(m, m_aff, size, downscale, zero) for m in masks]
        return {
            "current": torch.from_numpy(normalize(frames[0], self.spec)),
            "previous": torch.from_numpy(normalize(frames[1], self.spec)),
            "mask": torch.from_numpy(np.clip(masks[0], 0, 1)[None]),
            "previous_mask": torch.from_numpy(np.clip(masks[1], 0, 1)[None]),
            "gap": t - p,
        }
