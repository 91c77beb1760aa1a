"""Losses against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from saliency_ros.models import losses

LN2, LN3 = math.log(2.0), math.log(3.0)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values).view(1, 1, 1, -1)


def test_bce_ground_truth() -> None:
    # sigmoid(0) = 0.5 against 1 -> ln 2; sigmoid(ln 3) = 0.75 against 0 -> ln 4.
    got = losses.bce_ground_truth(t(0.0, LN3), t(1.0, 0.0))
    assert got.item() == pytest.approx(1.5 * LN2, rel=1e-6)


def test_soft_iou() -> None:
    # p = 0.5, 0.75 against 1, 0: intersection 0.5, union (0.5 + 1 - 0.5) + 0.75 = 1.75.
    got = losses.soft_iou(t(0.0, LN3), t(1.0, 0.0))
    assert got.item() == pytest.approx(1.0 - 1.5 / 2.75, rel=1e-6)
    # An empty map against an empty target costs nothing, instead of 0 / 0.
    assert losses.soft_iou(t(-30.0, -30.0), t(0.0, 0.0)).item() == pytest.approx(0.0, abs=1e-6)
    both = losses.bce_iou(t(0.0, LN3), t(1.0, 0.0))
    assert both.item() == pytest.approx(1.5 * LN2 + 1.0 - 1.5 / 2.75, rel=1e-6)


def test_structure_loss_weights_the_boundary() -> None:
    # A 1 x 3 target [0, 1, 0], every logit 0 (p = 0.5, BCE ln 2 at each pixel). The 3-pixel
    # box means without padding are 1/2, 1/3, 1/2, so the weights 1 + 5 |mean - target| are
    # 3.5, 13/3, 3.5.
    w = torch.tensor([3.5, 13 / 3, 3.5])
    target = t(0.0, 1.0, 0.0)
    inter = (w[1] * 0.5).item()
    union = (w * torch.tensor([0.5, 1.5, 0.5])).sum().item() - inter
    expected = LN2 + 1.0 - (inter + 1.0) / (union + 1.0)
    got = losses.structure_loss(t(0.0, 0.0, 0.0), target, window=3)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # With a one-pixel window every weight is 1: BCE + soft IoU.
    logits = t(0.3, -1.2, 2.0)
    assert losses.structure_loss(logits, target, window=1).item() == pytest.approx(
        losses.bce_iou(logits, target).item(), rel=1e-6)
    with pytest.raises(ValueError, match="window must be odd"):
        losses.structure_loss(logits, target, window=4)


def test_distillation_bce_detaches_teacher() -> None:
    teacher = t(LN3).requires_grad_()
    student = t(0.0).requires_grad_()
    loss = losses.distillation_bce(student, teacher)
    # BCE(logit 0, target 0.75) = -(0.75 ln .5 + 0.25 ln .5) = ln 2
    assert loss.item() == pytest.approx(LN2, rel=1e-6)
    loss.backward()
    assert teacher.grad is None and student.grad is not None


def test_spatial_distillation_eq3() -> None:
    p = [t(0.0), t(0.0), t(LN3)]
    alpha = 0.7
    # hard: ln2 + ln2 + ln(4/3); soft: P0, P1 against sigmoid(P2) = 0.75 -> ln2 each.
    expected = 2 * LN2 + math.log(4 / 3) + alpha * 2 * LN2
    got = losses.spatial_distillation_loss(p, t(1.0), alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="P0, P1, P2"):
        losses.spatial_distillation_loss(p[:2], t(1.0), alpha)


def test_temporal_distillation_eq6() -> None:
    adjacent = [t(LN3)] * 4
    alpha = 0.7
    # hard: 4 * -ln(0.75); soft against sigmoid(0) = 0.5: -(0.5 ln .75 + 0.5 ln .25) each.
    soft_each = 0.5 * math.log(4 / 3) + 0.5 * math.log(4.0)
    expected = 4 * math.log(4 / 3) + alpha * 4 * soft_each
    got = losses.temporal_distillation_loss(adjacent, t(1.0), t(0.0), alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="P0, P1, P2, P3"):
        losses.temporal_distillation_loss(adjacent[:3], t(1.0), t(0.0), alpha)


def test_normalized_l2_divides_by_pixels_and_averages_batch() -> None:
    pred = torch.zeros(2, 1, 2, 2)
    pred[0, 0, 0, 0] = 1.0
    assert losses.normalized_l2(pred, torch.zeros_like(pred)).item() == pytest.approx(0.125)
    with pytest.raises(ValueError, match="shapes differ"):
        losses.normalized_l2(pred, torch.zeros(2, 1, 4, 1))


def test_student_loss_mixes_soft_and_hard_with_mu() -> None:
    pred = torch.zeros(1, 1, 2, 2)
    pred[0, 0, 0, 0] = 1.0
    teacher, target = torch.zeros_like(pred), torch.ones_like(pred)
    # soft 1/4, hard 3/4
    assert losses.student_loss(pred, teacher, target, mu=0.5).item() == pytest.approx(0.5)
    assert losses.student_loss(pred, teacher, target, mu=1.0).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="mu"):
        losses.student_loss(pred, teacher, target, mu=1.5)
