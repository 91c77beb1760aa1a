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
    return normalize(model_sized(image_bgr, spec), spec)[None]


def model_sized(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The uint8 BGR frame at the model's input size, by the card's resize method: the first
    half of `to_input`, for callers that need the small frame too (the motion prior's grey
    image), so that the frame is resized once."""
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(
            f"expected a uint8 HxWx3 BGR frame, got {image_bgr.dtype} {image_bgr.shape}"
        )
    return resize(image_bgr, spec.width, spec.height, spec.resize)


def resize(image: np.ndarray, width: int, height: int, method: str = "area") -> np.ndarray:
    """`image` (H x W or H x W x C) at `width` x `height`, by the card's `method`.

    Area shrinking is separable (a box average over x, then over y), and OpenCV only takes
    its fast path when both factors are whole numbers: 1280x720 -> 128x128 (10 and 5.625)
    takes the slow one. So when one axis shrinks by a whole factor, that axis goes first
    (fast path, whole frame) and the other follows on an image that factor smaller: the same
    average, uint8 frames within one grey level (the intermediate is rounded), at half the
    cost on a 720p frame (README, pipelines table). Training reduces frames with this too.
    """
    h, w = image.shape[:2]
    if method == "area" and w >= width and h >= height and (w % width == 0) != (h % height == 0):
        first = (width, h) if w % width == 0 else (w, height)
        image = cv2.resize(image, first, interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=_INTERPOLATION[method])


def normalize(image_bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 h x w x 3 BGR frame already at the model size -> float32 3 x h x w (colour, scale,
    mean/std). Training augmentation resizes on its own and then calls this.

    OpenCV's `blobFromImage` swaps the channels, subtracts the mean in float32 and lays the
    planes out in one call; the per-channel scale is then one in-place multiply. The floats
    equal the numpy expression `(x - mean) * scale` over the swapped, transposed frame bit for
    bit (test_preprocess checks every grey level), at 0.14 against 0.97-1.01 ms at 224 x 320 here
    (docs/benchmark_history.md, session 29). `blobFromImage` itself scales by one number only; its
    per-channel form needs OpenCV 4.8, newer than some distributions' python3-opencv.
    """
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 BGR frame, got {image_bgr.dtype} {image_bgr.shape}")
    # mean and scale rounded to float32 first, as the numpy expression had them
    mean = np.asarray(spec.mean, np.float32) / np.float32(spec.scale)
    scale = np.float32(spec.scale) / np.asarray(spec.std, np.float32)
    size = (image_bgr.shape[1], image_bgr.shape[0])  # no resize
    blob = cv2.dnn.blobFromImage(image_bgr, 1.0, size, tuple(float(v) for v in mean), spec.color == "RGB", False)[0]
    blob *= scale[:, None, None]
    return blob
