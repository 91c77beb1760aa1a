"""Saliency and object pipelines on the shipped models: shapes, ranges, thresholds, quality."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.pipelines import ObjectsPipeline, SaliencyPipeline, to_mono8
from saliency_ros.sources.synthetic import SyntheticDroneScene

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def sst() -> Engine:
    return Engine(MODELS / "skd_sst_64.onnx")


@pytest.fixture(scope="module")
def sod() -> Engine:
    return Engine(MODELS / "sod_effl0_256.onnx", threads=2)


def test_saliency_at_camera_or_model_resolution(sst: Engine) -> None:
    scene = SyntheticDroneScene(1280, 720, seed=2)
    (prev, _), (cur, _) = scene.frame(0), scene.frame(1)
    cam = SaliencyPipeline(sst, "camera")(cur, prev)
    assert cam.shape == (720, 1280) and cam.dtype == np.float32
    assert 0.0 <= cam.min() <= cam.max() <= 1.0
    assert SaliencyPipeline(sst, "model")(cur, prev).shape == (64, 64)
    with pytest.raises(ValueError, match="output_size"):
        SaliencyPipeline(sst, "half")
    # Streams keep prepared inputs: the same map as from the frames, and ORT time recorded.
    pipe = SaliencyPipeline(sst, "camera")
    np.testing.assert_allclose(pipe.run(pipe.prepare(cur), pipe.prepare(prev), cur.shape), cam, atol=1e-6)
    assert sst.last_run_ms > 0


def test_objects_mask_follows_the_threshold(sod: Engine) -> None:
    frame = SyntheticDroneScene(640, 360, seed=3).frame(0)[0]
    pipe = ObjectsPipeline(sod, threshold=0.5)
    r = pipe(frame)
    assert r.probability.shape == r.mask.shape == (360, 640) and r.mask.dtype == np.uint8
    assert set(np.unique(r.mask)) <= {0, 255}
    assert 0 < (r.mask > 0).mean() < 0.5  # the scene's objects, not all or nothing
    # The mask is made in grey levels: it may differ from thresholding the float map only
    # where the probability is within one grey level of the threshold.
    near = np.abs(r.probability - 0.5) <= 1.0 / 255.0
    np.testing.assert_array_equal((r.mask > 0)[~near], (r.probability >= 0.5)[~near])
    assert near.mean() < 0.01
    assert r.model_probability.shape == (sod.card.input.height, sod.card.input.width)
    pipe.set_threshold("adaptive")
    assert pipe.floor <= pipe(frame).threshold <= 0.9
    for bad in (0.0, 1.5, "otsu"):
        with pytest.raises(ValueError, match="threshold"):
            pipe.set_threshold(bad)


@pytest.mark.parametrize(("level", "floor", "expected", "lit"), [(0.3, 0.1, 0.3, True), (0.3, 0.5, 0.5, False),
                                                                  (0.95, 0.5, 0.9, True), (0.0, 0.5, 0.5, False)])
def test_adaptive_threshold_is_twice_the_mean_between_the_floor_and_0_9(sod: Engine, level: float, floor: float,
                                                                      expected: float, lit: bool) -> None:
    """The SOD literature's adaptive threshold (twice the map's mean), kept at or above the
    floor, so that a dim or empty map does not light up, and at or below 0.9. The map is half
    0 and half `level`, so twice its mean is `level`."""
    prob = np.zeros((8, 8), np.float32)
    prob[:, 4:] = level
    r = ObjectsPipeline(sod, threshold="adaptive", floor=floor).result(prob, (8, 8))
    assert r.threshold == pytest.approx(expected, abs=1e-6)
    assert not r.mask[:, :4].any()
    assert (r.mask[:, 4:] == 255).all() if lit else not r.mask.any()


@pytest.mark.parametrize("threshold", [0.2, 0.25, 1 / 3, 0.5, 0.502, 0.9])
def test_objects_mask_is_the_grey_levels_at_or_above_the_rounded_threshold(sod: Engine,
                                                                         threshold: float) -> None:
    """Every grey level against thresholds on, between and near grey levels: a level is in the
    mask exactly when its probability, (level) / 255, rounds to at least the threshold's."""
    levels = np.arange(256, dtype=np.float32).reshape(16, 16) / np.float32(255.0)
    r = ObjectsPipeline(sod, threshold=threshold).result(levels, (16, 16))
    grey = np.arange(256).reshape(16, 16)
    expected = np.where(grey >= 255.0 * threshold - 0.5, 255, 0)
    assert r.mask.dtype == np.uint8
    np.testing.assert_array_equal(r.mask, expected)


