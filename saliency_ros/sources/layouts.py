"""Find the frames and masks of a dataset on disk, in any of the layouts we train from.

Video layouts give one `VideoSequence` per clip; image SOD datasets (DUTS) give one sequence
of unrelated images. Every frame must have its mask: a missing one is an error naming the
file, never a silently shorter set.

    ours     <root>/<seq>/frames/*.jpg,  <root>/<seq>/masks/*.png     (../shared/data/davis2016)
    davis    <root>/JPEGImages/480p/<seq>/*.jpg, <root>/Annotations/480p/<seq>/*.png
    davsod   <root>/<seq>/Imgs/*.jpg,    <root>/<seq>/GT_object_level/*.png
    dhf1k    <root>/<video>/images/*,    <root>/<video>/maps/*  (fixation maps as targets)
    duts     <root>/<ROOT>-Image/*,      <root>/<ROOT>-Mask/*.png  (single images; the official
             names, e.g. DUTS-TR/DUTS-TR-Image, DUTS-TR/DUTS-TR-Mask; also Imgs/ + GT/)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LAYOUTS = ("ours", "davis", "davsod", "dhf1k", "duts")


class DatasetError(ValueError):
    """The dataset on disk is missing, empty or inconsistent."""


@dataclass(frozen=True)
class VideoSequence:
    """One clip: frames in temporal order and the mask (or map) of each frame."""

    name: str
    frames: tuple[Path, ...]
    masks: tuple[Path, ...]
    temporal: bool = True  # False for image datasets: neighbours are unrelated

    def __len__(self) -> int:
        return len(self.frames)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _pair_up(name: str, frame_dir: Path, mask_dir: Path, temporal: bool = True) -> VideoSequence:
    for d in (frame_dir, mask_dir):
        if not d.is_dir():
            raise DatasetError(f"sequence {name!r}: folder {d} does not exist")
    frames = _images(frame_dir)
    masks = {p.stem: p for p in _images(mask_dir)}
    if not frames:
        raise DatasetError(f"sequence {name!r}: no images in {frame_dir}")
    missing = [f for f in frames if f.stem not in masks]
    if missing:
        raise DatasetError(
            f"sequence {name!r}: {len(missing)} frame(s) without a mask in {mask_dir}, "
            f"first: {missing[0].name}"
        )
    return VideoSequence(name, tuple(frames), tuple(masks[f.stem] for f in frames), temporal)


def sequence_folder(folder: Path) -> VideoSequence:
    """One sequence folder of our layout (`frames/` and `masks/`), named after the folder."""
    return _pair_up(Path(folder).name, Path(folder) / "frames", Path(folder) / "masks")


def _image_dataset_folders(root: Path) -> tuple[Path, Path] | None:
    """(images, masks) of an image SOD dataset: DUTS's official `<name>-Image`/`<name>-Mask`
    (as downloaded: DUTS-TR/DUTS-TR-Image), or the `Imgs`/`GT` convention of other sets."""
    for images, masks in ((root / f"{root.name}-Image", root / f"{root.name}-Mask"),
                          (root / "Imgs", root / "GT")):
        if images.is_dir() and masks.is_dir():
            return images, masks
    return None


def detect_layout(root: Path) -> str:
    """Guess the layout of `root` from its folder names."""
    if (root / "JPEGImages").is_dir():
        return "davis"
    if _image_dataset_folders(root) is not None:
        return "duts"
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if (child / "frames").is_dir():
            return "ours"
        if (child / "Imgs").is_dir():
            return "davsod"
        if (child / "images").is_dir() and (child / "maps").is_dir():
            return "dhf1k"
    raise DatasetError(f"cannot tell the layout of {root}; expected one of {LAYOUTS}")


def discover(root: Path, layout: str = "auto") -> list[VideoSequence]:
    """All sequences under `root`, sorted by name. Raises `DatasetError` on any gap."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; choose one of {LAYOUTS} or 'auto'")
    if layout == "duts":
        folders = _image_dataset_folders(root)
        if folders is None:
            raise DatasetError(f"DUTS layout: {root} has neither {root.name}-Image/ + {root.name}-Mask/ "
                               "nor Imgs/ + GT/")
        seqs = [_pair_up(root.name, *folders, temporal=False)]
    elif layout == "davis":
        frames_root = root / "JPEGImages" / "480p"
        if not frames_root.is_dir():
            raise DatasetError(f"DAVIS layout: folder {frames_root} does not exist")
        seqs = [
            _pair_up(d.name, d, root / "Annotations" / "480p" / d.name)
            for d in sorted(frames_root.iterdir()) if d.is_dir()
        ]
    else:
        sub = {"ours": ("frames", "masks"), "davsod": ("Imgs", "GT_object_level"),
               "dhf1k": ("images", "maps")}[layout]
        seqs = [
            _pair_up(d.name, d / sub[0], d / sub[1])
            for d in sorted(root.iterdir()) if d.is_dir()
        ]
    if not seqs:
        raise DatasetError(f"no sequences found in {root} (layout {layout!r})")
    return seqs
