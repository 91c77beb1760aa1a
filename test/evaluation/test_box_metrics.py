"""Pointing game and box-NSS against hand-computed values: hit, miss, ties, out of view."""

from __future__ import annotations

import math

import numpy as np
import pytest

from saliency_ros.evaluation.box_metrics import BoxScorer, box_nss, box_visible, pointing_hit

NAN_BOX = (math.nan,) * 4


def _map_with_peak(h: int = 36, w: int = 64, at: tuple[int, int] = (10, 20)) -> np.ndarray:
    m = np.zeros((h, w), np.float32)
    m[at] = 1.0
    return m


def test_hit_inside_the_box_and_within_the_margin() -> None:
    sal = _map_with_peak(at=(10, 20))  # pixel centre (20.5, 10.5)
    assert pointing_hit(sal, (18.0, 8.0, 4.0, 4.0), margin=0)
    # Box right of the peak by 5 px: a miss without margin, a hit with the 8 px margin.
    assert not pointing_hit(sal, (25.5, 8.0, 4.0, 4.0), margin=0)
    assert pointing_hit(sal, (25.5, 8.0, 4.0, 4.0), margin=8)
    assert not pointing_hit(sal, (40.0, 20.0, 4.0, 4.0), margin=8)


def test_ties_at_the_maximum_score_the_share_inside() -> None:
    flat = np.full((36, 64), 0.3, np.float32)
    # A constant map is a blind guess: it scores the box's share of the frame (4 x 4 pixels).
    assert pointing_hit(flat, (10, 10, 4, 4), margin=0) == pytest.approx(16 / (36 * 64))
    two = _map_with_peak(at=(10, 20))
    two[30, 60] = 1.0
    assert pointing_hit(two, (18, 8, 4, 4), margin=0) == 0.5
    assert pointing_hit(two, (0, 0, 64, 36), margin=0) == 1.0


def test_box_nss_by_hand() -> None:
    # 4 x 4 map: one pixel 1.0 (inside the box), the rest 0: mean 1/16, std sqrt(15)/16.
    sal = np.zeros((4, 4), np.float32)
    sal[1, 1] = 1.0
    z_peak = (1 - 1 / 16) / (math.sqrt(15) / 16)
    z_rest = (0 - 1 / 16) / (math.sqrt(15) / 16)
    assert box_nss(sal, (1.0, 1.0, 1.0, 1.0)) == pytest.approx(z_peak)
    # A 2 x 2 box over the peak and three zeros.
    assert box_nss(sal, (0.0, 0.0, 2.0, 2.0)) == pytest.approx((z_peak + 3 * z_rest) / 4)
    assert box_nss(np.ones((4, 4)), (0.0, 0.0, 2.0, 2.0)) == 0.0
    # A sub-pixel box (a distant target) reads the pixel holding its centre.
    assert box_nss(sal, (1.4, 1.4, 0.2, 0.2)) == pytest.approx(z_peak)


def test_scorer_skips_and_counts_out_of_view_frames() -> None:
    scorer = BoxScorer(margin=0)
    sal = _map_with_peak(at=(10, 20))
    scorer.step(sal, (18.0, 8.0, 4.0, 4.0))  # hit
    scorer.step(sal, (50.0, 30.0, 4.0, 4.0))  # miss
    scorer.step(sal, NAN_BOX)  # out of view
    r = scorer.results()
    assert r["pointing_hit_rate"] == 0.5 and r["box_frames"] == 2 and r["box_out_of_view"] == 1
    assert r["box_nss"] == pytest.approx((box_nss(sal, (18.0, 8.0, 4.0, 4.0)) + box_nss(sal, (50.0, 30.0, 4.0, 4.0))) / 2)
    merged = BoxScorer.merged([scorer, scorer])
    assert merged.results()["box_frames"] == 4 and merged.out_of_view == 2
    assert not box_visible(NAN_BOX) and not box_visible((1, 1, 0, 3)) and box_visible((1, 1, 1, 1))
    with pytest.raises(ValueError, match="no frame"):
        BoxScorer().results()
    with pytest.raises(ValueError, match="NaN"):
        pointing_hit(np.full((4, 4), np.nan), (0, 0, 1, 1))
