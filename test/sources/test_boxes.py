"""Box ground-truth layouts: aerial_dev (frames/ + boxes.txt) and tracking (img/ + groundtruth_rect.txt)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from saliency_ros.sources.boxes import discover_boxes, is_box_dataset, read_boxes
from saliency_ros.sources.layouts import DatasetError


def write_box_clip(folder: Path, boxes: list[str], layout: str = "aerial", size: tuple[int, int] = (64, 48)) -> None:
    frames = folder / ("frames" if layout == "aerial" else "img")
    frames.mkdir(parents=True)
    for i, _ in enumerate(boxes):
        img = np.full((size[1], size[0], 3), 40 + 10 * i, np.uint8)
        cv2.imwrite(str(frames / f"{i + 1:05d}.jpg"), img)
    (folder / ("boxes.txt" if layout == "aerial" else "groundtruth_rect.txt")).write_text("\n".join(boxes) + "\n")


def test_both_layouts_and_every_separator(tmp_path: Path) -> None:
    write_box_clip(tmp_path / "a", ["10,5,4.5,3", "NaN,NaN,NaN,NaN", "11,6,4.5,3"])
    write_box_clip(tmp_path / "b", ["1\t2\t3\t4", "2 3 4 5"], layout="tracking")
    assert is_box_dataset(tmp_path) and is_box_dataset(tmp_path / "b")
    a, b = discover_boxes(tmp_path)
    assert (a.name, len(a), b.name, len(b)) == ("a", 3, "b", 2)
    assert a.boxes[0] == (10.0, 5.0, 4.5, 3.0) and all(math.isnan(v) for v in a.boxes[1])
    assert b.boxes[1] == (2.0, 3.0, 4.0, 5.0)
    assert discover_boxes(tmp_path / "a")[0].frames == a.frames  # one clip folder works too


def test_errors_name_the_file(tmp_path: Path) -> None:
    write_box_clip(tmp_path / "short", ["1,2,3,4", "1,2,3,4"])
    (tmp_path / "short" / "boxes.txt").write_text("1,2,3,4\n")
    with pytest.raises(DatasetError, match="boxes.txt has 1 boxes for 2 frames"):
        discover_boxes(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2,3\n")
    with pytest.raises(DatasetError, match="bad.txt:1: expected 4 values"):
        read_boxes(bad)
    bad.write_text("1,2,x,4\n")
    with pytest.raises(DatasetError, match="bad.txt:1: expected x,y,w,h numbers"):
        read_boxes(bad)
    bad.write_text("1,2,-3,4\n")
    with pytest.raises(DatasetError, match="negative box size"):
        read_boxes(bad)
    assert not is_box_dataset(tmp_path / "missing")


@pytest.mark.data
def test_real_aerial_dev() -> None:
    from test.conftest import shared_data

    root = shared_data() / "aerial_dev"
    if not root.is_dir():
        pytest.skip(f"aerial_dev not found at {root}")
    seqs = {s.name: s for s in discover_boxes(root)}
    assert len(seqs["person12"]) == 201 and len(seqs["truck4"]) == 193
