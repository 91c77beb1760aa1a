"""ONNX export: checker-clean graphs, named inputs, dynamic batch, parity with torch, cards."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.model_card import load_card
from saliency_ros.runtime.preprocess import to_input
from saliency_ros.training.export import OPSET, deployable

CASES = [("skd_sst", 64), ("skd_sst", 32), ("skd_ss", 64), ("skd_st", 64), ("sod_effl0", 256)]
TOL = 1e-4


def _torch_out(model: torch.nn.Module, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return deployable(model).eval()(*(torch.from_numpy(v) for v in feeds.values())).numpy()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}_{c[1]}")
def test_graph_is_valid_with_named_io_and_opset(exported, case) -> None:
    _, result = exported[case]
    proto = onnx.load(str(result.onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert OPSET >= 17
    engine = Engine(result.onnx_path)
    assert [i.name for i in engine.session.get_inputs()] == list(engine.card.input.names)
    assert [o.name for o in engine.session.get_outputs()] == ["saliency"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}_{c[1]}")
@pytest.mark.parametrize("batch", [1, 3])
def test_parity_with_torch_on_random_input_any_batch(exported, case, batch: int) -> None:
    model, result = exported[case]
    engine = Engine(result.onnx_path)
    rng = np.random.default_rng(batch)
    size = case[1]
    feeds = {n: rng.standard_normal((batch, 3, size, size)).astype(np.float32) for n in engine.card.input.names}
    got = engine(**feeds)
    assert got.shape == (batch, 1, size, size)
    assert got.min() >= 0.0 and got.max() <= 1.0
    np.testing.assert_allclose(got, _torch_out(model, feeds), atol=TOL, rtol=0)


@pytest.mark.data
@pytest.mark.parametrize("case", [("skd_sst", 64), ("sod_effl0", 256)], ids=lambda c: c[0])
def test_parity_with_torch_on_real_davis_frames(exported, davis_val, case) -> None:
    import cv2

    model, result = exported[case]
    engine = Engine(result.onnx_path)
    frames = sorted((davis_val / "blackswan" / "frames").glob("*.jpg"))[:4]
    assert len(frames) == 4, f"expected DAVIS frames under {davis_val / 'blackswan'}"
    images = [cv2.imread(str(f)) for f in frames]
    for prev, cur in zip(images[:-1], images[1:]):
        pair = {"current": cur, "previous": prev, "image": cur}
        feeds = {n: to_input(pair[n], engine.card.input) for n in engine.card.input.names}
        np.testing.assert_allclose(engine(**feeds), _torch_out(model, feeds), atol=TOL, rtol=0)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}_{c[1]}")
def test_card_describes_the_file(exported, case) -> None:
    model, result = exported[case]
    card = load_card(result.card_path)  # verifies sha256
    raw = json.loads(result.card_path.read_text())
    assert card.name == case[0] and card.file == result.onnx_path.name
    assert card.input.height == card.input.width == case[1]
    assert not card.trained and "untrained" in raw["training"]["status"]
    assert raw["parameters"] == sum(p.numel() for p in deployable(model).parameters())
    assert raw["flops"] > 0 and raw["flops_input"] == [1, 3, case[1], case[1]]
    assert raw["architecture"]["layers"], "architecture table is empty"
    assert raw["paper"]["id"] and raw["export"]["git_commit"]


def test_sst_card_lists_every_layer_with_widths(exported) -> None:
    _, result = exported[("skd_sst", 64)]
    raw = json.loads(result.card_path.read_text())
    layers = raw["architecture"]["layers"]
    # two 8-layer streams + 5-layer fusion
    assert len(layers) == 21
    assert raw["architecture"]["config"]["widths"] == {"c1": 16, "c2": 32, "c3": 64, "c4": 64, "c5": 64, "c6": 16,
                                                       "dilations": [1, 1, 1, 1]}
    assert layers[-1]["output"] == [1, 64, 64]


def test_sod_export_has_no_encoder(exported) -> None:
    _, result = exported[("sod_effl0", 256)]
    names = {i.name for i in onnx.load(str(result.onnx_path)).graph.initializer}
    assert not any("encoder" in n or "unit3" in n for n in names)


def test_student_exported_at_a_camera_aspect_keeps_its_pixels_and_parity(tmp_path) -> None:
    """`aspect`: a 64 student at 1.75 (16:9 cameras) reads 48 x 84, about its 64 x 64 pixels;
    the card says so, the node's preprocessing follows the card, and ONNX matches torch."""
    import cv2

    from saliency_ros.models import create_model
    from saliency_ros.training.export import export_model

    torch.manual_seed(1)
    model = create_model("skd_sst", input_size=64).eval()
    result = export_model(model, "skd_sst", 64, tmp_path, aspect=1.75)
    engine = Engine(result.onnx_path)
    assert (engine.card.input.height, engine.card.input.width) == (48, 84)
    assert abs(48 * 84 / 64**2 - 1) < 0.02
    card = json.loads(result.card_path.read_text())
    assert card["flops_input"] == [1, 3, 48, 84]
    frame = cv2.resize(np.random.default_rng(0).integers(0, 255, (90, 160, 3), np.uint8), (1280, 720))
    feeds = {n: to_input(frame, engine.card.input) for n in engine.card.input.names}
    assert feeds["current"].shape == (1, 3, 48, 84)
    got = engine(**feeds)
    assert got.shape == (1, 1, 48, 84)
    np.testing.assert_allclose(got, _torch_out(model, feeds), atol=TOL, rtol=0)
    batch = {n: np.repeat(v, 3, axis=0) for n, v in feeds.items()}
    assert engine(**batch).shape == (3, 1, 48, 84)
