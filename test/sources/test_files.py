"""Video file, image folder and synthetic sources behind one interface, with clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from saliency_ros.sources.files import SourceError, frames, open_source
from test.conftest import shared_data, write_video


def _folder(tmp_path: Path, n: int = 3) -> Path:
    for i in range(n):
        cv2.imwrite(str(tmp_path / f"{i:05d}.png"), np.full((24, 32, 3), i * 40, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_in_name_order_and_rewind(tmp_path: Path) -> None:
    src = open_source(str(_folder(tmp_path)))
    got = [int(f[0, 0, 0]) for f in frames(src)]
    assert got == [0, 40, 80] and src.fps is None
    src.rewind()
    assert int(src.read()[0, 0, 0]) == 0


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "00000.png").write_bytes(b"not a png")
    src = open_source(str(tmp_path))
    with pytest.raises(SourceError, match="00000.png"):
        src.read()


def test_video_file_round_trip(tmp_path: Path) -> None:
    src = open_source(str(write_video(tmp_path / "clip.avi", 25.0, 5)))
    assert src.fps == pytest.approx(25.0)
    got = list(frames(src))
    assert len(got) == 5 and got[0].shape == (48, 64, 3)
    assert abs(int(got[3].mean()) - 90) < 8  # grey 3 x 30; MJPG is lossy
    src.rewind()
    assert src.read() is not None


def test_synthetic_is_sized_and_deterministic() -> None:
    a, b = open_source("synthetic", 96, 64, seed=3), open_source("synthetic", 96, 64, seed=3)
    fa, fb = a.read(), b.read()
    assert fa.shape == (64, 96, 3) and np.array_equal(fa, fb)


@pytest.mark.parametrize("spec,match", [("/no/such/clip.mp4", "neither"), (__file__, "not a video file")])
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        open_source(spec)


@pytest.mark.data
def test_real_drone_clip() -> None:
    clip = shared_data() / "aerial" / "Vehicle_00083.avi"
    if not clip.is_file():
        pytest.skip(f"real drone clip not found at {clip}")
    src = open_source(str(clip))
    first = src.read()
    assert first.shape == (720, 1280, 3) and src.fps == pytest.approx(30.0, rel=0.01)
