"""SKD training (paper 001): cache the teachers' maps, train Ss and St with
mu * Lsoft + (1 - mu) * Lhard on resolution-reduced frames, then fuse them into Sst and
fine-tune it with Lhard (Adam).

Teachers (NOTES.md): the trained SOD net. Spatial teacher Ts = sigmoid(P2) of one frame at
full resolution; temporal teacher Tt = sigmoid(P3) of the current frame from the inter-frame
encoder fed (previous, current). Both are computed once per frame and gap, area-downsampled
(the paper's R) to each student size and kept in memory: at 64x64 the whole DAVIS train split
is about 100 MB, so students train without touching the disk.

Still images (DUTS-TR, `skd.images`) widen what the students see beyond DAVIS's 30 clips: the
spatial teacher labels each one, and it becomes a pair with a copy of itself under a random
small camera motion (what a hovering drone's pair looks like), so Tt = Ts for it. With
`skd.sst_images: false` only Ss and St see them; Sst is fitted to the video pairs.

Mosaics (`skd.mosaic`) tile n x n training pairs, each area-reduced n times, into one: the
objects of DAVIS and DUTS fill a large, central part of their frames, a drone's target a few
pixels anywhere in it. A mosaic shows the students objects 1/n the size, off the centre, with
the real motion of their own clips.

Pasted objects (`skd.paste`) bring a drone's scale without a mosaic's shrunk backgrounds:
objects cut out of the stills by their masks, a few pixels tall, are pasted into a pair at
full scale, moving between its two frames by themselves. The teacher never saw them, so in
their pixels the teacher's maps and the mask become the object's own mask.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from saliency_ros.models import create_model
from saliency_ros.models.losses import normalized_l2, student_loss
from saliency_ros.models.skd import build_sst_from_students
from saliency_ros.models.sod import SODNet
from saliency_ros.runtime import egomotion
from saliency_ros.runtime.model_card import InputSpec
from saliency_ros.runtime.preprocess import normalize, resize, to_input
from saliency_ros.training.common import Runtime, StoppedEarly, fit, read_stage, stage_done, write_json
from saliency_ros.training.data import VideoSequence
from saliency_ros.training.data.pairs import read_image, read_mask
from saliency_ros.training.evaluate import evaluate
from saliency_ros.training.export import input_spec
from saliency_ros.training.recipe import MosaicConfig, PasteConfig, Recipe


@dataclass
class TeacherCache:
    """Everything a student of one size trains on, frame-indexed across all sequences."""

    size: int
    max_gap: int
    frames: np.ndarray  # N x 3 x s x s, normalised as the card says
    gt: np.ndarray  # N x 1 x s x s, R(Y)
    spatial: np.ndarray  # N x 1 x s x s, R(Ts)
    temporal: np.ndarray  # N x G x 1 x s x s, R(Tt) for gaps 1..G (zeros where t < k)
    position: np.ndarray  # N, index of the frame within its sequence
    motion: np.ndarray  # N x G x 3 x 3, ego-motion t-k -> t (normalised; identity if not aligned)


@dataclass
class StillCache:
    """Still images for the students at one size: frames, R(Y) and R(Ts)."""

    size: int
    frames: np.ndarray  # N x 3 x s x s, normalised as the card says
    gt: np.ndarray  # N x 1 x s x s
    spatial: np.ndarray  # N x 1 x s x s


# Simulated camera motion between a still and its "previous" copy: shift (fraction of the
# side), rotation (degrees) and scale change, each drawn uniformly within +-.
STILL_SHIFT, STILL_ROTATION_DEG, STILL_SCALE = 0.03, 2.0, 0.03


def camera_motion(rng: np.random.Generator) -> np.ndarray:
    """A random small similarity about the image centre, as a normalised homography."""
    angle = np.deg2rad(rng.uniform(-STILL_ROTATION_DEG, STILL_ROTATION_DEG))
    scale = 1.0 + rng.uniform(-STILL_SCALE, STILL_SCALE)
    tx, ty = rng.uniform(-STILL_SHIFT, STILL_SHIFT, size=2)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    about = np.array([[1.0, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    return about @ np.array([[c, -s, tx], [s, c, ty], [0, 0, 1]]) @ np.linalg.inv(about)


def zoom_crop(rng: np.random.Generator, zoom: float) -> np.ndarray:
    """A random zoom-in as a normalised homography: the window of 1/z of each side (z uniform
    in [1, `zoom`]) at a random place, stretched over the whole image. Identity, drawing
    nothing, when `zoom` is 1, so recipes without it train exactly as before."""
    if zoom == 1.0:
        return egomotion.IDENTITY
    z = rng.uniform(1.0, zoom)
    x0, y0 = rng.uniform(0.0, 1.0 - 1.0 / z, size=2)
    return np.array([[z, 0.0, -x0 * z], [0.0, z, -y0 * z], [0.0, 0.0, 1.0]])


def mosaic(tiles: list[np.ndarray], n: int) -> np.ndarray:
    """n x n tiles (each C x h x w, both divisible by n), row-major, each area-reduced n times
    (the mean of every n x n block), as one C x h x w image."""
    c, h, w = tiles[0].shape
    small = [t.reshape(c, h // n, n, w // n, n).mean(axis=(2, 4)) for t in tiles]
    return np.concatenate([np.concatenate(small[r * n : (r + 1) * n], axis=2) for r in range(n)], axis=1)


def _area(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    return resize(x, spec.width, spec.height, "area")


def _reduced(images: list[np.ndarray], masks: list[np.ndarray], spatial: Iterable[np.ndarray],
             spec: InputSpec) -> dict[str, np.ndarray]:
    """Frames (normalised as the student's card says), R(Y) and R(Ts) at one student's input."""
    return {"frames": np.stack([normalize(_area(im, spec), spec) for im in images]),
            "gt": np.stack([_area(m, spec) for m in masks])[:, None],
            "spatial": np.stack([_area(m, spec) for m in spatial])[:, None]}


@torch.no_grad()
def cache_teachers(
    net: SODNet, sequences: list[VideoSequence], sizes: tuple[int, ...], max_gap: int,
    run: Runtime, batch: int = 8, alignment: str = "none", aspect: float = 1.0,
) -> dict[int, TeacherCache]:
    """Run both teachers over every frame (full resolution) and reduce to each student size
    (`student_shape` at `aspect`).

    With an `alignment`, the ego-motion of every (t - k, t) pair is estimated once, on the
    full frames as the node does (`runtime.egomotion`), and kept for the students' pairs.
    """
    net = net.to(run.device).eval()
    if net.encoder is None or net.unit3 is None:
        raise ValueError("the temporal teacher needs an SOD net trained with its inter-frame encoder")
    parts: dict[int, dict[str, list[np.ndarray]]] = {
        s: {k: [] for k in ("frames", "gt", "spatial", "temporal", "position", "motion")} for s in sizes
    }
    motion_cfg = None if alignment == "none" else egomotion.MotionConfig(model=alignment)
    for seq in tqdm(sequences, desc="teachers"):
        images = [read_image(p) for p in seq.frames]
        masks = [read_mask(p) for p in seq.masks]
        h, w = images[0].shape[:2]
        full = dataclasses.replace(input_spec("sod_effl0", 32), height=max(32, round(h / 32) * 32),
                                   width=max(32, round(w / 32) * 32))
        highs, p2s = [], []
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.concatenate([to_input(im, full) for im in images[i : i + batch]]))
            feats = net.trunk(x.to(run.device))
            highs.append(feats.high)
            p2s.append(feats.logits[2])
        high, p2 = torch.cat(highs), torch.cat(p2s)

        def to_frame(logits: torch.Tensor) -> np.ndarray:
            prob = torch.sigmoid(F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False))
            return prob[:, 0].float().cpu().numpy()

        spatial = to_frame(p2)
        temporal = np.zeros((len(images), max_gap, h, w), np.float32)
        for k in range(1, max_gap + 1):
            if len(images) <= k:
                continue
            # frame = t - k (previous), adjacent = t (current): P3 belongs to frame t.
            p3 = net.unit3(p2[k:], net.encoder(high[:-k], high[k:]))
            temporal[k:, k - 1] = to_frame(p3)
        motion = np.tile(np.eye(3), (len(images), max_gap, 1, 1))
        if motion_cfg is not None:
            grays = [egomotion.working_gray(im, motion_cfg) for im in images]
            for t in range(1, len(images)):
                for k in range(1, min(max_gap, t) + 1):
                    motion[t, k - 1] = egomotion.estimate(grays[t - k], grays[t], motion_cfg).homography
        for s in sizes:
            part, spec = parts[s], input_spec("skd_sst", s, aspect=aspect)
            for key, value in _reduced(images, masks, spatial, spec).items():
                part[key].append(value)
            part["temporal"].append(np.stack([[_area(m, spec) for m in row] for row in temporal])[:, :, None])
            part["position"].append(np.arange(len(images)))
            part["motion"].append(motion)
    dtypes = {"position": np.int64, "motion": np.float64}
    return {
        s: TeacherCache(s, max_gap, *(np.concatenate(parts[s][k]).astype(dtypes.get(k, np.float32))
                                      for k in ("frames", "gt", "spatial", "temporal", "position", "motion")))
        for s in sizes
    }


def _drawn_stills(images: list[VideoSequence], count: int, seed: int, key: str) -> list[tuple[Path, Path]]:
    """(image, mask) paths of `count` still images, a seeded draw in file order (all when there
    are fewer); `key` names the recipe key that asked, for the error when there are none."""
    paths = [(f, m) for seq in images for f, m in zip(seq.frames, seq.masks)]
    if not paths:
        raise ValueError(f"{key} asks for still images but the recipe's data.images holds none")
    return [paths[j] for j in np.sort(np.random.default_rng(seed).permutation(len(paths))[:count])]


@torch.no_grad()
def cache_still_teachers(
    net: SODNet, images: list[VideoSequence], sizes: tuple[int, ...], count: int, input_size: int,
    run: Runtime, seed: int, batch: int = 16, aspect: float = 1.0,
) -> dict[int, StillCache]:
    """Label `count` still images (a seeded draw; all when there are fewer) with the deployed
    SOD net at its training size, and reduce image, mask and map to each student size."""
    chosen = _drawn_stills(images, count, seed, "skd.images")
    spec = input_spec("sod_effl0", input_size)
    deployed = net.to(run.device).eval().deploy()
    parts: dict[int, dict[str, list[np.ndarray]]] = {s: {"frames": [], "gt": [], "spatial": []} for s in sizes}
    specs = {s: input_spec("skd_sst", s, aspect=aspect) for s in sizes}
    for i in tqdm(range(0, len(chosen), batch), desc="still teachers", unit_scale=batch):
        block = chosen[i : i + batch]
        frames, masks = [read_image(f) for f, _ in block], [read_mask(m) for _, m in block]
        x = torch.from_numpy(np.concatenate([to_input(im, spec) for im in frames]))
        maps = deployed(x.to(run.device))[:, 0].float().cpu().numpy()
        for s in sizes:
            for key, value in _reduced(frames, masks, maps, specs[s]).items():
                parts[s][key].append(value)
    return {s: StillCache(s, *(np.concatenate(parts[s][k]).astype(np.float32) for k in ("frames", "gt", "spatial")))
            for s in sizes}


@dataclass
class Cutouts:
    """Objects cut out of still images for `paste_objects`: each normalised as the card says
    (3 x h x w, its longer side at most CUTOUT_SIDE) with its mask (h x w, in [0, 1])."""

    pixels: list[np.ndarray]
    masks: list[np.ndarray]


# Cut-outs are kept this small (pixels, longer side): pasted, they are shrunk further.
CUTOUT_SIDE = 48


def cut_objects(images: list[VideoSequence], count: int, seed: int, spec: InputSpec) -> Cutouts:
    """The objects of `count` still images (a seeded draw; all when there are fewer): each image
    and mask cropped to the mask's box (pixels above 0.5) and area-reduced to CUTOUT_SIDE.
    Images with an empty mask are skipped."""
    pixels, masks = [], []
    for image_path, mask_path in tqdm(_drawn_stills(images, count, seed, "skd.paste"), desc="cut-outs"):
        image, mask = read_image(image_path), read_mask(mask_path)
        ys, xs = np.nonzero(mask > 0.5)
        if not len(ys):
            continue
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        h, w = ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()
        f = min(1.0, CUTOUT_SIDE / max(h, w))
        size = (max(1, round(w * f)), max(1, round(h * f)))
        pixels.append(normalize(cv2.resize(image[box], size, interpolation=cv2.INTER_AREA), spec))
        masks.append(cv2.resize(mask[box], size, interpolation=cv2.INTER_AREA))
    if not pixels:
        raise ValueError("skd.paste: every drawn still image has an empty mask")
    return Cutouts(pixels, masks)


def paste_objects(sample: dict[str, np.ndarray], cutouts: Cutouts, cfg: PasteConfig,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`sample` (current, previous: C x H x W; mask, spatial, temporal: 1 x H x W) with 1 to
    `cfg.most` cut-outs pasted in: each `cfg.height` of H tall (aspect kept, at most half the
    width), at a random place in the current frame and up to `cfg.motion` of H away (each
    axis) in the previous one, blended by its mask; the three maps take the larger of
    themselves and the object's mask where it lands in the current frame."""
    out = {name: np.array(v, np.float32) for name, v in sample.items()}  # copies: caches stay intact
    _, height, width = out["current"].shape
    for _ in range(int(rng.integers(1, cfg.most + 1))):
        j = int(rng.integers(len(cutouts.pixels)))
        h0, w0 = cutouts.masks[j].shape
        h = max(2, round(rng.uniform(*cfg.height) * height))
        w = max(1, min(width // 2, round(h * w0 / h0)))
        pixels = cv2.resize(cutouts.pixels[j].transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(cutouts.masks[j], (w, h), interpolation=cv2.INTER_AREA)
        pixels = pixels.reshape(h, w, -1).transpose(2, 0, 1)
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        dy, dx = np.rint(rng.uniform(-cfg.motion, cfg.motion, size=2) * height).astype(int)
        py, px = int(np.clip(y - dy, 0, height - h)), int(np.clip(x - dx, 0, width - w))
        for frame, (top, left) in (("current", (y, x)), ("previous", (py, px))):
            window = out[frame][:, top : top + h, left : left + w]
            window += alpha * (pixels - window)
        for name in ("mask", "spatial", "temporal"):
            window = out[name][0, y : y + h, x : x + w]
            np.maximum(window, alpha, out=window)
    return out


class StudentDataset(Dataset):
    """Frames with a previous frame (ego-motion aligned when the cache holds motion), a gap k
    drawn per (seed, epoch, item), a random zoom-in crop (`zoom_crop`) and an h-flip shared by
    the pair and its maps; then the stills, if any, each paired with a copy of itself under a
    random `camera_motion`. With `mosaic`, an item is by chance the `mosaic` of itself and
    items drawn at random (each with its own gap, crop and flip); with `paste` and `cutouts`,
    it then by chance gets objects pasted in (`paste_objects`)."""

    def __init__(self, cache: TeacherCache, seed: int, stills: StillCache | None = None, zoom: float = 1.0,
                 mosaic: MosaicConfig = MosaicConfig(), paste: PasteConfig = PasteConfig(),
                 cutouts: Cutouts | None = None) -> None:
        if paste.probability and cutouts is None:
            raise ValueError("pasting objects needs their cut-outs")
        self.cache, self.stills, self.seed, self.epoch, self.zoom, self.mosaic = cache, stills, seed, 0, zoom, mosaic
        self.paste, self.cutouts = paste, cutouts
        self.items = np.flatnonzero(cache.position >= 1)
        if not len(self.items):
            raise ValueError("no frame has a previous frame: sequences of one frame only")

    def __len__(self) -> int:
        return len(self.items) + (0 if self.stills is None else len(self.stills.frames))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, item))
        sample = self._pair(item, rng)
        p, grids = self.mosaic.probability, self.mosaic.grids
        if p > 0 and rng.random() < p:  # draws nothing without mosaics: older recipes train as before
            n = int(rng.choice(grids))
            tiles = [sample] + [self._pair(int(j), rng) for j in rng.integers(0, len(self), n * n - 1)]
            sample = {name: mosaic([t[name] for t in tiles], n) for name in sample}
        if self.paste.probability and rng.random() < self.paste.probability:  # draws nothing when off
            sample = paste_objects(sample, self.cutouts, self.paste, rng)  # type: ignore[arg-type]
        return {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in sample.items()}

    def _pair(self, item: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        c = self.cache
        if item >= len(self.items):
            still, j = self.stills, item - len(self.items)
            current = previous = still.frames[j]
            to_previous = camera_motion(rng)
            maps = {"mask": still.gt[j], "spatial": still.spatial[j], "temporal": still.spatial[j]}
        else:
            i = int(self.items[item])
            k = int(rng.integers(1, min(c.max_gap, int(c.position[i])) + 1))
            current, previous, to_previous = c.frames[i], c.frames[i - k], c.motion[i, k - 1]
            maps = {"mask": c.gt[i], "spatial": c.spatial[i], "temporal": c.temporal[i, k - 1]}
        crop = zoom_crop(rng, self.zoom)
        sample = {n: egomotion.warp_input(v, crop) for n, v in maps.items()}
        sample["current"] = egomotion.warp_input(current, crop)
        sample["previous"] = egomotion.warp_input(previous, crop @ to_previous)  # one interpolation
        flip = rng.random() < 0.5
        return {n: v[..., ::-1] if flip else v for n, v in sample.items()}


def _loss(kind: str, mu: float):
    def loss(model: nn.Module, b: dict[str, Any]) -> torch.Tensor:
        if kind == "ss":
            return student_loss(model(b["current"]), b["spatial"], b["mask"], mu)
        if kind == "st":
            return student_loss(model(b["current"], b["previous"]), b["temporal"], b["mask"], mu)
        return normalized_l2(model(b["current"], b["previous"]), b["mask"])

    return loss


def _predict(model: nn.Module, kind: str):
    if kind == "ss":
        return lambda feeds: model(feeds["current"])
    return lambda feeds: model(feeds["current"], feeds["previous"])


def train_skd(
    recipe: Recipe, teacher: SODNet, train: list[VideoSequence], val: list[VideoSequence],
    run: Runtime, out: Path, stop_at: dict[str, int] | None = None, images: list[VideoSequence] | None = None,
) -> dict[int, nn.Module]:
    """Ss, St then Sst for every size of the recipe; returns {size: Sst}.

    Finished stages are reused with their recorded metrics and times; the teachers run only
    for the sizes that still have a stage to train, so a size added to a finished run (or a
    size's students brought in from a sweep run) costs only its own teacher pass.
    """
    cfg = recipe.skd
    kinds = (("ss", "skd_ss", "students"), ("st", "skd_st", "students"), ("sst", "skd_sst", "sst"))
    record_path = out / "skd.json"
    previous = json.loads(record_path.read_text()) if record_path.is_file() else {"teacher_seconds": 0.0, "sizes": {}}
    todo = tuple(size for size in cfg.sizes if str(size) not in previous["sizes"]
                 or not all(stage_done(out / str(size) / kind) for kind, _, _ in kinds))
    # The run folder's recorded teacher time while any of its sizes is kept, plus this call's pass.
    teacher_seconds = previous["teacher_seconds"] if len(todo) < len(cfg.sizes) else 0.0
    pairs: dict[int, StudentDataset] = {}
    video = pairs  # what Sst fine-tunes on (skd.sst_images)
    if todo:
        t0 = time.perf_counter()
        caches = cache_teachers(teacher, train, todo, recipe.data.gap[1], run, alignment=cfg.pair_alignment,
                                aspect=cfg.aspect)
        stills = (cache_still_teachers(teacher, images or [], todo, cfg.images, recipe.sod.input_size, run,
                                       recipe.seed, aspect=cfg.aspect) if cfg.images else {})
        cutouts = (cut_objects(images or [], cfg.paste.objects, recipe.seed, input_spec("skd_sst", todo[0]))
                   if cfg.paste.probability else None)
        teacher_seconds = round(teacher_seconds + time.perf_counter() - t0, 1)

        def dataset(size: int, still: StillCache | None) -> StudentDataset:
            return StudentDataset(caches[size], recipe.seed, still, cfg.zoom, cfg.mosaic, cfg.paste, cutouts)

        pairs = {size: dataset(size, stills.get(size)) for size in todo}
        video = pairs if cfg.sst_images or not stills else {size: dataset(size, None) for size in todo}
    record: dict[str, Any] = {"mu": cfg.mu, "teacher_seconds": teacher_seconds,
                              "hardware": run.describe(), "sizes": {}}
    results: dict[int, nn.Module] = {}
    for size in cfg.sizes:
        models: dict[str, nn.Module] = {}
        record["sizes"][size] = {"train_pairs": len(pairs[size]) if size in pairs
                                 else previous["sizes"][str(size)]["train_pairs"]}
        for kind, name, loop_kind in kinds:
            loop = cfg.loop(loop_kind, size)
            stage_dir = out / str(size) / kind
            torch.manual_seed(recipe.seed)
            model = (build_sst_from_students(models["ss"], models["st"]) if kind == "sst"
                     else create_model(name, input_size=size, widths=cfg.widths))
            done = stage_dir / "model.pt"
            if stage_done(stage_dir):
                model.load_state_dict(torch.load(done, map_location="cpu", weights_only=True))
                stage = read_stage(stage_dir)
            else:
                data = video[size] if kind == "sst" else pairs[size]
                result = fit(model, data, _loss(kind, cfg.mu), loop, run, stage_dir,
                             f"SKD-{size} {kind}", stop_at=(stop_at or {}).get(f"{kind}{size}"))
                if result.reached < loop.iterations:
                    raise StoppedEarly(f"SKD-{size} {kind} stopped at its stop_at; run again to resume")
                t1 = time.perf_counter()  # seconds = training over every resume + validation
                model.eval()
                spec = input_spec(name, size, "none" if kind == "ss" else cfg.pair_alignment, cfg.aspect)
                metrics = evaluate(_predict(model, kind), val, spec, run.device, desc=f"SKD-{size} {kind} val")
                stage = {"iterations": loop.iterations, "val": metrics,
                         "seconds": round(result.seconds + time.perf_counter() - t1, 1)}
                if run.is_main:
                    torch.save(model.state_dict(), done)
                    write_json(stage_dir / "stage.json", stage)
            record["sizes"][size][kind] = stage
            models[kind] = model.eval()
        results[size] = models["sst"]
    if run.is_main:
        write_json(record_path, record)
    return results
