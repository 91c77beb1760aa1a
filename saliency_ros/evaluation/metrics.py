"""Scores of predicted maps against ground-truth masks. Pure functions and small accumulators.

Salient-object metrics go through `pysodmetrics`, with the SOD literature's conventions:
F-beta uses beta^2 = 0.3; "max" and "mean" are over 256 thresholds of the per-image curve
averaged over images; "adaptive" thresholds each map at twice its mean. Maps are scored at
the ground truth's resolution: callers resize predictions to the mask size first.

Saliency-map metrics (CC, SIM, NSS, AUC-Judd) follow the MIT saliency benchmark's
definitions with the mask's pixels as the positive (fixation) set and the mask as the
ground-truth density. A frame whose mask is empty or full has no positives or negatives to
tell apart: it is counted in `undefined`, never scored as 0 or 1.

Per-sequence results merge exactly into the overall one (`merge`): every quantity is a
per-frame mean or a per-frame-averaged curve, so the overall is the frame-weighted mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import py_sod_metrics as psm

BETA2 = 0.3
SALIENCY_METRICS = ("cc", "sim", "nss", "auc_judd")


def _as_uint8(pred: np.ndarray) -> np.ndarray:
    if pred.dtype == np.uint8:
        return pred
    if not np.isfinite(pred).all():
        raise ValueError("prediction contains NaN or infinity")
    return np.clip(np.rint(pred * 255.0), 0, 255).astype(np.uint8)


def _binary(gt: np.ndarray) -> np.ndarray:
    return gt > (127 if gt.dtype == np.uint8 else 0.5)


def _check(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")


@dataclass(frozen=True)
class SODSummary:
    """Everything the SOD scalars and the PR curve are made of, for `frames` frames."""

    frames: int
    fm_curve: np.ndarray  # F-beta at 256 thresholds, mean over frames
    fm_adaptive: float
    precision: np.ndarray  # 256 thresholds, mean over frames
    recall: np.ndarray
    mae: float
    smeasure: float
    em_curve: np.ndarray
    em_adaptive: float

    def scalars(self) -> dict[str, float]:
        return {
            "fbeta_max": float(self.fm_curve.max()),
            "fbeta_mean": float(self.fm_curve.mean()),
            "fbeta_adaptive": self.fm_adaptive,
            "mae": self.mae,
            "smeasure": self.smeasure,
            "emeasure_max": float(self.em_curve.max()),
            "emeasure_mean": float(self.em_curve.mean()),
            "emeasure_adaptive": self.em_adaptive,
            "frames": self.frames,
        }


def merge(summaries: Sequence[SODSummary]) -> SODSummary:
    """The summary of all frames of `summaries` (frame-weighted means)."""
    if not summaries:
        raise ValueError("nothing to merge")
    w = np.array([s.frames for s in summaries], np.float64)
    w /= w.sum()

    def avg(name: str) -> np.ndarray:
        return np.tensordot(w, np.stack([np.asarray(getattr(s, name)) for s in summaries]), axes=1)

    return SODSummary(
        int(sum(s.frames for s in summaries)), avg("fm_curve"), float(avg("fm_adaptive")),
        avg("precision"), avg("recall"), float(avg("mae")), float(avg("smeasure")),
        avg("em_curve"), float(avg("em_adaptive")),
    )


class SODScorer:
    """Accumulates F-beta, precision/recall, MAE, S-measure and E-measure over frames."""

    def __init__(self) -> None:
        self._fm = psm.FmeasureV2(metric_handlers={
            "fm": psm.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=BETA2),
            "pre": psm.PrecisionHandler(with_dynamic=True, with_adaptive=False),
            "rec": psm.RecallHandler(with_dynamic=True, with_adaptive=False),
        })
        self._mae, self._sm, self._em = psm.MAE(), psm.Smeasure(), psm.Emeasure()
        self.frames = 0

    def step(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one frame: `pred` in [0, 1] (float) or 0..255 (uint8), `gt` binary or 0/255."""
        _check(pred, gt)
        p = _as_uint8(pred)
        g = np.where(_binary(gt), 255, 0).astype(np.uint8)
        for metric in (self._fm, self._mae, self._sm, self._em):
            metric.step(p, g)
        self.frames += 1

    def summary(self) -> SODSummary:
        if not self.frames:
            raise ValueError("no frames were scored")
        fm = self._fm.get_results()
        em = self._em.get_results()["em"]
        return SODSummary(
            self.frames, np.asarray(fm["fm"]["dynamic"]), float(fm["fm"]["adaptive"]),
            np.asarray(fm["pre"]["dynamic"]), np.asarray(fm["rec"]["dynamic"]),
            float(self._mae.get_results()["mae"]), float(self._sm.get_results()["sm"]),
            np.asarray(em["curve"]), float(em["adp"]),
        )

    def results(self) -> dict[str, float]:
        """Metrics over every frame so far (empty set: an error, not zeros)."""
        return self.summary().scalars()


# ------------------------------------------------------------------ saliency-map metrics


def _zscore(x: np.ndarray) -> np.ndarray | None:
    """None for a constant array (its float std is rounding noise, not 0)."""
    return None if x.max() == x.min() else (x - x.mean()) / x.std()


