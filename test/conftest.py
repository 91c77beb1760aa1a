"""Shared fixtures: where the real data lives, and small exports made by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from saliency_ros.sources.synthetic import SyntheticDroneScene

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """../shared/data beside the checkout, or $SALIENCY_ROS_DATA."""
    return Path(os.environ.get("SALIENCY_ROS_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def davis_val() -> Path:
    """The DAVIS-2016 val split; tests that need it skip with the reason when it is absent."""
    root = shared_data() / "davis2016" / "val"
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set SALIENCY_ROS_DATA to ../shared/data)")
    return root


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """Export once per session: {(name, size): (torch model, ExportResult)}."""
    torch = pytest.importorskip("torch", reason="export tests need the training extra (torch)")
    from saliency_ros.models import create_model
    from saliency_ros.training.export import export_model

    out = tmp_path_factory.mktemp("onnx")
    results = {}
    for name, size in (("skd_sst", 64), ("skd_sst", 32), ("skd_ss", 64), ("skd_st", 64), ("sod_effl0", 256)):
        torch.manual_seed(1)
        cfg = {"input_size": size} if name.startswith("skd") else {}
        model = create_model(name, **cfg).eval()
        results[(name, size)] = (model, export_model(model, name, size, out))
    return results


def write_video(path: Path, fps: float, count: int, size: tuple[int, int] = (64, 48)) -> Path:
    """An MJPG AVI of `count` flat frames whose grey level steps by 30 per frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(count):
        writer.write(np.full((size[1], size[0], 3), i * 30, np.uint8))
    writer.release()
    return path


def write_dataset(root: Path, sequences: dict[str, int], width: int = 160, height: int = 96) -> Path:
    """<root>/<seq>/frames/*.png and masks/*.png; PNG so that a round trip is lossless."""
    for i, (name, count) in enumerate(sequences.items()):
        (root / name / "frames").mkdir(parents=True)
        (root / name / "masks").mkdir(parents=True)
        scene = SyntheticDroneScene(width, height, targets=2, seed=i, target_scale=(0.25, 0.35))
        for k, (frame, mask) in enumerate(scene.frames(count)):
            cv2.imwrite(str(root / name / "frames" / f"{k:05d}.png"), frame)
            cv2.imwrite(str(root / name / "masks" / f"{k:05d}.png"), mask)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "ds", {"alpha": 6, "beta": 5})


@pytest.fixture(scope="session")
def tiny_bag(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both sequences in one MCAP bag."""
    from saliency_ros.evaluation.bags import build_bags, clips_from

    (bag,) = build_bags(clips_from(tiny_dataset), tmp_path_factory.mktemp("bags") / "tiny", single=True)
    return bag
