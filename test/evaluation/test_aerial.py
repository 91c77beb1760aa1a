"""The shipped models on real drone footage with small targets (aerial_dev, evaluation only):
the scores in the model cards are reproduced by the offline evaluation, and the objects
probability map puts more of its mass on the target, and its peak on it more often, than any
baseline."""

from __future__ import annotations

import json

import pytest

from saliency_ros.evaluation.offline import OfflineOptions, evaluate
from test.conftest import REPO, shared_data

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_shipped_models_on_aerial_dev() -> None:
    root = shared_data() / "aerial_dev"
    if not root.is_dir():
        pytest.skip(f"aerial_dev not found at {root}")
    result, _ = evaluate([root], OfflineOptions(REPO / "config" / "drone.yaml", progress=False))
    m = {name: e["overall"] for name, e in result["methods"].items() if "box_nss" in e.get("overall", {})}
    baselines = {name: v for name, v in m.items() if name not in ("sst", "sod")}
    assert set(baselines) == {"spectral_residual", "fine_grained", "binwang_motion", "centre_prior"}
    assert m["sod"]["box_frames"] == 394 and m["sod"]["box_out_of_view"] == 0
    # The cards of the default models carry these very numbers (train all scored the exported
    # files the same way; an INT8 card records its own scores beside its fp32 model's).
    for model, method in (("sod_effl0_256_int8", "sod"), ("skd_sst_128_int8", "sst")):
        card = json.loads((REPO / "models" / f"{model}.json").read_text())
        recorded = card["quantization"]["scores"]["int8"]
        for key in ("pointing_hit_rate", "box_nss"):
            assert recorded[key] == pytest.approx(m[method][key], abs=1e-6), (model, key)
    assert m["sod"]["box_nss"] > max(b["box_nss"] for b in baselines.values())
    assert m["sod"]["box_nss"] >= 2.0  # issue 10's box-NSS mark, met by the objects map since session 6
    # Since session 10 (the SOD net at 224 x 320) its peak falls on the target more often too.
    assert m["sod"]["pointing_hit_rate"] > max(b["pointing_hit_rate"] for b in baselines.values())
    # /saliency (Sst-128) beats the classical maps on box-NSS; the centre prior and FineGrained's
    # hit rate it does not beat yet (README: targets missed).
    assert m["sst"]["box_nss"] > max(m[b]["box_nss"] for b in ("spectral_residual", "fine_grained", "binwang_motion"))