def test_mono8_is_within_one_grey_level_of_the_rounded_float_map() -> None:
    """`to_mono8` quantises at the model's size and resizes the grey levels: against rounding
    the camera-size float map, at most one level apart, and exact where nothing is resized."""
    rng = np.random.default_rng(0)
    small = cv2.GaussianBlur(rng.random((128, 256), np.float32), (0, 0), 3)
    small = (small - small.min()) / (small.max() - small.min())
    exact = np.rint(cv2.resize(small, (1280, 720), interpolation=cv2.INTER_LINEAR) * 255.0)
    grey = to_mono8(small, (720, 1280, 3))
    assert grey.dtype == np.uint8 and grey.shape == (720, 1280)
    assert np.abs(grey.astype(np.int16) - exact).max() <= 1
    np.testing.assert_array_equal(to_mono8(small), np.rint(small * 255.0).astype(np.uint8))
    assert to_mono8(np.array([[0.0, 1.0]], np.float32)).tolist() == [[0, 255]]


def test_saliency_pipeline_answers_in_mono8(sod: Engine) -> None:
    scene = SyntheticDroneScene(640, 360, seed=5)
    (prev, _), (cur, _) = scene.frame(0), scene.frame(1)
    float_map = SaliencyPipeline(sod, "camera", motion_prior=3.0)(cur, prev)
    grey = SaliencyPipeline(sod, "camera", motion_prior=3.0, output_encoding="mono8")(cur, prev)
    assert grey.dtype == np.uint8 and grey.shape == (360, 640)
    assert np.abs(grey.astype(np.int16) - np.rint(float_map * 255.0)).max() <= 1
    with pytest.raises(ValueError, match="output_encoding"):
        SaliencyPipeline(sod, output_encoding="16UC1")


def test_models_are_checked_for_their_role(sst: Engine) -> None:
    from types import SimpleNamespace

    with pytest.raises(ValueError, match="expects a single-frame model"):
        ObjectsPipeline(sst)
    odd = SimpleNamespace(path="odd.onnx", card=SimpleNamespace(input=SimpleNamespace(names=["left", "right"])))
    with pytest.raises(ValueError, match=r"expects a frame-pair model .* or a single-frame one"):
        SaliencyPipeline(odd)  # type: ignore[arg-type]


def test_a_single_frame_model_maps_the_current_frame_of_the_pair(sod: Engine) -> None:
    """The SOD net's file on /saliency: its probability map of the current frame, whatever
    the previous one is; the pipeline says it reads no pairs (without the motion prior the node
    then keeps none)."""
    scene = SyntheticDroneScene(640, 360, seed=4)
    (prev, _), (cur, _) = scene.frame(0), scene.frame(5)
    pipe = SaliencyPipeline(sod, "camera")
    assert not pipe.reads_pairs and SaliencyPipeline(Engine(MODELS / "skd_sst_64.onnx")).reads_pairs
    sal = pipe(cur, prev)
    np.testing.assert_allclose(sal, ObjectsPipeline(sod)(cur).probability, atol=1e-6)
    np.testing.assert_array_equal(pipe(cur, cur), sal)
    h, w = sod.card.input.height, sod.card.input.width
    assert SaliencyPipeline(sod, "model")(cur, prev).shape == (h, w)


@pytest.mark.data
def test_shipped_models_find_the_car_in_davis_val(davis_val: Path, sst: Engine, sod: Engine) -> None:
    """Measured when the models were shipped: mask IoU 0.80, saliency-mask correlation 0.86."""
    d = davis_val / "car-shadow"
    prev, cur = (cv2.imread(str(d / "frames" / f"{i:05d}.jpg")) for i in (10, 11))
    gt = cv2.imread(str(d / "masks" / "00011.png"), cv2.IMREAD_GRAYSCALE) > 127
    mask = ObjectsPipeline(sod)(cur).mask > 0
    assert (mask & gt).sum() / (mask | gt).sum() > 0.6
    sal = SaliencyPipeline(sst)(cur, prev)
    assert np.corrcoef(sal.ravel(), gt.ravel())[0, 1] > 0.6


def test_pairs_are_aligned_when_the_card_says_so(tmp_path: Path) -> None:
    """A card with `pair_alignment` makes the pipeline warp the previous input by the
    ego-motion estimated on the two frames, exactly as training does; without it, raw pairs."""
    import json
    import shutil

    from saliency_ros.runtime import egomotion
    from saliency_ros.runtime.preprocess import to_input

    shutil.copy(MODELS / "skd_sst_64.onnx", tmp_path / "skd_sst_64.onnx")
    card = json.loads((MODELS / "skd_sst_64.json").read_text())
    card["input"]["pair_alignment"] = "homography"
    (tmp_path / "skd_sst_64.json").write_text(json.dumps(card))
    aligned = Engine(tmp_path / "skd_sst_64.onnx")
    scene = SyntheticDroneScene(640, 360, seed=5)
    (prev, _), (cur, _) = scene.frame(0), scene.frame(3)
    pipe = SaliencyPipeline(aligned, "model")
    out = pipe(cur, prev)
    cfg = egomotion.MotionConfig()
    motion = egomotion.estimate(egomotion.working_gray(prev, cfg), egomotion.working_gray(cur, cfg), cfg)
    assert motion.ok and not np.allclose(motion.homography, np.eye(3))
    spec = aligned.card.input
    expected = aligned(current=to_input(cur, spec), previous=egomotion.warp_input(to_input(prev, spec), motion.homography))
    np.testing.assert_allclose(out, expected[0, 0], atol=1e-6)
    raw = SaliencyPipeline(Engine(MODELS / "skd_sst_64.onnx"), "model")
    assert raw.motion is None and raw.prepare(cur).gray is None
    assert not np.allclose(raw(cur, prev), out, atol=1e-4)  # alignment changed the input
    flat = np.full((360, 640, 3), 120, np.uint8)
    pipe(flat, flat)
    assert pipe.alignment_failures == 1  # nothing to track: counted, raw pair used



