"""The shipped models on real drone footage with small targets (aerial_dev, evaluation only):
the scores in the model cards are reproduced by the offline evaluation, both the objects
probability map and /saliency put more of their mass on the target, and their peak on it more
often, than any baseline, and the motion prior raises both scores of /saliency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from saliency_ros.evaluation.offline import OBJECTS_DEFAULTS, SALIENCY_DEFAULTS, OfflineOptions, evaluate
from test.conftest import REPO, shared_data

pytestmark = [pytest.mark.data, pytest.mark.slow]


def _box_scores(root: Path, params: Path) -> dict[str, dict[str, Any]]:
    result, _ = evaluate([root], OfflineOptions(params, progress=False))
    return {name: e["overall"] for name, e in result["methods"].items() if "box_nss" in e.get("overall", {})}


def test_shipped_models_on_aerial_dev(tmp_path: Path) -> None:
    root = shared_data() / "aerial_dev"
    if not root.is_dir():
        pytest.skip(f"aerial_dev not found at {root}")
    m = _box_scores(root, REPO / "config" / "drone.yaml")
    params = yaml.safe_load((REPO / "config" / "drone.yaml").read_text())
    params["/**/saliency_node"]["ros__parameters"]["motion_prior"] = 0.0
    (tmp_path / "no_prior.yaml").write_text(yaml.safe_dump(params))
    model_only = _box_scores(root, tmp_path / "no_prior.yaml")
    baselines = {name: v for name, v in m.items() if name not in ("sst", "sod")}
    assert set(baselines) == {"spectral_residual", "fine_grained", "binwang_motion", "centre_prior"}
    assert m["sod"]["box_frames"] == 394 and m["sod"]["box_out_of_view"] == 0
    # The cards of the default models carry these very numbers (train all scored the exported
    # files the same way, /saliency's without the node's motion prior; an INT8 card records its
    # own scores beside its fp32 model's).
    for defaults, method, scores in ((OBJECTS_DEFAULTS, "sod", m), (SALIENCY_DEFAULTS, "sst", model_only)):
        model = defaults["model"]
        card = json.loads((REPO / "models" / model).with_suffix(".json").read_text())
        recorded = card["quantization"]["scores"]["int8"]
        for key in ("pointing_hit_rate", "box_nss"):
            assert recorded[key] == pytest.approx(scores[method][key], abs=1e-6), (model, key)
    assert m["sod"]["box_nss"] > max(b["box_nss"] for b in baselines.values())
    assert m["sod"]["box_nss"] >= 2.0  # issue 10's box-NSS mark, met by the objects map since session 6
    # Since session 10 (the SOD net at 224 x 320) its peak falls on the target more often too.
    assert m["sod"]["pointing_hit_rate"] > max(b["pointing_hit_rate"] for b in baselines.values())
    # Since session 13 /saliency is the SOD net at 128 x 256 (INT8): above every baseline on
    # both scores and at issue 10's box-NSS mark; its hit rate (0.29 with the motion prior of
    # session 14, 0.25 without, for the session-31 soup) is below the 0.40 mark. The prior
    # raises box-NSS by 0.27 and the hit rate by 16 of 394 frames for this net (by 5 frames for
    # the session-28 soup, 23 for the session-17 net), so the hit rate is held to not falling.
    assert m["sst"]["box_nss"] > model_only["sst"]["box_nss"] + 0.1
    assert m["sst"]["pointing_hit_rate"] > model_only["sst"]["pointing_hit_rate"]
    assert m["sst"]["box_nss"] > max(b["box_nss"] for b in baselines.values())
    assert m["sst"]["box_nss"] >= 2.0
    assert m["sst"]["pointing_hit_rate"] > max(b["pointing_hit_rate"] for b in baselines.values())
