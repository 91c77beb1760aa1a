"""Shared fixtures: where the real data lives, and small exports made by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
