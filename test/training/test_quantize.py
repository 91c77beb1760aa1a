"""INT8 export: a quantized model is a drop-in for its fp32 model (same inputs, output, card
checks) and scores like it on real DAVIS frames; the shipped INT8 models say what they are."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from saliency_ros.evaluation.metrics import SODScorer
from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.model_card import load_card, sha256_file
from saliency_ros.runtime.pipelines import SaliencyPipeline
from saliency_ros.sources.layouts import discover
from saliency_ros.training.pipeline import INT8_TOLERANCE, int8_qualifies
from saliency_ros.training.quantize import calibration_pairs, quantize_model
from test.conftest import REPO, shared_data

pytestmark = [pytest.mark.slow, pytest.mark.data]


@pytest.fixture(scope="module")
def davis() -> tuple[list, list]:
    root = shared_data() / "davis2016"
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        pytest.skip(f"DAVIS-2016 not found at {root}")
    return discover(root / "train"), discover(root / "val")


def test_int8_sst_scores_like_fp32_on_real_davis_frames(davis, tmp_path: Path) -> None:
    train, val = davis
    fp32_path = REPO / "models" / "skd_sst_64.onnx"
    q = quantize_model(fp32_path, calibration_pairs(train, 32, 0), tmp_path, {"data": "davis2016/train"})
    card = load_card(q.with_suffix(".json"))  # schema and checksum hold
    assert card.input == load_card(fp32_path.with_suffix(".json")).input
    assert json.loads(q.with_suffix(".json").read_text())["quantization"]["from"]["file"] == fp32_path.name
    fp32, int8 = SaliencyPipeline(Engine(fp32_path)), SaliencyPipeline(Engine(q))
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(q)).graph.node)
    f_fp32, f_int8, diffs = SODScorer(), SODScorer(), []
    for seq in val:
        for i in range(1, len(seq), 12):  # 64 frames over the 12 clips
            cur, prev = cv2.imread(str(seq.frames[i])), cv2.imread(str(seq.frames[i - 1]))
            gt = cv2.imread(str(seq.masks[i]), cv2.IMREAD_GRAYSCALE)
            a, b = fp32(cur, prev), int8(cur, prev)
            diffs.append(float(np.abs(a - b).mean()))
            f_fp32.step(a, gt)
            f_int8.step(b, gt)
    gap = abs(f_fp32.results()["fbeta_max"] - f_int8.results()["fbeta_max"])
    assert gap <= INT8_TOLERANCE["fbeta_max"], gap
    assert np.mean(diffs) < 0.01, np.mean(diffs)


def test_shipped_int8_models_are_within_tolerance_and_say_so() -> None:
    shipped = sorted((REPO / "models").glob("*_int8.onnx"))
    for q in shipped:
        card = json.loads(q.with_suffix(".json").read_text())
        info = card["quantization"]
        fp32 = REPO / "models" / info["from"]["file"]
        if "reshaped" in card["training"] and not fp32.is_file():
            # The SOD net's /saliency copy: its fp32 weights ship as the file it was reshaped
            # from (models/ stays under 30 MB), at that file's shape.
            source = card["training"]["reshaped"]["from"]["sha256"]
            assert any(sha256_file(p) == source for p in (REPO / "models").glob("sod_*.onnx")), q.name
        else:
            assert fp32.is_file(), "fp32 stays available beside it"
        scores = info["scores"]
        assert int8_qualifies(scores["fp32"], scores["int8"]), q.name
        Engine(q)  # loads, checksum and graph agree with the card


def test_the_int8_rule_refuses_losses_not_gains() -> None:
    fp32 = {"fbeta_max": 0.80, "pointing_hit_rate": 0.20, "box_nss": 2.29}
    assert int8_qualifies(fp32, {"fbeta_max": 0.795, "pointing_hit_rate": 0.215, "box_nss": 2.44})
    assert int8_qualifies(fp32, {"fbeta_max": 0.791, "pointing_hit_rate": 0.181, "box_nss": 2.271})  # just inside
    assert not int8_qualifies(fp32, {"fbeta_max": 0.785, "pointing_hit_rate": 0.20, "box_nss": 2.29})
    assert not int8_qualifies(fp32, {"fbeta_max": 0.80, "pointing_hit_rate": 0.20, "box_nss": 2.26})
    assert int8_qualifies({"fbeta_max": 0.40}, {"fbeta_max": 0.395})  # Sst-64: no box scores


def test_float_input_convs_keep_the_frame_reading_convolutions_float(tmp_path: Path) -> None:
    from saliency_ros.sources.synthetic import SyntheticDroneScene  # generated frames: no data needed
    from saliency_ros.training.export import export_untrained
    from saliency_ros.training.quantize import input_convs

    fp32_path = export_untrained("skd_sst", 32, tmp_path / "fp32").onnx_path
    readers = input_convs(fp32_path)
    assert len(readers) == 2  # Ss's first convolution on `current`, St's on the 6-channel pair
    scene = SyntheticDroneScene(64, 48, seed=0)
    pairs = [(scene.frame(i)[0], scene.frame(i - 1)[0]) for i in range(1, 5)]
    q = quantize_model(fp32_path, pairs, tmp_path, {"data": "generated"}, float_input_convs=True)
    graph = onnx.load(str(q)).graph
    made_by = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    quantized = {n.name for n in convs if made_by.get(n.input[1]) is not None
                 and made_by[n.input[1]].op_type == "DequantizeLinear"}
    assert quantized and not quantized & set(readers)  # every other convolution is INT8
    assert set(readers) <= {n.name for n in convs}
    assert "float: " in json.loads(q.with_suffix(".json").read_text())["quantization"]["what"]
    load_card(q.with_suffix(".json"))
