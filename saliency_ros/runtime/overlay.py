"""Debug overlay: the saliency heat map and object-mask contours drawn on the camera frame.

Pure OpenCV so the offline report draws exactly what the node's debug topic shows.
"""

from __future__ import annotations

import cv2
import numpy as np


def overlay(frame_bgr: np.ndarray, saliency: np.ndarray | None = None,
            mask: np.ndarray | None = None, alpha: float = 0.45,
            truth: np.ndarray | None = None,
            box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Frame with a JET heat map of `saliency` (float [0, 1]) blended in, `mask` (0/255)
    outlined in green, a ground-truth mask `truth` and target box `box` (x, y, w, h; evaluation
    only) in white, and the saliency peak as a cross. Maps of another size are resized to the
    frame."""
    h, w = frame_bgr.shape[:2]
    out = frame_bgr.copy()
    if saliency is not None:
        sal = cv2.resize(saliency, (w, h)) if saliency.shape != (h, w) else saliency
        heat = cv2.applyColorMap(np.clip(sal * 255.0, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
        out = cv2.addWeighted(out, 1.0 - alpha, heat, alpha, 0.0)
        y, x = np.unravel_index(int(np.argmax(sal)), sal.shape)
        cv2.drawMarker(out, (int(x), int(y)), (255, 0, 255), cv2.MARKER_CROSS, max(8, h // 30), max(1, h // 240))
    for m, colour in ((truth, (255, 255, 255)), (mask, (0, 255, 0))):
        if m is None:
            continue
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) if m.shape != (h, w) else m
        contours, _ = cv2.findContours((m > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, max(1, h // 240), cv2.LINE_AA)
    if box is not None and all(np.isfinite(box)):
        x0, y0, bw, bh = box
        cv2.rectangle(out, (int(x0), int(y0)), (int(np.ceil(x0 + bw)), int(np.ceil(y0 + bh))),
                      (255, 255, 255), max(1, h // 360), cv2.LINE_AA)
    return out
