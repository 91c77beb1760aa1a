"""Scores of a saliency map against one target box per frame: what a tracker on a drone needs.

- Pointing game: the map's maximum lies inside the target box grown by `margin` pixels on each
  side (8 px at 640x360, as for `../shared/data/aerial_dev`). When several pixels tie at the
  maximum, the frame scores the share of them inside: the expected hit of an argmax with
  random tie-breaking. (`np.argmax` takes the first in raster order, which rewards a map for
  where its ties happen to lie: OpenCV FineGrained ties 2-3 pixels on most aerial frames, and
  scores 0.25 that way on aerial_dev against 0.13 here.) A constant map scores the box's share
  of the frame, as a blind guess would.
- Box-NSS: the mean of the z-scored map over the pixels inside the box (how many standard
  deviations above the frame's average the target stands); 0 for a constant map.

Boxes are (x, y, w, h) in the map's pixel coordinates, floats (sub-pixel ground truth is kept);
pixel (i, j) is inside when its centre (j + 0.5, i + 0.5) is. A box of NaNs means the target is
out of view: the frame is counted in `out_of_view`, never scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

POINTING_MARGIN_PX = 8.0

Box = tuple[float, float, float, float]


def box_visible(box: Box) -> bool:
    return all(math.isfinite(v) for v in box) and box[2] > 0 and box[3] > 0


def _inside(shape: tuple[int, int], box: Box, margin: float) -> np.ndarray:
    """Boolean mask of the pixels whose centres lie in the box grown by `margin`."""
    h, w = shape
    x, y, bw, bh = box
    cols = np.arange(w) + 0.5
    rows = np.arange(h) + 0.5
    in_x = (cols >= x - margin) & (cols <= x + bw + margin)
    in_y = (rows >= y - margin) & (rows <= y + bh + margin)
    return in_y[:, None] & in_x[None, :]


def _inside_or_nearest(shape: tuple[int, int], box: Box) -> np.ndarray:
    """Pixels inside the box; a box smaller than a pixel keeps the pixel holding its centre."""
    inside = _inside(shape, box, 0.0)
    if not inside.any():
        x, y, bw, bh = box
        i = int(np.clip(y + bh / 2, 0, shape[0] - 1))
        j = int(np.clip(x + bw / 2, 0, shape[1] - 1))
        inside[i, j] = True
    return inside


def pointing_hit(sal: np.ndarray, box: Box, margin: float = POINTING_MARGIN_PX) -> float:
    """1 when the map's maximum lies in the box grown by `margin`, 0 when not; with ties at the
    maximum, the share of tied pixels inside."""
    if not np.isfinite(sal).all():
        raise ValueError("saliency map contains NaN or infinity")
    peak = sal == sal.max()
    return float(peak[_inside(sal.shape[:2], box, margin)].sum() / peak.sum())


def box_nss(sal: np.ndarray, box: Box) -> float:
    """Mean z-score of the map inside the box (0 when the map is constant)."""
    s = sal.astype(np.float64)
    if s.max() == s.min():
        return 0.0
    z = (s - s.mean()) / s.std()
    return float(z[_inside_or_nearest(s.shape[:2], box)].mean())


@dataclass
class BoxScorer:
    """Pointing-game hits and box-NSS per frame, over the frames where the target is in view."""

    margin: float = POINTING_MARGIN_PX
    hits: list[float] = field(default_factory=list)
    nss: list[float] = field(default_factory=list)
    out_of_view: int = 0

    def step(self, sal: np.ndarray, box: Box) -> None:
        if not box_visible(box):
            self.out_of_view += 1
            return
        self.hits.append(pointing_hit(sal, box, self.margin))
        self.nss.append(box_nss(sal, box))

    @property
    def frames(self) -> int:
        return len(self.hits)

    def results(self) -> dict[str, float]:
        if not self.frames:
            raise ValueError("no frame with the target in view was scored")
        return {"pointing_hit_rate": float(np.mean(self.hits)), "box_nss": float(np.mean(self.nss)),
                "box_frames": self.frames, "box_out_of_view": self.out_of_view}

    @staticmethod
    def merged(scorers: Sequence[BoxScorer]) -> BoxScorer:
        out = BoxScorer(scorers[0].margin if scorers else POINTING_MARGIN_PX)
        for s in scorers:
            out.hits += s.hits
            out.nss += s.nss
            out.out_of_view += s.out_of_view
        return out
