"""Validation of torch models through the runtime's own preprocessing and the shared scorer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from saliency_ros.evaluation.metrics import SODScorer
from saliency_ros.runtime import egomotion
from saliency_ros.runtime.model_card import InputSpec
from saliency_ros.runtime.preprocess import to_input
from saliency_ros.sources.layouts import VideoSequence
from saliency_ros.training.data.pairs import read_image

Predict = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@torch.no_grad()
def predict_sequence(
    predict: Predict, seq: VideoSequence, spec: InputSpec, device: torch.device, every: int = 1
) -> list[tuple[int, np.ndarray]]:
    """(frame index, probability map at frame size) for every `every`-th frame.

    Inputs are the frame as `current`/`image` and the frame before it (gap 1) as `previous`
    (ego-motion aligned when the spec says so), exactly what the saliency node feeds; the
    first frame is paired with itself.
    """
    out = []
    previous = previous_gray = None
    motion = None if spec.pair_alignment == "none" else egomotion.MotionConfig(model=spec.pair_alignment)
    for t, path in enumerate(seq.frames):
        img = read_image(path)
        current = to_input(img, spec)
        gray = None if motion is None else egomotion.working_gray(img, motion)
        if t % every == 0:
            prev = previous if previous is not None else current
            if motion is not None and previous is not None:
                prev, _ = egomotion.align_previous(prev, previous_gray, gray, motion)
            feeds = {"current": current, "image": current, "previous": prev}
            tensors = {n: torch.from_numpy(feeds[n]).to(device) for n in spec.names}
            prob = predict(tensors)[0, 0].float().cpu().numpy()
            out.append((t, cv2.resize(prob, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)))
        previous, previous_gray = current, gray
    return out


def evaluate(
    predict: Predict, sequences: list[VideoSequence], spec: InputSpec, device: torch.device,
    every: int = 1, desc: str = "validate",
) -> dict[str, float]:
    """SOD metrics of a model over sequences (F-beta, MAE, S-, E-measure)."""
    scorer = SODScorer()
    for seq in tqdm(sequences, desc=desc, leave=False):
        for t, prob in predict_sequence(predict, seq, spec, device, every):
            gt = cv2.imread(str(seq.masks[t]), cv2.IMREAD_GRAYSCALE)
            scorer.step(prob, gt)
    return scorer.results()


def preview(
    predictors: dict[str, tuple[Predict, InputSpec]], sequences: list[VideoSequence],
    device: torch.device, out: Path, count: int = 4,
) -> None:
    """PNG grid: frame, ground truth and each model's map on the middle frame of a few clips."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = sequences[:: max(len(sequences) // count, 1)][:count]
    cols = 2 + len(predictors)
    fig, axes = plt.subplots(len(picks), cols, figsize=(2.6 * cols, 1.7 * len(picks)), squeeze=False)
    titles = ["frame", "ground truth", *predictors]
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=7)
    for row, seq in zip(axes, picks):
        mid = len(seq) // 2
        sub = VideoSequence(seq.name, seq.frames[mid - 1 : mid + 1], seq.masks[mid - 1 : mid + 1])
        img = read_image(sub.frames[-1])
        row[0].imshow(img[:, :, ::-1])
        row[0].set_ylabel(seq.name, fontsize=7)
        row[1].imshow(cv2.imread(str(sub.masks[-1]), cv2.IMREAD_GRAYSCALE), cmap="gray")
        for ax, (predict, spec) in zip(row[2:], predictors.values()):
            ax.imshow(predict_sequence(predict, sub, spec, device)[-1][1], cmap="inferno", vmin=0, vmax=1)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
