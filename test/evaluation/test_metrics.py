"""SOD metrics: perfect and inverted maps, hand-computed MAE and F-beta, agreement with pysodmetrics."""

from __future__ import annotations

import numpy as np
import py_sod_metrics as psm
import pytest

from saliency_ros.evaluation.metrics import (MaskScorer, SaliencyScorer, SODScorer, auc_judd, cc,
                                             mask_scores, merge, nss, sim)


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


# --------------------------------------------------------------- summaries and merging


def test_merged_sequences_equal_one_scorer_over_all_frames() -> None:
    rng = np.random.default_rng(3)
    gt = np.pad(_gt(), 2)
    whole, parts = SODScorer(), [SODScorer(), SODScorer()]
    for i in range(5):
        pred = (rng.random(gt.shape) * 255).astype(np.uint8)
        whole.step(pred, gt)
        parts[i % 2].step(pred, gt)
    merged = merge([p.summary() for p in parts]).scalars()
    for key, value in whole.results().items():
        assert merged[key] == pytest.approx(value, abs=1e-9), key
    w = whole.summary()
    np.testing.assert_allclose(merge([p.summary() for p in parts]).precision, w.precision, atol=1e-12)


def test_precision_recall_curve_of_a_perfect_map() -> None:
    s = SODScorer()
    s.step(_gt(), _gt())
    summary = s.summary()
    assert summary.precision.shape == summary.recall.shape == (256,)
    assert summary.precision.max() == pytest.approx(1.0) and summary.recall.max() == pytest.approx(1.0)


# ------------------------------------------------------------------ saliency-map metrics


def test_saliency_metrics_by_hand() -> None:
    gt = np.zeros((2, 4), np.uint8)
    gt[0, :2] = 255  # positives: 2 of 8 pixels
    sal = np.array([[1.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # NSS: mean 0.25, std sqrt(mean(x^2) - 0.0625) = sqrt(0.1875 - 0.0625)
    std = np.sqrt(0.125)
    assert nss(sal, gt) == pytest.approx(((1.0 - 0.25) / std + (0.5 - 0.25) / std) / 2)
    # SIM: map / 2 = [0.5, 0.25, 0.25, 0...]; mask / 2 = [0.5, 0.5, 0, ...] -> 0.5 + 0.25
    assert sim(sal, gt) == pytest.approx(0.75)
    # CC is Pearson's r.
    assert cc(sal, gt) == pytest.approx(np.corrcoef(sal.ravel(), (gt > 0).ravel())[0, 1])
    # AUC-Judd: thresholds 1.0 (tp 1/2, fp 0/6) and 0.5 (tp 2/2, fp 1/6).
    expected = np.trapezoid([0, 0.5, 1.0, 1.0], [0, 0, 1 / 6, 1.0])
    assert auc_judd(sal, gt) == pytest.approx(expected)


def test_saliency_metric_extremes() -> None:
    gt = _gt()
    perfect = gt.astype(np.float64) / 255
    assert auc_judd(perfect, gt) == pytest.approx(1.0)
    assert cc(perfect, gt) == pytest.approx(1.0) and sim(perfect, gt) == pytest.approx(1.0)
    assert cc(1 - perfect, gt) == pytest.approx(-1.0)
    flat = np.full(gt.shape, 0.3)
    assert auc_judd(flat, gt) == pytest.approx(0.5)  # ties: chance, not a negative area
    assert nss(flat, gt) == 0.0 and cc(flat, gt) == 0.0


def test_saliency_scorer_skips_frames_without_positives() -> None:
    s = SaliencyScorer()
    s.step(np.random.default_rng(0).random((20, 30)), _gt())
    s.step(np.zeros((20, 30)), np.zeros((20, 30), np.uint8))
    r = s.results()
    assert r["frames"] == 1 and r["undefined"] == 1
    with pytest.raises(ValueError, match="no frame"):
        SaliencyScorer().results()


def test_mask_scores_by_hand() -> None:
    gt = _gt()  # 100 object pixels
    mask = np.zeros_like(gt)
    mask[5:15, 10:25] = 255  # 150 predicted, 100 of them right
    r = mask_scores(mask, gt)
    assert r["iou"] == pytest.approx(100 / 150) and r["precision"] == pytest.approx(100 / 150)
    assert r["recall"] == 1.0
    p = 100 / 150
    assert r["fbeta"] == pytest.approx(1.3 * p / (0.3 * p + 1.0))
    empty = mask_scores(np.zeros_like(gt), np.zeros_like(gt))
    assert empty["iou"] == 1.0 and empty["fbeta"] == 1.0
    s = MaskScorer()
    s.step(mask, gt)
    s.step(gt, gt)
    assert s.results()["iou"] == pytest.approx((100 / 150 + 1) / 2)
