"""Camera frame -> model input tensor, exactly as the model card says. No torch.

Training, export parity, the nodes and the offline evaluation all call `to_input`, so the
numbers we score are computed on the tensors that fly.
"""

from __future__ import annotations

import cv2
import numpy as np

from saliency_ros.runtime.model_card import InputSpec

_INTERPOLATION = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR}


def to_input(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 H x W x 3 BGR frame -> float32 1 x 3 x h x w tensor (resize, colour, normalise)."""
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(
            f"expected a uint8 HxWx3 BGR frame, got {image_bgr.dtype} {image_bgr.shape}"
        )
    resized = cv2.resize(image_bgr, (spec.width, spec.height), interpolation=_INTERPOLATION[spec.resize])
    return normalize(resized, spec)[None]


def normalize(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 h x w x 3 BGR frame already at the model size -> float32 3 x h x w (colour, scale,
    mean/std). Training augmentation resizes on its own and then calls this."""
    if spec.color == "RGB":
        image_bgr = image_bgr[:, :, ::-1]
    mean = np.asarray(spec.mean, np.float32) / np.float32(spec.scale)
    inv_std = np.float32(spec.scale) / np.asarray(spec.std, np.float32)
    chw = (image_bgr.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(chw.transpose(2, 0, 1))
