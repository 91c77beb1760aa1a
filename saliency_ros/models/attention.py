"""Mutual attention between two frames' high-level features (SOD paper, eq. 5).

Training only: the inter-frame encoder teaches the single-frame network temporal consistency
and is dropped from the exported model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def mutual_attention(h_t: Tensor, h_adj: Tensor) -> Tensor:
    """Features of the adjacent frame re-weighted by their affinity to frame t.

    With H^t, H^{t+t0} as c x n matrices (n = h * w):
    A = softmax(H^t^T H^{t+t0} / sqrt(c)) (n x n, softmax over the last axis), and the result
    is H^{t+t0} A reshaped back to c x h x w.
    """
    if h_t.shape != h_adj.shape:
        raise ValueError(f"mutual attention needs equal shapes, got {h_t.shape} and {h_adj.shape}")
    b, c, h, w = h_t.shape
    q = h_t.flatten(2)  # b x c x n
    k = h_adj.flatten(2)  # b x c x n
    affinity = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(c), dim=-1)  # b x n x n
    return (k @ affinity).view(b, c, h, w)


class InterFrameEncoder(nn.Module):
    """O = conv(Cat(mutual_attention(H^t, H^{t+t0}), H^{t+t0}))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.PReLU(channels),
        )

    def forward(self, h_t: Tensor, h_adj: Tensor) -> Tensor:
        return self.fuse(torch.cat([mutual_attention(h_t, h_adj), h_adj], dim=1))
