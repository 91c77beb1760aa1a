"""Each paper loss decreases when its network trains on synthetic drone frames; the teacher
cache matches the SOD net; recipes fail early on bad values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from saliency_ros.models import create_model
from saliency_ros.models.skd import build_sst_from_students
from saliency_ros.sources.synthetic import SyntheticDroneScene
from saliency_ros.training.common import Runtime, read_log
from saliency_ros.training.data import AugmentConfig, discover
from saliency_ros.training.data.synthetic import write_synthetic_dataset
from saliency_ros.training.export import input_spec
from saliency_ros.runtime.preprocess import to_input
from saliency_ros.training.recipe import MosaicConfig, PasteConfig, load_recipe
from saliency_ros.training.skd import (Cutouts, StudentDataset, TeacherCache, _loss as skd_loss, cache_still_teachers,
                                      cache_teachers, camera_motion, cut_objects, mosaic, paste_objects, train_skd)
from saliency_ros.models.losses import bce_iou
from saliency_ros.training.sod import exported_weights, stage1_loss, stage2_loss

CPU = Runtime(device=torch.device("cpu"), amp=False)
REPO = Path(__file__).resolve().parents[2]


def _batch(size: int, n: int = 4) -> dict[str, torch.Tensor]:
    # Targets cover ~10 % of the frame, like DAVIS objects (8 %), not tiny drone targets.
    scene = SyntheticDroneScene(size * 2, size * 2, targets=3, seed=7, target_scale=(0.3, 0.45))
    spec = input_spec("skd_sst", size)
    cur, prev, mask, pmask = [], [], [], []
    for i in range(n):
        (f1, m1), (f0, m0) = scene.frame(3 * i + 2), scene.frame(3 * i)
        cur.append(to_input(f1, spec)[0])
        prev.append(to_input(f0, spec)[0])
        mask.append(np.float32(m1[::2, ::2] > 0)[None])
        pmask.append(np.float32(m0[::2, ::2] > 0)[None])
    b = {k: torch.from_numpy(np.stack(v)) for k, v in
         (("current", cur), ("previous", prev), ("mask", mask), ("previous_mask", pmask))}
    b["spatial"] = b["mask"] * 0.8  # a plausible soft teacher
    b["temporal"] = b["mask"] * 0.7
    return b


def _descends(model: torch.nn.Module, loss_fn, batch, steps: int, lr: float, adam: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if adam
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


@pytest.mark.parametrize("kind", ["ss", "st", "sst"])
def test_skd_losses_decrease(kind: str) -> None:
    torch.manual_seed(0)
    batch = _batch(32)
    if kind == "sst":
        model = build_sst_from_students(create_model("skd_ss", input_size=32), create_model("skd_st", input_size=32))
    else:
        model = create_model(f"skd_{kind}", input_size=32)
    first, last = _descends(model, skd_loss(kind, 0.5), batch, steps=50, lr=1e-3, adam=True)
    assert last < 0.8 * first, (first, last)
    # Lower loss must not come from collapsing to "all background": the map follows the mask.
    with torch.no_grad():
        pred = model(batch["current"]) if kind == "ss" else model(batch["current"], batch["previous"])
    corr = np.corrcoef(pred.flatten().numpy(), batch["mask"].flatten().numpy())[0, 1]
    assert float(pred.std()) > 1e-3 and corr > 0.3, (float(pred.std()), corr)


@pytest.mark.parametrize("stage", ["stage1", "stage1_structure", "stage2"])
def test_sod_losses_decrease(stage: str) -> None:
    torch.manual_seed(0)
    batch = _batch(64, n=2)
    net = create_model("sod_effl0", pretrained=True)
    fn = {"stage1": stage1_loss(), "stage1_structure": stage1_loss("structure"), "stage2": stage2_loss(0.7)}[stage]
    first, last = _descends(net, fn, batch, steps=8, lr=1e-2, adam=False)
    assert last < 0.8 * first, (first, last)


def test_stage1_loss_sums_the_named_loss_over_the_units() -> None:
    torch.manual_seed(0)
    batch = _batch(64, n=2)
    net = create_model("sod_effl0", pretrained=False).train()
    torch.manual_seed(1)
    got = stage1_loss("bce_iou")(net, batch).item()
    torch.manual_seed(1)  # the same dropout draws, if any, for the reference forward pass
    frame = net(batch["current"])["frame"]
    assert len(frame) == 3
    assert got == pytest.approx(sum(bce_iou(p, batch["mask"]) for p in frame).item(), rel=1e-5)
    with pytest.raises(ValueError, match="loss must be one of"):
        stage1_loss("dice")


def test_exported_weights_fold_the_trunk_and_keep_the_rest() -> None:
    """The net a `from_export` stage starts from: the same eval-mode maps as the net it was
    exported from, every trunk BatchNorm folded (so `fit` re-estimates it), the parts the export
    leaves out unchanged, and no random numbers drawn that the stage would have drawn."""
    from saliency_ros.training.common import folded_batchnorms

    torch.manual_seed(0)
    net = create_model("sod_effl0", pretrained=False)
    with torch.no_grad():  # statistics a trained net has: a fresh BatchNorm folds into nothing
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    net.eval()
    rng = torch.get_rng_state()
    back = exported_weights(net, "sod_effl0", 64).eval()
    assert torch.equal(torch.get_rng_state(), rng)
    assert folded_batchnorms(back) and all(n.startswith("trunk.") for n in folded_batchnorms(back))
    assert not folded_batchnorms(net)
    mine, theirs = net.state_dict(), back.state_dict()
    for key in (k for k in mine if not k.startswith("trunk.")):
        assert torch.equal(mine[key], theirs[key]), key
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(back.trunk(x).logits[-1], net.trunk(x).logits[-1], atol=1e-4, rtol=1e-4)


def test_teacher_cache_matches_the_sod_net(tmp_path: Path) -> None:
    torch.manual_seed(0)
    seqs = discover(write_synthetic_dataset(tmp_path, sequences=1, frames=5, width=96, height=64), "ours")
    net = create_model("sod_effl0", pretrained=False).eval()
    caches = cache_teachers(net, seqs, sizes=(32,), max_gap=3, run=CPU)
    c = caches[32]
    assert c.frames.shape == (5, 3, 32, 32) and c.temporal.shape == (5, 3, 1, 32, 32)
    assert list(c.position) == [0, 1, 2, 3, 4]
    assert not c.temporal[0].any() and not c.temporal[2, 2].any()  # no frame 3 back from t=2
    assert c.temporal[3, 2].any()
    # Ts of frame 4 equals the deployed SOD net run on that frame at full resolution.
    import cv2
    import dataclasses

    img = cv2.imread(str(seqs[0].frames[4]))
    spec = dataclasses.replace(input_spec("sod_effl0", 32), height=64, width=96)
    with torch.no_grad():
        full = net.deploy()(torch.from_numpy(to_input(img, spec)))[0, 0].numpy()
    np.testing.assert_allclose(c.spatial[4, 0], cv2.resize(full, (32, 32), interpolation=cv2.INTER_AREA), atol=1e-5)
    ds = StudentDataset(c, seed=0)
    assert len(ds) == 4
    s = ds[0]
    assert s["current"].shape == (3, 32, 32) and s["temporal"].shape == (1, 32, 32)


def test_teacher_cache_at_an_aspect_reduces_to_the_students_shape(tmp_path: Path) -> None:
    """`skd.aspect`: frames, masks and both teachers' maps are area-reduced to the student's
    (height, width) at that aspect, the shape its exported card gives; pairs and mosaics keep it."""
    import cv2

    seqs = discover(write_synthetic_dataset(tmp_path, sequences=1, frames=4, width=160, height=96), "ours")
    net = create_model("sod_effl0", pretrained=False).eval()
    c = cache_teachers(net, seqs, sizes=(32,), max_gap=2, run=CPU, aspect=1.75)[32]
    h, w = input_spec("skd_sst", 32, aspect=1.75).height, input_spec("skd_sst", 32, aspect=1.75).width
    assert (h, w) == (24, 44)
    assert c.frames.shape == (4, 3, h, w) and c.gt.shape == (4, 1, h, w) and c.temporal.shape == (4, 2, 1, h, w)
    mask = cv2.imread(str(seqs[0].masks[2]), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    np.testing.assert_allclose(c.gt[2, 0], cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA), atol=1e-5)
    for ds in (StudentDataset(c, seed=0), StudentDataset(c, seed=0, mosaic=MosaicConfig(1.0, (2,)))):
        for item in range(len(ds)):
            assert {k: tuple(v.shape[1:]) for k, v in ds[item].items()} == dict.fromkeys(
                ("mask", "spatial", "temporal", "current", "previous"), (h, w))


def test_teacher_cache_aligns_pairs_with_the_runtime_egomotion(tmp_path: Path) -> None:
    """With alignment, each cached (t - k, t) motion is the one the node would estimate, and
    the students' previous frame is the cached frame warped by it."""
    import cv2

    from saliency_ros.runtime import egomotion

    seqs = discover(write_synthetic_dataset(tmp_path, sequences=1, frames=4, width=160, height=96), "ours")
    net = create_model("sod_effl0", pretrained=False).eval()
    c = cache_teachers(net, seqs, sizes=(32,), max_gap=2, run=CPU, alignment="homography")[32]
    assert c.motion.shape == (4, 2, 3, 3)
    np.testing.assert_array_equal(c.motion[0], np.tile(np.eye(3), (2, 1, 1)))  # nothing before frame 0
    cfg = egomotion.MotionConfig()
    grays = [egomotion.working_gray(cv2.imread(str(f)), cfg) for f in seqs[0].frames]
    expected = egomotion.estimate(grays[1], grays[3], cfg)
    assert expected.ok
    np.testing.assert_allclose(c.motion[3, 1], expected.homography)
    assert not np.allclose(c.motion[3, 1], np.eye(3))  # the synthetic camera moves
    ds = StudentDataset(c, seed=0)
    for item in range(len(ds)):
        i = int(ds.items[item])
        rng = np.random.default_rng((0, 0, item))
        k = int(rng.integers(1, min(2, i) + 1))
        flip = rng.random() < 0.5
        warped = egomotion.warp_input(c.frames[i - k], c.motion[i, k - 1])
        np.testing.assert_allclose(ds[item]["previous"].numpy(), warped[..., ::-1] if flip else warped, atol=1e-6)
    unaligned = cache_teachers(net, seqs, sizes=(32,), max_gap=2, run=CPU)[32]
    np.testing.assert_array_equal(unaligned.motion, np.tile(np.eye(3), (4, 2, 1, 1)))


