"""Debug overlay: the saliency heat map and object-mask contours drawn on the camera frame.

Pure OpenCV so the offline report draws exactly what the node's debug topic shows.
"""

from __future__ import annotations

import cv2
import numpy as np


def overlay(frame_bgr: np.ndarray, saliency: np.ndarray | None = None,
            mask: np.ndarray | None = None, alpha: float = 0.45,
            truth: np.ndarray | None = None) -> np.ndarray:
    """Frame with a JET heat map of `saliency` (float [0, 1]) blended in, `mask` (0/255)
    outlined in green and a ground-truth mask `truth` (evaluation only) in white. Maps of
    another size are resized to the frame."""
    h, w = frame_bgr.shape[:2]
    out = frame_bgr.copy()
    if saliency is not None:
        sal = cv2.resize(saliency, (w, h)) if saliency.shape != (h, w) else saliency
        heat = cv2.applyColorMap(np.clip(sal * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        out = cv2.addWeighted(out, 1.0 - alpha, heat, alpha, 0.0)
    for m, colour in ((truth, (255, 255, 255)), (mask, (0, 255, 0))):
        if m is None:
            continue
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) if m.shape != (h, w) else m
        contours, _ = cv2.findContours((m > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, max(1, h // 240), cv2.LINE_AA)
    return out
