"""Dataset layouts on tiny fixtures the tests write, and frame pairs with shared augmentation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from saliency_ros.training.data import AugmentConfig, DatasetError, FramePairDataset, detect_layout, discover
from saliency_ros.training.export import input_spec

W, H = 48, 40


def _frame(i: int) -> tuple[np.ndarray, np.ndarray]:
    """A bright square moving right by 2 px per frame over a gradient."""
    img = np.tile(np.linspace(0, 120, W, dtype=np.uint8), (H, 1))[..., None].repeat(3, axis=2)
    mask = np.zeros((H, W), np.uint8)
    x = 8 + 2 * i
    img[12:24, x:x + 12] = (40, 200, 250)
    mask[12:24, x:x + 12] = 255
    return img, mask


def _write(frame_dir: Path, mask_dir: Path, n: int = 5, ext: str = ".jpg") -> None:
    frame_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, mask = _frame(i)
        cv2.imwrite(str(frame_dir / f"{i:05d}{ext}"), img)
        cv2.imwrite(str(mask_dir / f"{i:05d}.png"), mask)


LAYOUT_WRITERS = {
    "ours": lambda r: [_write(r / s / "frames", r / s / "masks") for s in ("a", "b")],
    "davis": lambda r: [_write(r / "JPEGImages/480p" / s, r / "Annotations/480p" / s) for s in ("a", "b")],
    "davsod": lambda r: [_write(r / s / "Imgs", r / s / "GT_object_level") for s in ("a", "b")],
    "dhf1k": lambda r: [_write(r / s / "images", r / s / "maps", ext=".png") for s in ("a", "b")],
    "duts": lambda r: _write(r / "Imgs", r / "GT"),
}


def test_official_duts_folder_names_with_webp_images(tmp_path: Path) -> None:
    """DUTS as downloaded: DUTS-TR/DUTS-TR-Image/*.webp (here) or *.jpg, DUTS-TR-Mask/*.png."""
    root = tmp_path / "DUTS-TR"
    _write(root / "DUTS-TR-Image", root / "DUTS-TR-Mask", ext=".webp")
    assert detect_layout(root) == "duts"
    (seq,) = discover(root)
    assert len(seq) == 5 and not seq.temporal
    assert all(f.suffix == ".webp" and f.stem == m.stem for f, m in zip(seq.frames, seq.masks))
    ds = FramePairDataset([seq], input_spec("sod_effl0", 64))
    img, mask = _frame(3)
    expected = cv2.resize(mask, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    np.testing.assert_allclose(ds[3]["mask"][0].numpy(), expected, atol=1e-6)  # the right mask is paired
    (root / "DUTS-TR-Mask" / "00002.png").unlink()
    with pytest.raises(DatasetError, match="without a mask.*00002.webp"):
        discover(root)


@pytest.mark.data
def test_real_duts_tr_is_complete() -> None:
    from test.conftest import shared_data

    root = shared_data() / "duts" / "DUTS-TR"
    if not root.is_dir():
        pytest.skip(f"DUTS-TR not found at {root}")
    (seq,) = discover(root)
    assert len(seq) == 10_553 and seq.frames[0].suffix == ".webp"


@pytest.mark.parametrize("layout", list(LAYOUT_WRITERS))
def test_each_layout_is_found_and_detected(tmp_path: Path, layout: str) -> None:
    LAYOUT_WRITERS[layout](tmp_path)
    assert detect_layout(tmp_path) == layout
    seqs = discover(tmp_path)
    expected = 1 if layout == "duts" else 2
    assert len(seqs) == expected and all(len(s) == 5 for s in seqs)
    assert all(f.stem == m.stem for s in seqs for f, m in zip(s.frames, s.masks))
    assert seqs[0].temporal is (layout != "duts")


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "missing")
    LAYOUT_WRITERS["ours"](tmp_path)
    (tmp_path / "a" / "masks" / "00003.png").unlink()
    with pytest.raises(DatasetError, match="1 frame\\(s\\) without a mask.*00003.jpg"):
        discover(tmp_path)
    empty = tmp_path / "empty"
    (empty / "s" / "frames").mkdir(parents=True)
    (empty / "s" / "masks").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        discover(empty, "ours")


def test_size_mismatch_names_the_files(tmp_path: Path) -> None:
    LAYOUT_WRITERS["ours"](tmp_path)
    cv2.imwrite(str(tmp_path / "a" / "masks" / "00002.png"), np.zeros((10, 10), np.uint8))
    ds = FramePairDataset(discover(tmp_path), input_spec("skd_sst", 32), gap=(1, 1))
    with pytest.raises(DatasetError, match="size mismatch in 'a'.*00002.png is 10x10"):
        for i in range(len(ds)):
            ds[i]


def test_pairs_are_current_then_previous_at_the_gap(tmp_path: Path) -> None:
    LAYOUT_WRITERS["ours"](tmp_path)
    ds = FramePairDataset(discover(tmp_path), input_spec("skd_sst", 32), gap=(2, 2))
    sample = ds[3]  # sequence a, t = 4 -> previous t = 2
    assert sample["gap"] == 2
    assert sample["current"].shape == (3, 32, 32) and sample["mask"].shape == (1, 32, 32)
    # The square moves right: the current mask's centre of mass lies right of the previous one.
    cols = torch.arange(32, dtype=torch.float32)
    com = lambda m: float((m[0].sum(0) * cols).sum() / m.sum())  # noqa: E731
    assert com(sample["mask"]) > com(sample["previous_mask"]) + 1.0


def test_augmentation_is_shared_by_both_frames_and_masks(tmp_path: Path) -> None:
    LAYOUT_WRITERS["ours"](tmp_path)
    spec = input_spec("skd_sst", 32)
    ds = FramePairDataset(discover(tmp_path), spec, gap=(1, 3), augment=AugmentConfig(), seed=5)
    for item in range(len(ds)):
        s = ds[item]
        assert 1 <= s["gap"] <= 3
        # Moving the square by 2*gap px moves it in the crop by the same scaled amount in
        # both frames; a flip or rotation applied to one frame only would break the overlap.
        overlap = float((s["mask"] * s["previous_mask"]).sum() / s["mask"].sum().clamp(min=1))
        if s["mask"].sum() > 4:
            assert overlap > 0.2, (item, overlap)
        assert float(s["mask"].min()) >= 0 and float(s["mask"].max()) <= 1
    a, b = ds[2], ds[2]
    torch.testing.assert_close(a["current"], b["current"])  # reproducible per (seed, epoch)
    ds.set_epoch(1)
    assert not torch.equal(ds[2]["current"], a["current"])


def test_image_dataset_pairs_a_frame_with_itself(tmp_path: Path) -> None:
    LAYOUT_WRITERS["duts"](tmp_path)
    ds = FramePairDataset(discover(tmp_path), input_spec("skd_sst", 32))
    assert len(ds) == 5
    s = ds[0]
    torch.testing.assert_close(s["current"], s["previous"])


@pytest.mark.data
def test_real_davis_train_split_is_complete() -> None:
    from test.conftest import shared_data

    root = shared_data() / "davis2016" / "train"
    if not root.is_dir():
        pytest.skip(f"real data not found at {root}")
    seqs = discover(root)
    assert len(seqs) == 30 and sum(len(s) for s in seqs) == 2079


def test_a_sample_at_another_shape_keeps_its_objects_proportions(tmp_path: Path) -> None:
    """`(item, (h, w))` builds the sample at that shape; a batch twice as wide as the dataset's
    square gets crops about twice as wide, so the 12 x 12 square stays about square instead of
    being stretched 2x (`training.common.ShapedBatches` draws the shapes)."""
    LAYOUT_WRITERS["ours"](tmp_path)
    aug = AugmentConfig(rotation_deg=0.0, flip=0.0, jitter=0.0)
    ds = FramePairDataset(discover(tmp_path), input_spec("skd_sst", 32), augment=aug, seed=2)
    aspects = []
    for item in range(len(ds)):
        s = ds[(item, (32, 64))]
        assert s["current"].shape == (3, 32, 64) and s["mask"].shape == s["previous_mask"].shape == (1, 32, 64)
        rows, cols = np.nonzero(s["mask"][0].numpy() > 0.5)
        if rows.size > 4:
            aspects.append((np.ptp(cols) + 1) / (np.ptp(rows) + 1))
    assert len(aspects) >= 4 and 0.7 < float(np.mean(aspects)) < 1.4, aspects
    torch.testing.assert_close(ds[(3, (32, 32))]["current"], ds[3]["current"])  # the dataset's own shape


def test_zoom_out_shrinks_objects_and_keeps_masks_on_them(tmp_path: Path) -> None:
    """With `zoom_out` the whole frame shrinks by up to `zoom_out_max` per side inside the input,
    its border mirrored: each copy of the 12 x 12 square is smaller, and the mask still covers
    the square's pixels (its green, 200, lies above the gradient's, <= 120)."""
    LAYOUT_WRITERS["ours"](tmp_path)
    still = AugmentConfig(crop_scale=(1.0, 1.0), rotation_deg=0.0, flip=0.0, jitter=0.0)
    zoomed = AugmentConfig(crop_scale=(1.0, 1.0), rotation_deg=0.0, flip=0.0, jitter=0.0,
                           zoom_out=1.0, zoom_out_max=3.0)

    def largest_object(aug: AugmentConfig) -> list[int]:
        ds = FramePairDataset(discover(tmp_path), input_spec("skd_sst", 64), augment=aug, seed=4)
        sizes = []
        for item in range(len(ds)):
            s = ds[item]
            mask = (s["mask"][0].numpy() > 0.5).astype(np.uint8)
            green = s["current"][1].numpy()
            bright = green > green.min() + 0.7 * (green.max() - green.min())
            if mask.sum() >= 4:  # the mask lies on the bright square wherever it is
                assert (bright[mask > 0]).mean() > 0.8
            _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            sizes.append(int(stats[1:, cv2.CC_STAT_AREA].max()) if len(stats) > 1 else 0)
        return sizes

    plain, small = np.median(largest_object(still)), np.median(largest_object(zoomed))
    # A 12 x 12 square in a 48 x 40 frame fills about 17 x 19 of the 64 x 64 input unzoomed; a side
    # factor drawn log-uniformly from [1, 3] shrinks its area about 3x at the median.
    assert plain > 150 and small < plain / 2, (plain, small)


def test_zoom_out_on_the_mean_colour_canvas(tmp_path: Path) -> None:
    """`border: mean` puts the shrunk frame on a canvas of the model's mean colour, which
    normalises to 0 in every channel, with mask 0 there (SSD's zoom-out)."""
    LAYOUT_WRITERS["ours"](tmp_path)
    aug = AugmentConfig(crop_scale=(1.0, 1.0), rotation_deg=0.0, flip=0.0, jitter=0.0,
                        zoom_out=1.0, zoom_out_max=3.0, border="mean")
    ds = FramePairDataset(discover(tmp_path), input_spec("sod_effl0", 64), augment=aug, seed=4)
    canvas = []
    for item in range(len(ds)):
        s = ds[item]
        outside = (s["current"].abs() < 0.02).all(dim=0)  # rounding to uint8 leaves < 0.02
        assert float(s["mask"][0][outside].sum()) == 0.0
        canvas.append(float(outside.float().mean()))
    # The frame (48 x 40) fills the input's side only at factor 1: most samples show canvas.
    assert np.median(canvas) > 0.3, canvas