def _ground_pair_with_two_cars() -> tuple[np.ndarray, np.ndarray, tuple[slice, slice], tuple[slice, slice]]:
    """Generated terrain panned 5 px right and 3 px up, with two identical red cars: one parked
    (it moves with the ground) and one driving 17 px further left. Returns (previous, current,
    parked region, driving region) in the current frame."""
    ground = SyntheticDroneScene(640, 360, targets=0, seed=7).frame(0)[0]
    previous = ground.copy()
    current = cv2.warpAffine(ground, np.float32([[1, 0, 5], [0, 1, -3]]), (640, 360), borderMode=cv2.BORDER_REFLECT)
    for image, (x, y) in ((previous, (200, 180)), (current, (205, 177)), (previous, (420, 180)), (current, (408, 177))):
        cv2.rectangle(image, (x, y), (x + 30, y + 15), (40, 40, 200), -1)
    return previous, current, (slice(177, 193), slice(205, 236)), (slice(177, 193), slice(408, 439))


def test_the_motion_prior_lifts_what_moves_against_the_ground(sod: Engine) -> None:
    """Of two identical cars the driving one gains on the parked one under the prior, the
    map's peak keeps its value; a stream's first frame, with no predecessor, gets the plain
    map; pair models read motion themselves and get no prior."""
    previous, current, parked, driving = _ground_pair_with_two_cars()
    plain, lifted = SaliencyPipeline(sod, "camera"), SaliencyPipeline(sod, "camera", motion_prior=3.0)
    assert lifted.prior is not None and lifted.uses_previous and not plain.uses_previous
    base, with_prior = plain(current, None), lifted(current, previous)
    # The peak is kept where the prior rescales, on the model grid (at camera size the bilinear
    # upsampling mixes each peak with its own neighbours, which the prior changed).
    grid_base = SaliencyPipeline(sod, "model")(current, None)
    grid_prior = SaliencyPipeline(sod, "model", motion_prior=3.0)(current, previous)
    assert grid_prior.max() == pytest.approx(grid_base.max(), abs=2e-3)
    ratio_base = base[driving].mean() / base[parked].mean()
    ratio_prior = with_prior[driving].mean() / with_prior[parked].mean()
    assert ratio_prior > 1.5 * ratio_base and lifted.alignment_failures == 0
    np.testing.assert_array_equal(lifted(current, None), base)
    pair = SaliencyPipeline(Engine(MODELS / "skd_sst_64.onnx"), motion_prior=3.0)
    assert pair.prior is None and pair.uses_previous
    with pytest.raises(ValueError, match="needs the previous frame"):
        pair(current, None)
    with pytest.raises(ValueError, match="motion_prior"):
        SaliencyPipeline(sod, motion_prior=-1.0)


def test_one_inference_serves_saliency_and_the_mask(sod: Engine) -> None:
    """Shared inference (saliency_node's publish_objects): the saliency pipeline's own model map,
    made a mask by `ObjectsPipeline.result`, is exactly objects_node's mask, and `finish` of it
    is exactly `/saliency`; the motion prior does not leak into the mask."""
    scene = SyntheticDroneScene(640, 360, targets=3, seed=5)
    (prev, _), (cur, _) = scene.frame(3), scene.frame(4)
    saliency, objects = SaliencyPipeline(sod, "camera", motion_prior=3.0), ObjectsPipeline(sod)
    current, previous = saliency.prepare(cur), saliency.prepare(prev)
    prob = saliency.infer(current, previous)
    shared, alone = objects.result(prob, cur.shape), objects(cur)
    np.testing.assert_array_equal(shared.mask, alone.mask)
    np.testing.assert_array_equal(shared.model_probability, alone.model_probability)
    lifted = saliency.finish(prob, current, previous, cur.shape)
    np.testing.assert_array_equal(lifted, saliency.run(current, previous, cur.shape))
    assert np.abs(lifted - shared.probability).max() > 0.05  # the prior moved /saliency, not the mask
