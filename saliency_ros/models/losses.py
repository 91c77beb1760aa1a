"""The papers' losses as pure functions of tensors (no state, no modules).

SOD paper (000): Lg (BCE against ground truth), Ld (BCE against a detached teacher),
spatial distillation Ls (eq. 3) and temporal distillation Lt (eq. 6). SKD paper (001): the
normalized L2 of eq. 3-4 and the student loss mu * Lsoft + (1 - mu) * Lhard of eq. 1-2.
Beside Lg, two ground-truth losses from the SOD literature that score the map as a region,
not pixel by pixel: BCE + soft IoU (BASNet, Qin et al. 2019) and F3Net's structure loss (Wei
et al. 2020: both terms weighted up near the object's boundary).

BCE terms are means over pixels and batch; SOD networks hand in logits (BCE-with-logits is
numerically stable), SKD students hand in probabilities (their L2 is on the saliency map).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def bce_ground_truth(logits: Tensor, target: Tensor) -> Tensor:
    """Lg: binary cross-entropy of logits against a ground-truth map in [0, 1]."""
    return F.binary_cross_entropy_with_logits(logits, target)


def soft_iou(logits: Tensor, target: Tensor) -> Tensor:
    """1 - soft IoU of the probability map and the target per map, averaged over the batch.

    BCE weighs every pixel alike, so a small object's pixels count little against the
    background's; IoU is relative to the object's own area. +1 in both terms keeps an empty
    target and an empty map at loss 0 instead of 0 / 0.
    """
    p = torch.sigmoid(logits)
    inter = (p * target).flatten(1).sum(dim=1)
    union = (p + target - p * target).flatten(1).sum(dim=1)
    return (1.0 - (inter + 1.0) / (union + 1.0)).mean()


def bce_iou(logits: Tensor, target: Tensor) -> Tensor:
    """Lg + soft IoU (BASNet's pixel and map terms, without its SSIM)."""
    return bce_ground_truth(logits, target) + soft_iou(logits, target)


def structure_loss(logits: Tensor, target: Tensor, window: int = 31, boundary_gain: float = 5.0) -> Tensor:
    """F3Net's structure loss: BCE and soft IoU, each pixel weighted by 1 + gain * |local mean of
    the target - target| (a `window`-pixel box), so pixels near the object's boundary, where the
    maps blur, count up to 1 + gain times more. Weighted means per map, averaged over the batch."""
    if window % 2 != 1:
        raise ValueError(f"window must be odd (centred box), got {window}")
    weight = 1.0 + boundary_gain * (F.avg_pool2d(target, window, stride=1, padding=window // 2,
                                                 count_include_pad=False) - target).abs()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    wbce = (weight * bce).flatten(1).sum(dim=1) / weight.flatten(1).sum(dim=1)
    p = torch.sigmoid(logits)
    inter = (weight * p * target).flatten(1).sum(dim=1)
    union = (weight * (p + target)).flatten(1).sum(dim=1) - inter
    wiou = 1.0 - (inter + 1.0) / (union + 1.0)
    return (wbce + wiou).mean()


def distillation_bce(logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Ld: BCE of logits against the teacher's probabilities; no gradient reaches the teacher."""
    return F.binary_cross_entropy_with_logits(logits, torch.sigmoid(teacher_logits).detach())


def spatial_distillation_loss(logits: Sequence[Tensor], target: Tensor, alpha: float) -> Tensor:
    """Ls (eq. 3): sum_{i=0..2} Lg(P_i, G) + alpha * sum_{i=0..1} Ld(P_i, P_2).

    `logits` are [P0, P1, P2] of one frame; P2 teaches the earlier units.
    """
    if len(logits) != 3:
        raise ValueError(f"spatial distillation takes [P0, P1, P2], got {len(logits)} maps")
    hard = sum(bce_ground_truth(p, target) for p in logits)
    soft = sum(distillation_bce(p, logits[2]) for p in logits[:2])
    return hard + alpha * soft


def temporal_distillation_loss(
    adjacent_logits: Sequence[Tensor], adjacent_target: Tensor, frame_p2: Tensor, alpha: float
) -> Tensor:
    """Lt (eq. 6): sum_{i=0..3} Lg(P^{t+t0}_i, G^{t+t0}) + alpha * sum_{i=0..3} Ld(P^{t+t0}_i, P^t_2).

    `adjacent_logits` are [P0, P1, P2, P3] of frame t+t0 (P3 from the inter-frame encoder);
    `frame_p2` is P2 of frame t, the teacher.
    """
    if len(adjacent_logits) != 4:
        raise ValueError(
            f"temporal distillation takes [P0, P1, P2, P3], got {len(adjacent_logits)} maps"
        )
    hard = sum(bce_ground_truth(p, adjacent_target) for p in adjacent_logits)
    soft = sum(distillation_bce(p, frame_p2) for p in adjacent_logits)
    return hard + alpha * soft


# The ground-truth losses a single-frame SOD stage (stage 1, the fine-tune) trains with, by the
# name a recipe's `sod.<stage>.loss` gives; "bce" is the paper's Lg.
GROUND_TRUTH_LOSSES = {"bce": bce_ground_truth, "bce_iou": bce_iou, "structure": structure_loss}


def normalized_l2(prediction: Tensor, target: Tensor) -> Tensor:
    """(1 / (w * h)) * ||S - X||_2^2 per map, averaged over the batch (SKD eq. 3-4)."""
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: prediction {prediction.shape}, target {target.shape}")
    h, w = prediction.shape[-2:]
    per_map = (prediction - target).pow(2).flatten(1).sum(dim=1) / (w * h)
    return per_map.mean()


def student_loss(prediction: Tensor, teacher: Tensor, target: Tensor, mu: float) -> Tensor:
    """SKD eq. 1-2: mu * Lsoft(S, R(T)) + (1 - mu) * Lhard(S, R(Y)); the teacher is detached."""
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"mu must lie in [0, 1], got {mu}")
    return mu * normalized_l2(prediction, teacher.detach()) + (1.0 - mu) * normalized_l2(
        prediction, target
    )
