"""Write synthetic drone-scene sequences to disk in our layout, so they load like real data."""

from __future__ import annotations

from pathlib import Path

import cv2

from saliency_ros.sources.synthetic import SyntheticDroneScene


def write_synthetic_dataset(
    root: Path, sequences: int, frames: int, width: int, height: int, seed: int = 0,
    target_scale: tuple[float, float] = (0.05, 0.12),
) -> Path:
    """`root/synth_XX/frames/*.jpg` + `masks/*.png`; reuses a complete earlier write (the
    folder name should tell settings apart: a write with other settings is not detected)."""
    for s in range(sequences):
        seq = root / f"synth_{s:02d}"
        if len(list((seq / "masks").glob("*.png"))) == frames:
            continue
        (seq / "frames").mkdir(parents=True, exist_ok=True)
        (seq / "masks").mkdir(parents=True, exist_ok=True)
        scene = SyntheticDroneScene(width, height, targets=1 + s % 3, seed=seed * 1000 + s,
                                    target_scale=tuple(target_scale))
        for i, (image, mask) in enumerate(scene.frames(frames)):
            cv2.imwrite(str(seq / "frames" / f"{i:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(seq / "masks" / f"{i:05d}.png"), mask)
    return root
