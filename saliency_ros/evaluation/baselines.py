"""OpenCV's classic saliency methods and a centre prior, scored next to our models as baselines.

Each baseline maps a BGR frame to a float32 map in [0, 1] at the frame's size. Spectral
residual and fine-grained are per frame; BinWang's motion saliency learns a background model
over the stream, so it is created per sequence and must see every frame in order. The centre
prior ignores the image: a Gaussian at the frame centre (sigma a quarter of each side), the
bias any learned model could fall back to; beating it shows the model looks at the scene.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

BASELINES = ("spectral_residual", "fine_grained", "binwang_motion", "centre_prior")


def _normalise(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    m = np.asarray(m, np.float32)
    if m.shape != shape:
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(m.min()), float(m.max())
    return np.zeros(shape, np.float32) if hi <= lo else (m - lo) / (hi - lo)


def centre_prior(shape: tuple[int, int]) -> np.ndarray:
    """Gaussian centre bias in [0, 1] with sigma = a quarter of the height and width."""
    h, w = shape
    y = (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / (h / 4)
    x = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / (w / 4)
    return np.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2)).astype(np.float32)


class Baseline:
    """One OpenCV saliency algorithm, restarted at each sequence with `reset`."""

    def __init__(self, name: str) -> None:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")
        if not hasattr(cv2, "saliency"):
            raise RuntimeError("cv2.saliency is missing: install opencv-contrib-python-headless "
                               "(scripts/setup_venv.sh does)")
        self.name = name
        self._algo: object = None
        self._shape: tuple[int, int] | None = None

    def reset(self) -> None:
        self._algo, self._shape = None, None

    def _create(self, shape: tuple[int, int]) -> object:
        factory: Callable[[], object] = {
            "spectral_residual": cv2.saliency.StaticSaliencySpectralResidual_create,
            "fine_grained": cv2.saliency.StaticSaliencyFineGrained_create,
            "binwang_motion": cv2.saliency.MotionSaliencyBinWangApr2014_create,
        }[self.name]
        algo = factory()
        if self.name == "binwang_motion":
            algo.setImagesize(shape[1], shape[0])
            algo.init()
        return algo

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        shape = frame_bgr.shape[:2]
        if self.name == "centre_prior":
            return centre_prior(shape)
        if self._algo is None or shape != self._shape:
            self._algo, self._shape = self._create(shape), shape
        image = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if self.name == "binwang_motion" else frame_bgr
        ok, sal = self._algo.computeSaliency(image)  # type: ignore[attr-defined]
        if not ok:
            raise RuntimeError(f"OpenCV {self.name} failed on a {shape[1]}x{shape[0]} frame")
        return _normalise(sal, shape)
