"""Engine's test-time mirror averaging on the shipped models (the card checks: test_model_card)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.preprocess import to_input
from saliency_ros.sources.synthetic import SyntheticDroneScene

MODELS = Path(__file__).resolve().parents[2] / "models"


def _frames(engine: Engine, n: int) -> list[np.ndarray]:
    scene = SyntheticDroneScene(640, 360, seed=5)
    return [to_input(scene.frame(i)[0], engine.card.input) for i in range(n)]


@pytest.mark.parametrize("name", ["sod_effl0_256.onnx", "sod_effl0_256_128x256_int8.onnx"])
def test_mirror_average_is_the_mean_of_the_map_and_the_mirrored_map(name: str) -> None:
    plain, mirrored = Engine(MODELS / name), Engine(MODELS / name, mirror=True)
    image = np.concatenate(_frames(plain, 2))  # a batch of two: each frame averaged with its own mirror image
    expected = 0.5 * (plain(image=image) + plain(image=np.ascontiguousarray(image[..., ::-1]))[..., ::-1])
    out = mirrored(image=image)
    assert out.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert 0.0 <= out.min() <= out.max() <= 1.0
    assert mirrored.last_run_ms > 0


def test_mirror_averaged_map_of_a_symmetric_scene_is_symmetric() -> None:
    """What the averaging buys: the map no longer depends on which way the scene is mirrored.
    The plain net's map of the same symmetric input is measurably lopsided, so the check can fail."""
    plain, mirrored = (Engine(MODELS / "sod_effl0_256.onnx", mirror=m) for m in (False, True))
    (image,) = _frames(plain, 1)
    half = image[..., : image.shape[-1] // 2]
    symmetric = np.ascontiguousarray(np.concatenate([half, half[..., ::-1]], axis=-1))
    lopsided = plain(image=symmetric)[0, 0]
    assert np.abs(lopsided - lopsided[:, ::-1]).max() > 1e-3
    even = mirrored(image=symmetric)[0, 0]
    np.testing.assert_allclose(even, even[:, ::-1], atol=1e-6)


def test_pair_models_mirror_both_frames() -> None:
    plain, mirrored = (Engine(MODELS / "skd_sst_64.onnx", mirror=m) for m in (False, True))
    cur, prev = _frames(plain, 2)
    flipped = plain(current=np.ascontiguousarray(cur[..., ::-1]), previous=np.ascontiguousarray(prev[..., ::-1]))
    expected = 0.5 * (plain(current=cur, previous=prev) + flipped[..., ::-1])
    np.testing.assert_allclose(mirrored(current=cur, previous=prev), expected, atol=1e-6)
