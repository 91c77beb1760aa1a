"""Salient-object metrics through `pysodmetrics`, with the conventions of the SOD literature.

F-beta uses beta^2 = 0.3; "max" and "mean" are over 256 thresholds of the per-image curve
averaged over images, "adaptive" thresholds each map at twice its mean. Maps are scored at
the ground truth's resolution: callers resize predictions to the mask size first.
"""

from __future__ import annotations

import numpy as np
import py_sod_metrics as psm

BETA2 = 0.3


def _as_uint8(pred: np.ndarray) -> np.ndarray:
    if pred.dtype == np.uint8:
        return pred
    if not np.isfinite(pred).all():
        raise ValueError("prediction contains NaN or infinity")
    return np.clip(np.rint(pred * 255.0), 0, 255).astype(np.uint8)


class SODScorer:
    """Accumulates F-beta, MAE, S-measure and E-measure over frames."""

    def __init__(self) -> None:
        self._fm = psm.FmeasureV2(
            metric_handlers={"fm": psm.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=BETA2)}
        )
        self._mae, self._sm, self._em = psm.MAE(), psm.Smeasure(), psm.Emeasure()
        self.frames = 0

    def step(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one frame: `pred` in [0, 1] (float) or 0..255 (uint8), `gt` binary or 0/255."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
        p = _as_uint8(pred)
        g = np.where(gt > (127 if gt.dtype == np.uint8 else 0.5), 255, 0).astype(np.uint8)
        for metric in (self._fm, self._mae, self._sm, self._em):
            metric.step(p, g)
        self.frames += 1

    def results(self) -> dict[str, float]:
        """Metrics over every frame so far (empty set: an error, not zeros)."""
        if not self.frames:
            raise ValueError("no frames were scored")
        fm = self._fm.get_results()["fm"]
        em = self._em.get_results()["em"]
        return {
            "fbeta_max": float(np.max(fm["dynamic"])),
            "fbeta_mean": float(np.mean(fm["dynamic"])),
            "fbeta_adaptive": float(fm["adaptive"]),
            "mae": float(self._mae.get_results()["mae"]),
            "smeasure": float(self._sm.get_results()["sm"]),
            "emeasure_max": float(np.max(em["curve"])),
            "emeasure_mean": float(np.mean(em["curve"])),
            "emeasure_adaptive": float(em["adp"]),
            "frames": self.frames,
        }
