"""Clips with one target box per frame (tracking ground truth), in the layouts they ship in.

    aerial   <root>/<clip>/frames/*.jpg + <root>/<clip>/boxes.txt    (../shared/data/aerial_dev)
    tracking <root>/<seq>/img/*.jpg     + <root>/<seq>/groundtruth_rect.txt  (OTB, UAV123 sets)

`root` may also be one clip folder. A box file has one line per frame, `x,y,w,h` in the
frame's pixels, separated by commas, tabs or spaces; `NaN` values mark a frame where the target
is out of view. Every frame needs its line: a count mismatch is an error naming the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from saliency_ros.sources.layouts import IMAGE_SUFFIXES, DatasetError

Box = tuple[float, float, float, float]
LAYOUTS = {"aerial": ("frames", "boxes.txt"), "tracking": ("img", "groundtruth_rect.txt")}


@dataclass(frozen=True)
class BoxSequence:
    name: str
    frames: tuple[Path, ...]
    boxes: tuple[Box, ...]

    def __len__(self) -> int:
        return len(self.frames)


def read_boxes(path: Path) -> list[Box]:
    """Boxes of a ground-truth file; NaN rows stay NaN (target out of view)."""
    boxes: list[Box] = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise DatasetError(f"{path}:{n}: expected x,y,w,h numbers, got {line.strip()!r}") from None
        if len(values) != 4:
            raise DatasetError(f"{path}:{n}: expected 4 values (x,y,w,h), got {len(values)}")
        if all(math.isfinite(v) for v in values) and (values[2] < 0 or values[3] < 0):
            raise DatasetError(f"{path}:{n}: negative box size {values[2]}x{values[3]}")
        boxes.append(values)  # type: ignore[arg-type]
    return boxes


def _clip_layout(folder: Path) -> str | None:
    for layout, (frames, boxes) in LAYOUTS.items():
        if (folder / frames).is_dir() and (folder / boxes).is_file():
            return layout
    return None


def is_box_dataset(root: Path) -> bool:
    """Whether `root` is a clip, or a folder of clips, with box ground truth."""
    root = Path(root)
    if not root.is_dir():
        return False
    return _clip_layout(root) is not None or any(
        _clip_layout(c) is not None for c in root.iterdir() if c.is_dir())


def box_sequence(folder: Path) -> BoxSequence:
    layout = _clip_layout(folder)
    if layout is None:
        raise DatasetError(f"{folder}: no frames/ + boxes.txt or img/ + groundtruth_rect.txt")
    frames_dir, box_file = (folder / p for p in LAYOUTS[layout])
    frames = tuple(sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
    boxes = read_boxes(box_file)
    if not frames:
        raise DatasetError(f"{frames_dir}: no images")
    if len(boxes) != len(frames):
        raise DatasetError(f"{box_file} has {len(boxes)} boxes for {len(frames)} frames in {frames_dir}")
    return BoxSequence(folder.name, frames, tuple(boxes))


def discover_boxes(root: Path) -> list[BoxSequence]:
    """Every clip with box ground truth under `root` (or `root` itself), sorted by name."""
    root = Path(root)
    if _clip_layout(root) is not None:
        return [box_sequence(root)]
    seqs = [box_sequence(c) for c in sorted(root.iterdir()) if c.is_dir() and _clip_layout(c) is not None]
    if not seqs:
        raise DatasetError(f"no clips with box ground truth in {root}")
    return seqs