def test_zoom_crops_the_pair_and_its_maps_alike() -> None:
    """`skd.zoom`: one random zoom-in per sample, the same window for the frames and every
    map, within [1, zoom]; zoom 1 leaves samples as they were. Frames hold a left-right ramp
    and the mask a top-bottom one, so each window can be read back from the values."""
    s, n = 32, 4
    centres = (np.arange(s, dtype=np.float32) + 0.5) / s
    x = np.tile(centres, (s, 1))
    cache = TeacherCache(size=s, max_gap=1, frames=np.tile(x, (n, 3, 1, 1)), gt=np.tile(x.T, (n, 1, 1, 1)),
                         spatial=np.tile(x, (n, 1, 1, 1)), temporal=np.tile(x, (n, 1, 1, 1, 1)),
                         position=np.arange(n), motion=np.tile(np.eye(3), (n, 1, 1, 1)))
    plain = StudentDataset(cache, seed=0)
    for item in range(len(plain)):  # no zoom: the whole ramp, end to end
        ends = plain[item]["current"][0].numpy()[0, [0, -1]]
        np.testing.assert_allclose(sorted(ends), centres[[0, -1]], atol=1e-6)
    zoomed, spans = StudentDataset(cache, seed=0, zoom=2.0), []
    for epoch in range(4):
        zoomed.set_epoch(epoch)
        for item in range(len(zoomed)):
            b = {k: v.numpy() for k, v in zoomed[item].items()}
            row, col = b["current"][0, 0], b["mask"][0, :, 0]
            span_x, span_y = abs(row[-1] - row[0]), col[-1] - col[0]
            # the window's side, read off both ramps: 1/z of the full (s-1)/s span, z in [1, 2]
            # (OpenCV warps on a 1/32-pixel grid: 1e-3 here)
            assert 0.5 * (s - 1) / s - 2e-3 <= span_x <= (s - 1) / s + 2e-3
            assert span_y == pytest.approx(span_x, abs=2e-3)  # the same zoom in x and y
            assert 0.0 <= min(row) and max(row) <= 1.0  # inside the frame: nothing invented at the border
            for name in ("spatial", "temporal", "previous"):
                np.testing.assert_allclose(b[name][0], b["current"][0], atol=1e-5)
            spans.append(span_x)
    assert min(spans) < 0.7 and max(spans) > 0.85  # zooms across the range, not one fixed crop


