"""Scores and timings of every method, per sequence and overall, in one result dictionary.

Offline evaluation (maps computed here) and live replay (maps received over DDS) feed the
same scoreboard, so their reports have the same shape and can be compared line by line.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import cv2
import numpy as np

from saliency_ros.evaluation.box_metrics import Box, BoxScorer
from saliency_ros.evaluation.metrics import (MaskScorer, SaliencyScorer, SODScorer, SODSummary,
                                             merge)

# What a method outputs decides how it is scored.
KINDS = ("saliency", "objects", "mask", "baseline")


def fit_to(pred: np.ndarray, gt: np.ndarray, nearest: bool = False) -> np.ndarray:
    """`pred` at the ground truth's size (metrics are computed at mask resolution)."""
    if pred.shape[:2] == gt.shape[:2]:
        return pred
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=interp)


class Scoreboard:
    """Accumulates, per method and sequence: SOD metrics and saliency metrics for maps against
    masks, pointing game and box-NSS for maps against target boxes, mask metrics for binary
    masks, and per-frame latencies."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}
        self._sod: dict[str, dict[str, SODScorer]] = defaultdict(dict)
        self._sal: dict[str, dict[str, SaliencyScorer]] = defaultdict(dict)
        self._mask: dict[str, dict[str, MaskScorer]] = defaultdict(dict)
        self._box: dict[str, dict[str, BoxScorer]] = defaultdict(dict)
        self.latency_ms: dict[str, list[float]] = defaultdict(list)
        self.sequence_frames: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    def _register(self, method: str, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if self.kinds.setdefault(method, kind) != kind:
            raise ValueError(f"method {method!r} was registered as {self.kinds[method]!r}, not {kind!r}")

    def frame(self, sequence: str) -> None:
        """Count one input frame of `sequence` (scored or not)."""
        self.sequence_frames[sequence] += 1

    def score_map(self, method: str, kind: str, sequence: str, pred: np.ndarray, gt: np.ndarray) -> None:
        """A continuous map in [0, 1]: SOD metrics and saliency-map metrics."""
        self._register(method, kind)
        pred = fit_to(pred, gt)
        self._sod[method].setdefault(sequence, SODScorer()).step(pred, gt)
        self._sal[method].setdefault(sequence, SaliencyScorer()).step(pred, gt)

    def score_box(self, method: str, kind: str, sequence: str, pred: np.ndarray, box: Box,
                  frame_shape: tuple[int, ...]) -> None:
        """A continuous map against the target box (frame pixels); NaN box: out of view."""
        self._register(method, kind)
        h, w = frame_shape[:2]
        if pred.shape[:2] != (h, w):
            pred = cv2.resize(pred, (w, h), interpolation=cv2.INTER_LINEAR)
        self._box[method].setdefault(sequence, BoxScorer()).step(pred, box)

    def score_mask(self, method: str, sequence: str, mask: np.ndarray, gt: np.ndarray) -> None:
        self._register(method, "mask")
        self._mask[method].setdefault(sequence, MaskScorer()).step(fit_to(mask, gt, nearest=True), gt)

    def time(self, method: str, ms: float) -> None:
        self.latency_ms[method].append(ms)

    def sod_summaries(self) -> dict[str, SODSummary]:
        """Overall SOD summary (with the PR curve) of each scored map method."""
        return {m: merge([s.summary() for s in seqs.values()]) for m, seqs in self._sod.items()}

    def results(self) -> dict[str, Any]:
        """JSON-ready: per method, overall and per-sequence metrics and latency statistics."""
        methods: dict[str, Any] = {}
        for method, kind in self.kinds.items():
            entry: dict[str, Any] = {"kind": kind, "overall": {}, "sequences": {}}
            if method in self._sod:
                seqs = self._sod[method]
                entry["overall"].update(merge([s.summary() for s in seqs.values()]).scalars())
                sal_all = SaliencyScorer.merged(list(self._sal[method].values()))
                if sal_all.frames:
                    entry["overall"].update(_prefixed(sal_all.results(), "saliency_"))
                for name, scorer in seqs.items():
                    row = scorer.results()
                    if self._sal[method][name].frames:
                        row.update(_prefixed(self._sal[method][name].results(), "saliency_"))
                    entry["sequences"][name] = row
            if method in self._box:
                entry["overall"].update(BoxScorer.merged(list(self._box[method].values())).results())
                for name, scorer in self._box[method].items():
                    entry["sequences"].setdefault(name, {}).update(scorer.results())
            if method in self._mask:
                entry["overall"].update(MaskScorer.merged(list(self._mask[method].values())).results())
                for name, scorer in self._mask[method].items():
                    entry["sequences"][name] = scorer.results()
            lat = self.latency_ms.get(method)
            if lat:
                entry["latency_ms"] = latency_stats(lat)
            methods[method] = entry
        for method, lat in self.latency_ms.items():  # timed but unscored (no ground truth)
            methods.setdefault(method, {"kind": "timing", "latency_ms": latency_stats(lat)})
        return {"methods": methods, "sequence_frames": dict(self.sequence_frames),
                "skipped_frames": dict(self.skipped)}


def _prefixed(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Saliency metrics keep their names; their frame counts get a prefix (they differ from
    the SOD frame count where masks are empty)."""
    return {(prefix + k if k in ("frames", "undefined") else k): v for k, v in d.items()}


def latency_stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    return {"calls": int(a.size), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "mean": float(a.mean()), "fps": float(1000.0 / a.mean())}
