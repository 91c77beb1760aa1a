"""Frames from a video file, an image folder, or the synthetic scene, behind one interface.

The camera_source node, `saliency-ros bag build` and the benchmarks read frames through
`open_source`, so a clip behaves the same whichever tool plays it. numpy and OpenCV only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from saliency_ros.sources.layouts import IMAGE_SUFFIXES
from saliency_ros.sources.synthetic import SyntheticDroneScene

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v")


class SourceError(ValueError):
    """The source cannot be opened or a frame in it cannot be read."""


class FrameSource(Protocol):
    """Frames in order; `read` returns None at the end, `rewind` starts over."""

    fps: float | None  # native frame rate, None when the source has none (a folder)
    name: str

    def read(self) -> np.ndarray | None: ...
    def rewind(self) -> None: ...


class VideoFileSource:
    """A video file decoded with OpenCV (FFmpeg backend)."""

    def __init__(self, path: Path) -> None:
        self.path, self.name = path, path.stem
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video file {path}")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else None

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return frame if ok else None

    def rewind(self) -> None:
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)


class ImageFolderSource:
    """Image files of a folder in name order; an unreadable file is an error naming it."""

    def __init__(self, path: Path) -> None:
        self.path, self.name, self.fps = path, path.name, None
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
        self._index = 0

    def read(self) -> np.ndarray | None:
        if self._index >= len(self.files):
            return None
        path = self.files[self._index]
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise SourceError(f"cannot read image {path}")
        self._index += 1
        return frame

    def rewind(self) -> None:
        self._index = 0


class SyntheticSource:
    """The synthetic drone scene as an endless source."""

    def __init__(self, width: int, height: int, seed: int = 0) -> None:
        self.scene = SyntheticDroneScene(width, height, seed=seed)
        self.name, self.fps = "synthetic", None
        self._index = 0

    def read(self) -> np.ndarray:
        frame, _ = self.scene.frame(self._index)
        self._index += 1
        return frame

    def rewind(self) -> None:
        self._index = 0


def open_source(spec: str, width: int = 640, height: int = 360, seed: int = 0) -> FrameSource:
    """`synthetic`, a video file or an image folder. `width`/`height` size the synthetic scene."""
    if spec == "synthetic":
        return SyntheticSource(width, height, seed)
    path = Path(spec).expanduser()
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise SourceError(f"{path} is not a video file ({', '.join(VIDEO_SUFFIXES)})")
        return VideoFileSource(path)
    raise SourceError(f"camera source {spec!r} is neither 'synthetic' nor an existing video file or folder")


def frames(source: FrameSource) -> Iterator[np.ndarray]:
    """Every frame of a finite source, once."""
    while (frame := source.read()) is not None:
        yield frame