def cc(sal: np.ndarray, gt: np.ndarray) -> float:
    """Pearson correlation of the map and the mask (0 when either is constant)."""
    _check(sal, gt)
    a, b = _zscore(sal.astype(np.float64)), _zscore(_binary(gt).astype(np.float64))
    return 0.0 if a is None or b is None else float((a * b).mean())


def sim(sal: np.ndarray, gt: np.ndarray) -> float:
    """Histogram intersection of the map (min-max normalised) and the mask, each summing to 1."""
    _check(sal, gt)
    s = sal.astype(np.float64) - sal.min()
    g = _binary(gt).astype(np.float64)
    if s.sum() == 0 or g.sum() == 0:
        return 0.0
    return float(np.minimum(s / s.sum(), g / g.sum()).sum())


def nss(sal: np.ndarray, gt: np.ndarray) -> float:
    """Mean of the z-scored map over the mask's pixels (0 for a constant map)."""
    _check(sal, gt)
    z = _zscore(sal.astype(np.float64))
    return 0.0 if z is None else float(z[_binary(gt)].mean())


def auc_judd(sal: np.ndarray, gt: np.ndarray) -> float:
    """Judd's ROC area: thresholds at the map's values on the positives; the true-positive
    rate is the share of positives at or above each, the false-positive rate the share of
    other pixels at or above it. Tied values count together (a constant map scores 0.5,
    where Judd's code breaks ties with random jitter)."""
    _check(sal, gt)
    pos = _binary(gt).ravel()
    s = sal.astype(np.float64).ravel()
    n_pos, n = int(pos.sum()), s.size
    fix = np.sort(s[pos])
    thresholds = np.unique(fix)[::-1]
    tp_count = n_pos - np.searchsorted(fix, thresholds, side="left")
    above = n - np.searchsorted(np.sort(s), thresholds, side="left")
    tp = np.concatenate([[0.0], tp_count / n_pos, [1.0]])
    fp = np.concatenate([[0.0], (above - tp_count) / (n - n_pos), [1.0]])
    return float(np.trapezoid(tp, fp))


@dataclass
class SaliencyScorer:
    """Per-frame CC, SIM, NSS and AUC-Judd, averaged over the frames where they are defined."""

    values: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in SALIENCY_METRICS})
    undefined: int = 0

    def step(self, sal: np.ndarray, gt: np.ndarray) -> None:
        if not np.isfinite(sal).all():
            raise ValueError("saliency map contains NaN or infinity")
        positives = int(_binary(gt).sum())
        _check(sal, gt)
        if positives in (0, gt.size):
            self.undefined += 1
            return
        for name, fn in zip(SALIENCY_METRICS, (cc, sim, nss, auc_judd)):
            self.values[name].append(fn(sal, gt))

    @property
    def frames(self) -> int:
        return len(self.values["cc"])

    def results(self) -> dict[str, float]:
        if not self.frames:
            raise ValueError("no frame with a non-empty, non-full mask was scored")
        return {**{k: float(np.mean(v)) for k, v in self.values.items()},
                "frames": self.frames, "undefined": self.undefined}

    @staticmethod
    def merged(scorers: Sequence[SaliencyScorer]) -> SaliencyScorer:
        out = SaliencyScorer()
        for s in scorers:
            for k in SALIENCY_METRICS:
                out.values[k].extend(s.values[k])
            out.undefined += s.undefined
        return out


# ------------------------------------------------------------------------- binary masks


def mask_scores(mask: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """IoU, precision, recall and F-beta (beta^2 = 0.3) of a binary mask (0/255 or bool).

    Conventions for empty sets: a frame with neither object nor prediction scores IoU 1;
    precision of an empty prediction is 1 (it claims nothing wrong), recall of an empty
    ground truth is 1.
    """
    _check(mask, gt)
    m, g = _binary(mask), _binary(gt)
    tp = int(np.logical_and(m, g).sum())
    n_m, n_g = int(m.sum()), int(g.sum())
    union = n_m + n_g - tp
    precision = tp / n_m if n_m else 1.0
    recall = tp / n_g if n_g else 1.0
    f = (1 + BETA2) * precision * recall / (BETA2 * precision + recall) if precision + recall else 0.0
    return {"iou": tp / union if union else 1.0, "precision": precision, "recall": recall, "fbeta": f}


@dataclass
class MaskScorer:
    """Per-frame mask scores averaged over frames."""

    values: list[dict[str, float]] = field(default_factory=list)

    def step(self, mask: np.ndarray, gt: np.ndarray) -> None:
        self.values.append(mask_scores(mask, gt))

    @property
    def frames(self) -> int:
        return len(self.values)

    def results(self) -> dict[str, float]:
        if not self.values:
            raise ValueError("no mask was scored")
        return {**{k: float(np.mean([v[k] for v in self.values])) for k in self.values[0]},
                "frames": self.frames}

    @staticmethod
    def merged(scorers: Sequence[MaskScorer]) -> MaskScorer:
        return MaskScorer([v for s in scorers for v in s.values])
