"""SOD metrics: perfect and inverted maps, hand-computed MAE and F-beta, agreement with pysodmetrics."""

from __future__ import annotations

import numpy as np
import py_sod_metrics as psm
import pytest

from saliency_ros.evaluation.metrics import SODScorer


def _gt() -> np.ndarray:
    gt = np.zeros((20, 30), np.uint8)
    gt[5:15, 10:20] = 255
    return gt


def test_perfect_prediction_scores_one_and_zero_error() -> None:
    s = SODScorer()
    s.step(_gt().astype(np.float32) / 255, _gt())
    r = s.results()
    assert r["fbeta_max"] == pytest.approx(1.0) and r["mae"] == 0.0
    assert r["smeasure"] == pytest.approx(1.0) and r["frames"] == 1


def test_hand_computed_mae_and_fbeta() -> None:
    gt = _gt()
    pred = np.zeros(gt.shape, np.float32)
    pred[5:15, 10:15] = 1.0  # half the object, no false positives
    s = SODScorer()
    s.step(pred, gt)
    r = s.results()
    # MAE: 50 wrong pixels of 600.
    assert r["mae"] == pytest.approx(50 / 600, abs=1e-6)
    # precision 1, recall 0.5: F = 1.3 * 0.5 / (0.3 + 0.5)
    assert r["fbeta_max"] == pytest.approx(1.3 * 0.5 / 0.8, abs=1e-3)


def test_agrees_with_pysodmetrics_directly() -> None:
    rng = np.random.default_rng(0)
    s, mae, sm = SODScorer(), psm.MAE(), psm.Smeasure()
    gt = np.pad(_gt(), ((2, 2), (1, 1)))
    for _ in range(3):
        pred = (rng.random(gt.shape) * 255).astype(np.uint8)
        s.step(pred, gt)
        mae.step(pred, gt)
        sm.step(pred, gt)
    r = s.results()
    assert r["mae"] == pytest.approx(float(mae.get_results()["mae"]))
    assert r["smeasure"] == pytest.approx(float(sm.get_results()["sm"]))


def test_bad_input() -> None:
    s = SODScorer()
    with pytest.raises(ValueError, match="no frames"):
        s.results()
    with pytest.raises(ValueError, match="differ in size"):
        s.step(np.zeros((2, 2)), np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        s.step(np.full((2, 2), np.nan), np.zeros((2, 2), np.uint8))