def test_mosaic_shrinks_each_tile_by_block_means_in_row_major_order() -> None:
    """Tile r * n + c lands in grid cell (r, c), reduced by the mean of each n x n block."""
    tiles = [np.full((2, 4, 4), v, np.float32) for v in range(4)]
    tiles[3][:, :2, :2] = [[1.0, 2.0], [3.0, 6.0]]  # one block of tile 3: mean 3
    out = mosaic(tiles, 2)
    assert out.shape == (2, 4, 4)
    np.testing.assert_array_equal(out[:, :2, :2], 0.0)
    np.testing.assert_array_equal(out[:, :2, 2:], 1.0)
    np.testing.assert_array_equal(out[:, 2:, :2], 2.0)
    np.testing.assert_array_equal(out[0, 2:, 2:], [[3.0, 3.0], [3.0, 3.0]])


def _cells_constant(b: dict[str, np.ndarray], g: int, t: int) -> bool:
    return all(np.all(v[:, r * t : (r + 1) * t, c * t : (c + 1) * t] == v[0, r * t, c * t])
               for v in (b["mask"], b["previous"]) for r in range(g) for c in range(g))


def test_mosaic_items_tile_whole_pairs_and_leave_plain_items_unchanged() -> None:
    """`skd.mosaic`: at probability 1 every item is an n x n grid of shrunk samples, the
    frames and every map tiled alike; at probability 0 items are exactly the plain ones (no
    extra random draws), so recipes without mosaics train as before. Every frame of the cache
    is a constant (its index), so each tile can be traced back to its frame and gap."""
    s, n = 32, 6
    cache = TeacherCache(size=s, max_gap=2, frames=np.tile(np.arange(n, dtype=np.float32)[:, None, None, None], (1, 3, s, s)),
                         gt=np.tile(np.arange(n, dtype=np.float32)[:, None, None, None], (1, 1, s, s)),
                         spatial=np.tile(np.arange(n, dtype=np.float32)[:, None, None, None], (1, 1, s, s)),
                         temporal=np.tile(np.arange(n, dtype=np.float32)[:, None, None, None, None], (1, 2, 1, s, s)),
                         position=np.arange(n), motion=np.tile(np.eye(3), (n, 2, 1, 1)))
    plain, off = StudentDataset(cache, seed=0), StudentDataset(cache, seed=0, mosaic=MosaicConfig(0.0, (2,)))
    for item in range(len(plain)):
        for name, v in plain[item].items():
            np.testing.assert_array_equal(off[item][name].numpy(), v.numpy())
    grids = set()
    tiled = StudentDataset(cache, seed=0, mosaic=MosaicConfig(1.0, (2, 4)))
    for epoch in range(3):
        tiled.set_epoch(epoch)
        for item in range(len(tiled)):
            b = {k: v.numpy() for k, v in tiled[item].items()}
            g = next(g for g in (2, 4) if _cells_constant(b, g, s // g))  # the coarsest grid that fits
            grids.add(g)
            t = s // g
            for r in range(g):
                for c in range(g):
                    cell = {k: v[:, r * t : (r + 1) * t, c * t : (c + 1) * t] for k, v in b.items()}
                    frame = cell["mask"][0, 0, 0]
                    for name in ("mask", "spatial", "temporal", "current"):  # the same frame's maps
                        np.testing.assert_array_equal(cell[name], frame)
                    gap = frame - cell["previous"][0, 0, 0]  # the previous frame of its own clip
                    assert 1 <= gap <= min(2, frame) and np.all(cell["previous"] == cell["previous"][0, 0, 0])
    assert grids == {2, 4}


def _duts(tmp_path: Path) -> Path:
    """Five DUTS-TR-style stills (WebP images, PNG masks in the official folder names)."""
    import cv2

    root = tmp_path / "DUTS-TR"
    (root / "DUTS-TR-Image").mkdir(parents=True)
    (root / "DUTS-TR-Mask").mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        img = rng.integers(0, 255, (48 + 8 * i, 64, 3), dtype=np.uint8)
        mask = np.zeros(img.shape[:2], np.uint8)
        mask[10:30, 20 + i : 40 + i] = 255
        cv2.imwrite(str(root / "DUTS-TR-Image" / f"{i:03d}.webp"), img)
        cv2.imwrite(str(root / "DUTS-TR-Mask" / f"{i:03d}.png"), mask)
    return root


def test_still_images_pair_with_a_moved_copy_of_themselves(tmp_path: Path) -> None:
    """DUTS-style stills: labelled by the deployed SOD net at its size, reduced like video
    frames, and paired with themselves under a small camera motion, with Tt = Ts."""
    import cv2

    from saliency_ros.runtime import egomotion

    images = discover(_duts(tmp_path))
    videos = discover(write_synthetic_dataset(tmp_path / "v", sequences=1, frames=3, width=96, height=64), "ours")
    net = create_model("sod_effl0", pretrained=False).eval()
    stills = cache_still_teachers(net, images, sizes=(32,), count=4, input_size=64, run=CPU, seed=0, batch=3)[32]
    assert stills.frames.shape == (4, 3, 32, 32) and stills.spatial.shape == (4, 1, 32, 32)
    chosen = sorted(np.random.default_rng(0).permutation(5)[:4])  # the seeded draw
    last = cv2.imread(str(images[0].frames[chosen[-1]]))
    with torch.no_grad():
        full = net.deploy()(torch.from_numpy(to_input(last, input_spec("sod_effl0", 64))))[0, 0].numpy()
    np.testing.assert_allclose(stills.spatial[-1, 0], cv2.resize(full, (32, 32), interpolation=cv2.INTER_AREA), atol=1e-5)
    mask = cv2.imread(str(images[0].masks[chosen[-1]]), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    np.testing.assert_allclose(stills.gt[-1, 0], cv2.resize(mask, (32, 32), interpolation=cv2.INTER_AREA), atol=1e-6)
    video = cache_teachers(net, videos, sizes=(32,), max_gap=1, run=CPU)[32]
    ds = StudentDataset(video, seed=0, stills=stills)
    assert len(ds) == 2 + 4  # two video frames have a previous frame, then the four stills
    for item in range(2, 6):
        rng = np.random.default_rng((0, 0, item))
        motion = camera_motion(rng)
        flip = rng.random() < 0.5
        j = item - 2
        expected = egomotion.warp_input(stills.frames[j], motion)
        assert not np.allclose(motion, np.eye(3)) and abs(motion[0, 2]) < 0.1
        s = ds[item]
        np.testing.assert_allclose(s["previous"].numpy(), expected[..., ::-1] if flip else expected, atol=1e-6)
        np.testing.assert_array_equal(s["temporal"].numpy(), s["spatial"].numpy())
        np.testing.assert_array_equal(s["mask"].numpy(), stills.gt[j][..., ::-1] if flip else stills.gt[j])


def test_cut_objects_crop_each_still_to_its_mask_and_skip_empty_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each still's object: the image and mask inside the mask's box, normalised as the card
    says; a still whose mask is empty gives none; a large object is shrunk to CUTOUT_SIDE."""
    import cv2

    from saliency_ros.runtime.preprocess import normalize
    from saliency_ros.training import skd

    root = _duts(tmp_path)
    cv2.imwrite(str(root / "DUTS-TR-Mask" / "004.png"), np.zeros((80, 64), np.uint8))  # 004: nothing to cut
    spec = input_spec("skd_sst", 32)
    cut = cut_objects(discover(root), count=5, seed=0, spec=spec)
    assert len(cut.pixels) == len(cut.masks) == 4
    for i in range(4):  # masks: rows 10-29, columns 20+i to 39+i
        image = cv2.imread(str(root / "DUTS-TR-Image" / f"{i:03d}.webp"))
        np.testing.assert_allclose(cut.pixels[i], normalize(image[10:30, 20 + i : 40 + i], spec), atol=1e-6)
        np.testing.assert_array_equal(cut.masks[i], np.ones((20, 20), np.float32))
    monkeypatch.setattr(skd, "CUTOUT_SIDE", 10)
    small = cut_objects(discover(root), count=1, seed=0, spec=spec)
    assert small.masks[0].shape == (10, 10) and small.pixels[0].shape == (3, 10, 10)
    cv2.imwrite(str(root / "DUTS-TR-Mask" / "000.png"), np.zeros((48, 64), np.uint8))
    for i in range(1, 4):
        (root / "DUTS-TR-Mask" / f"{i:03d}.png").unlink()
        (root / "DUTS-TR-Image" / f"{i:03d}.webp").unlink()
    with pytest.raises(ValueError, match="empty mask"):
        cut_objects(discover(root), count=5, seed=0, spec=spec)


def _pasted(seed: int, alpha: float, cfg: PasteConfig) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A 32 x 48 pair of 1s with maps of 0.2, and one 8 x 4 cut-out of 5s with mask `alpha`."""
    sample = {"current": np.ones((3, 32, 48), np.float32), "previous": np.ones((3, 32, 48), np.float32)}
    sample |= {name: np.full((1, 32, 48), 0.2, np.float32) for name in ("mask", "spatial", "temporal")}
    cutouts = Cutouts([np.full((3, 8, 4), 5.0, np.float32)], [np.full((8, 4), alpha, np.float32)])
    return sample, paste_objects(sample, cutouts, cfg, np.random.default_rng(seed))


def _box(plane: np.ndarray, value: float) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(np.isclose(plane, value))
    return ys.min(), xs.min(), ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()


def test_a_pasted_object_lands_in_both_frames_moved_and_in_every_map() -> None:
    """One object at 1/4 of the height (8 px, its 1:2 aspect kept), blended by its mask into
    the current frame and, up to `motion` x height (3 px) away on each axis, into the previous
    one; mask and both teacher maps take the larger of themselves and its mask where it lands
    in the current frame. The sample passed in (a view of the caches) is left as it was."""
    cfg = PasteConfig(probability=1.0, most=1, height=(0.25, 0.25), motion=0.1)
    moves = set()
    for seed in range(20):
        before, out = _pasted(seed, 1.0, cfg)
        y, x, h, w = _box(out["current"][0], 5.0)
        assert (h, w) == (8, 4) and np.isclose(out["current"], 5.0).sum() == 3 * 8 * 4
        py, px, ph, pw = _box(out["previous"][0], 5.0)
        assert (ph, pw) == (8, 4) and abs(py - y) <= 3 and abs(px - x) <= 3
        moves.add((py - y, px - x))
        for name in ("mask", "spatial", "temporal"):
            expected = np.full((32, 48), 0.2, np.float32)
            expected[y : y + 8, x : x + 4] = 1.0
            np.testing.assert_array_equal(out[name][0], expected)
        fresh, _ = _pasted(seed, 1.0, PasteConfig())
        for name, v in before.items():
            np.testing.assert_array_equal(v, fresh[name])
    assert len(moves) > 5  # the object moves by itself, not by one fixed offset
    _, half = _pasted(0, 0.5, cfg)  # a soft mask: half the object over half the background
    y, x, _, _ = _box(half["current"][0], 3.0)
    np.testing.assert_allclose(half["current"][:, y : y + 8, x : x + 4], 3.0)
    assert np.isclose(half["mask"], 0.5).sum() == 32


def test_paste_counts_heights_and_the_dataset_switch() -> None:
    """1 to `most` objects per pasted sample, each `height` of the input tall; at probability 0
    the dataset's items are exactly the plain ones (no extra draws), at 1 every item is pasted."""
    import cv2

    counts, heights = set(), set()
    for seed in range(30):
        _, out = _pasted(seed, 1.0, PasteConfig(probability=1.0, most=3, motion=0.0))
        counts.add(cv2.connectedComponents(np.uint8(np.isclose(out["current"][0], 5.0)))[0] - 1)
        _, one = _pasted(seed, 1.0, PasteConfig(probability=1.0, most=1, height=(0.1, 0.3)))
        heights.add(_box(one["current"][0], 5.0)[2])
    assert counts <= {1, 2, 3} and {1, 3} <= counts  # (objects that touch count once)
    assert min(heights) >= 3 and max(heights) <= 10 and len(heights) >= 4  # round(0.1 x 32) to round(0.3 x 32)
    s, n = 32, 4
    cache = TeacherCache(size=s, max_gap=1, frames=np.ones((n, 3, s, s), np.float32), gt=np.zeros((n, 1, s, s), np.float32),
                         spatial=np.zeros((n, 1, s, s), np.float32), temporal=np.zeros((n, 1, 1, s, s), np.float32),
                         position=np.arange(n), motion=np.tile(np.eye(3), (n, 1, 1, 1)))
    cutouts = Cutouts([np.full((3, 8, 4), 5.0, np.float32)], [np.ones((8, 4), np.float32)])
    plain = StudentDataset(cache, seed=0)
    off = StudentDataset(cache, seed=0, paste=PasteConfig(probability=0.0), cutouts=cutouts)
    on = StudentDataset(cache, seed=0, paste=PasteConfig(probability=1.0), cutouts=cutouts)
    for item in range(len(plain)):
        for name, v in plain[item].items():
            np.testing.assert_array_equal(off[item][name].numpy(), v.numpy())
        assert on[item]["mask"].max() == 1.0 and on[item]["current"].max() == 5.0
    with pytest.raises(ValueError, match="needs their cut-outs"):
        StudentDataset(cache, seed=0, paste=PasteConfig(probability=0.5))


@pytest.mark.parametrize("sst_images", [True, False])
def test_sst_fine_tunes_on_the_stills_only_when_asked(tmp_path: Path, sst_images: bool) -> None:
    """skd.sst_images: false keeps the stills for Ss and St and fits Sst to the video pairs.
    Read from the stage logs: with batch 2, the 2 video pairs make one batch per epoch, the
    pairs and 4 stills three. (Objects pasted into half the items leave the counts alone.)"""
    videos = tmp_path / "v"
    write_synthetic_dataset(videos, sequences=1, frames=3, width=96, height=64)
    recipe_path = tmp_path / "recipe.yaml"
    loop = "{iterations: 3, batch_size: 2, lr: 1.0e-3, optimizer: adam, schedule: constant, workers: 0}"
    recipe_path.write_text(f"data: {{train: ['{videos}'], images: ['{_duts(tmp_path)}'], gap: [1, 1]}}\n"
                           f"sod: {{input_size: 64}}\n"
                           f"skd: {{sizes: [32], images: 4, sst_images: {str(sst_images).lower()}, paste: {{probability: 0.5}}, "
                           f"students: {loop}, sst: {loop}}}\n")
    recipe = load_recipe(recipe_path)
    assert recipe.skd.sst_images is sst_images
    seqs = discover(videos, "ours")
    train_skd(recipe, create_model("sod_effl0", pretrained=False).eval(), seqs, seqs, CPU, tmp_path / "skd",
              images=discover(tmp_path / "DUTS-TR"))
    epochs = {kind: [r["epoch"] for r in read_log(tmp_path / "skd" / "32" / kind / "log.csv")] for kind in ("ss", "st", "sst")}
    assert epochs["ss"] == epochs["st"] == [0, 0, 0]
    assert epochs["sst"] == ([0, 0, 0] if sst_images else [0, 1, 2])


def test_recipes_load_and_bad_values_fail(tmp_path: Path) -> None:
    drone = load_recipe(REPO / "config" / "training" / "drone.yaml")
    assert drone.sod.input_size == 256 and drone.skd.sizes == (128, 64) and drone.export_int8
    assert drone.skd.loop("students", 128).batch_size == 32 and drone.skd.loop("sst", 64).batch_size == 128
    assert drone.data.images[0].parts[-2:] == ("duts", "DUTS-TR") and drone.data.boxes[0].name == "aerial_dev"
    assert drone.data.train[0].parts[-2:] == ("davis2016", "train")
    # Sst-128 is trained square and exported at 16:9; Sst-64 stays square.
    assert drone.skd.aspect == 1.0 and drone.export_shape(128) == (96, 168) and drone.export_shape(64) == (64, 64)
    bad = tmp_path / "bad.yaml"

    def refused(text: str, match: str) -> None:
        """Loading the recipe `text` fails with a message that matches `match`."""
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_recipe(bad)

    refused("data: {synthetic: {sequences: 2}}\nsod: {stage1: {iterations: 0, batch_size: 2, lr: 0.1}}\n", "sod.stage1")
    refused("data: {synthetic: {sequences: 2}}\nsod: {stage1: {iters: 3}}\n", "unknown keys")
    refused("data: {synthetic: {sequences: 2}}\nsod: {stage2: {iterations: 2, batch_size: 2, lr: 0.1, frozen: trunk}}\n",
            "sod.stage2: frozen must be a list")
    bad.write_text("data: {synthetic: {sequences: 2}}\nsod: {stage2: {iterations: 2, batch_size: 2, lr: 0.1, frozen: [trunk]}}\n")
    assert load_recipe(bad).sod.stage2.frozen == ("trunk",)
    bad.write_text("data: {synthetic: {sequences: 2}}\nsod: {stage1: {iterations: 2, batch_size: 2, lr: 0.1, "
                   "shapes: [[256, 256], [128, 256]]}}\n")
    assert load_recipe(bad).sod.stage1.shapes == ((256, 256), (128, 256)) and drone.sod.stage1.shapes == ()
    refused("data: {synthetic: {sequences: 2}}\nsod: {stage1: {iterations: 2, batch_size: 2, lr: 0.1, "
            "shapes: [[256, 250]]}}\n", "sod.stage1.shapes must be .* multiples of 32")
    refused("data: {synthetic: {sequences: 2}}\nsod: {stage1: {iterations: 2, batch_size: 2, lr: 0.1, shapes: [256]}}\n",
            "sod.stage1: shapes must be a list of")
    refused("data: {synthetic: {sequences: 2}}\nsod: {stage1: {iterations: 2, batch_size: 2, lr: 0.1, channels_last: 'yes'}}\n",
            "sod.stage1: freeze_bn and channels_last are true or false")
    refused("data: {synthetic: {sequences: 2}}\nskd: {sst: {iterations: 1, batch_size: 1, lr: 1, shapes: [[32, 32]]}}\n",
            "shapes is for the SOD stages only")
    # The fine-tune stage and each stage's zoom-out: the drone recipe's, a stage without one,
    # and the ways to get them wrong.
    assert [name for name, _ in drone.sod.stages()] == ["stage1", "finetune", "stage2"]
    assert drone.sod.finetune is not None and (256, 256) in drone.sod.finetune.shapes
    assert drone.sod.stage_augment("finetune") == AugmentConfig(zoom_out=0.3, zoom_out_max=3.0, border="mean")
    assert drone.sod.stage_augment("stage1") == AugmentConfig()
    bad.write_text("data: {synthetic: {sequences: 2}}\nsod: {finetune: {iterations: 2, batch_size: 2, lr: 0.1, "
                   "augment: {zoom_out: 0.3, zoom_out_max: 2.5}}}\n")
    parsed = load_recipe(bad).sod
    assert (parsed.stage_augment("finetune").zoom_out, parsed.stage_augment("finetune").zoom_out_max) == (0.3, 2.5)
    assert parsed.stage_augment("stage2") == AugmentConfig() and parsed.finetune.iterations == 2
    assert load_recipe(REPO / "config" / "training" / "smoke.yaml").sod.finetune is None
    # sod.extend: stage 1 run on by a second decay, before the fine-tune, with a sampler seed of its own.
    bad.write_text("data: {synthetic: {sequences: 2}}\nsod: {finetune: {iterations: 2, batch_size: 2, lr: 0.1}, "
                   "extend: {iterations: 3, batch_size: 2, lr: 0.05, seed: 1, loss: bce_iou}}\n")
    parsed = load_recipe(bad).sod
    assert [name for name, _ in parsed.stages()] == ["stage1", "extend", "finetune", "stage2"]
    assert parsed.extend is not None and (parsed.extend.iterations, parsed.extend.seed) == (3, 1)
    assert (parsed.stage_loss("extend"), parsed.stage1.seed) == ("bce_iou", 0)
    assert load_recipe(REPO / "config" / "training" / "smoke.yaml").sod.extend is None
    for wrong in ("zoom_out: 1.5", "zoom_out_max: 0.5", "border: wrap"):
        refused(f"data: {{synthetic: {{sequences: 2}}}}\nsod: {{stage1: {{iterations: 2, batch_size: 2, "
                f"lr: 0.1, augment: {{{wrong}}}}}}}\n", "sod.stage1.augment: zoom_out is a chance")
    refused("data: {synthetic: {sequences: 2}}\nsod: {finetune: {augment: {rotation_deg: 0}}}\n",
            "sod.finetune.augment: unknown keys")
    refused("data: {synthetic: {sequences: 2}}\nsod: {finetune: {augment: {zoom_out: 0.3}}}\n",
            r"sod.finetune: \['batch_size', 'iterations', 'lr'\] must be set")
    refused("data: {synthetic: {sequences: 2}}\nsod: {augment: {zoom_out: 0.3}}\n", "sod.augment is set per stage")
    # Each single-frame stage's ground-truth loss: BCE unless named; stage 2 keeps the paper's.
    assert (drone.sod.stage_loss("stage1"), drone.sod.stage_loss("stage2")) == ("bce", "distillation")
    bad.write_text("data: {synthetic: {sequences: 2}}\nsod: {finetune: {iterations: 2, batch_size: 2, lr: 0.1, "
                   "loss: structure}}\n")
    assert (load_recipe(bad).sod.stage_loss("finetune"), load_recipe(bad).sod.stage_loss("stage1")) == ("structure", "bce")
    refused("data: {synthetic: {sequences: 2}}\nsod: {stage1: {iterations: 2, batch_size: 2, lr: 0.1, loss: dice}}\n",
            r"sod.stage1.loss: stage1, extend and finetune take one of \['bce', 'bce_iou', 'structure'\]")
    refused("data: {synthetic: {sequences: 2}}\nsod: {stage2: {iterations: 2, batch_size: 2, lr: 0.1, loss: bce}}\n",
            "stage2 trains with the paper's distillation loss")
    # A stage after stage 1 may start from its export (the shipped fine-tune did); stage 1 cannot.
    assert drone.sod.from_export == frozenset({"finetune"})
    refused("data: {synthetic: {sequences: 2}}\nsod: {stage1: {iterations: 2, batch_size: 2, lr: 0.1, from_export: true}}\n",
            "only a stage after stage 1 can start from an export")
    refused("data: {synthetic: {sequences: 2}}\nsod: {finetune: {iterations: 2, batch_size: 2, lr: 0.1, from_export: 1.0}}\n",
            "sod.finetune.from_export is true or false")
    # A continuation of stage 1 may be a soup: one run per seed, averaged.
    bad.write_text("data: {synthetic: {sequences: 2}}\nsod: {finetune: {iterations: 2, batch_size: 2, lr: 0.1, soup: [0, 3]}}\n")
    assert load_recipe(bad).sod.soups == {"finetune": (0, 3)}
    assert load_recipe(REPO / "config" / "training" / "smoke.yaml").sod.soups == {}
    for stage, seeds in (("stage1", "[0, 1]"), ("stage2", "[0, 1]"), ("finetune", "[1]"), ("finetune", "[1, 1]"),
                         ("finetune", "[0, -1]"), ("finetune", "[0, true]"), ("finetune", "3")):
        refused(f"data: {{synthetic: {{sequences: 2}}}}\nsod: {{{stage}: {{iterations: 2, batch_size: 2, lr: 0.1, "
                f"soup: {seeds}}}}}\n", f"sod.{stage}.soup: extend and finetune take a list of two or more distinct seeds")
    refused("data: {synthetic: {sequences: 2}}\nsod: {finetune: {iterations: 2, batch_size: 2, lr: 0.1, seed: 2, "
            "soup: [0, 1]}}\n", "beside seed")
    refused("sod: {}\n", "data.train is empty")
    refused("data: {synthetic: {sequences: 2}}\nskd: {pair_alignment: optical}\n", "pair_alignment")
    refused("data: {synthetic: {sequences: 2}}\nsod: {video_repeat: 0}\n", "video_repeat")
    refused("data: {synthetic: {sequences: 2}}\nsod: {stage1: {iterations: 1, batch_size: 1, lr: 1, schedule: step}}\n",
            "schedule")
    refused("data: {synthetic: {sequences: 2}}\nskd: {sst: {iterations: 1, batch_size: 1, lr: 1, ema: 1.0}}\n",
            r"skd.sst: ema is a decay in \[0, 1\)")
    refused("data: {synthetic: {sequences: 2}}\nskd: {sizes: [64], batch_sizes: {128: 32}}\n", "batch_sizes")
    refused("data: {synthetic: {sequences: 2}}\nskd: {images: 100}\n", "skd.images .* needs data.images")
    bad.write_text("data: {synthetic: {sequences: 2}}\nskd: {dilations: [2, 4, 2, 4]}\n")
    assert load_recipe(bad).skd.widths.dilations == (2, 4, 2, 4) and drone.skd.widths.dilations == (1, 1, 1, 1)
    refused("data: {synthetic: {sequences: 2}}\nskd: {dilations: [2, 4]}\n", "four positive integers")
    refused("data: {synthetic: {sequences: 2}}\nskd: {sst_images: 'no'}\n", "skd.sst_images must be true or false")
    refused("data: {synthetic: {sequences: 2}}\nskd: {zoom: 0.5}\n", "skd.zoom must be >= 1")
    refused("data: {synthetic: {sequences: 2}}\nskd: {sizes: [64, 32], mosaic: {probability: 0.5, grids: [64]}}\n",
            "skd.mosaic.grids")
    refused("data: {synthetic: {sequences: 2}}\nskd: {sizes: [32], aspect: 1.75, mosaic: {probability: 0.5, grids: [8]}}\n",
            r"divide both sides of every student input \['24x44'\]")
    refused("data: {synthetic: {sequences: 2}}\nskd: {aspect: 0}\n", "skd.aspect")
    refused("data: {synthetic: {sequences: 2}}\nskd: {mosaic: {probability: 1.5}}\n", "probability must lie in")
    refused("data: {synthetic: {sequences: 2}}\nskd: {mosaic: {p: 0.5}}\n", "skd.mosaic: unknown keys")
    refused("data: {synthetic: {sequences: 2}}\nskd: {paste: {probability: 0.5}}\n",
            "skd.paste cuts its objects out of data.images")
    images = f"data: {{synthetic: {{sequences: 2}}, images: ['{tmp_path}']}}\n"
    bad.write_text(images + "skd: {paste: {probability: 0.5, height: [0.02, 0.1], most: 2}}\n")
    assert load_recipe(bad).skd.paste == PasteConfig(0.5, 2000, 2, (0.02, 0.1), 0.03)
    assert drone.skd.paste.probability == 0.0
    for paste in ("{size: 3}", "{height: [0.2, 0.1]}", "{height: [0.1]}", "{probability: 2}", "{most: 0}", "{motion: 0.5}"):
        refused(images + f"skd: {{paste: {paste}}}\n", "skd.paste")
    refused("data: {synthetic: {sequences: 2}}\nexport: {fp16: true}\n", "export: unknown keys")
    for shape in ("{128: [96, 160]}", "{64: [48, 86]}", "{64: [48]}"):  # a size not trained; not /4; not 2 sides
        refused(f"data: {{synthetic: {{sequences: 2}}}}\nexport: {{student_shape: {shape}}}\n",
                "export.student_shape must map sizes in skd.sizes")
    refused("data: {synthetic: {sequences: 2}}\nskd: {sizes: [64]}\nexport: {student_shape: {64: [48, 80]}}\n",
            "needs data.val")
    for shape in ("[192, 336]", "[192]", "192", "[0, 320]"):  # not /32; one side; not a list; empty
        refused(f"data: {{synthetic: {{sequences: 2}}}}\nexport: {{sod_shape: {shape}}}\n", "export.sod_shape must be")
    refused("data: {synthetic: {sequences: 2}}\nexport: {sod_shape: [192, 320]}\n", "sod_shape needs data.val")
    assert drone.saliency_shape == (128, 256) and drone.sod_shape == (224, 320)
    refused("data: {synthetic: {sequences: 2}}\nexport: {saliency_shape: [128, 250]}\n",
            "export.saliency_shape must be")
