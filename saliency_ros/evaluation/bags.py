"""rosbag2 files of camera frames and ground-truth masks: built from datasets, read for scoring.

A bag holds `/camera/image_raw` (sensor_msgs/Image, bgr8) and, where ground truth exists,
`/camera/gt_mask` (mono8, 0/255) and/or `/camera/gt_box` with the same header stamp; the log time is the stamp, so
`ros2 bag play` replays at the dataset frame rate. Several sequences in one bag are laid
end to end with a `SEQUENCE_GAP_NS` pause between them (longer than any `reset_after_ms` a
node accepts, so live pairing restarts at each boundary exactly as offline pairing does), and
their names and stamp ranges are stored in the bag's `custom_data`.

Target boxes (tracking ground truth) are `geometry_msgs/PolygonStamped`: the box's four corners
in the frame's pixels, float32, stamped like the frame; an empty polygon means the target is
out of view. `sensor_msgs/RegionOfInterest` was the obvious choice but has no header (nothing
to match a frame by except the log time, which `ros2 bag play` rewrites) and integer pixels
(a 5x4 px target's half-pixel box would be rounded away); a polygon also carries a rotated box.

Everything is written and read with `rosbags`; `bag_check` first walks the storage files so
that damage is reported with the file and offset, and the message counts are compared with
metadata.yaml so that a bag is never silently read as a shorter one.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.typesys import Stores, get_typestore

from saliency_ros.evaluation.bag_check import BagError, check_storage_file
from saliency_ros.sources.boxes import Box, discover_boxes, is_box_dataset
from saliency_ros.sources.files import VIDEO_SUFFIXES
from saliency_ros.sources.layouts import IMAGE_SUFFIXES, DatasetError, discover, sequence_folder

CAMERA_TOPIC = "/camera/image_raw"
GT_TOPIC = "/camera/gt_mask"
GT_BOX_TOPIC = "/camera/gt_box"
IMAGE_TYPE = "sensor_msgs/msg/Image"
BOX_TYPE = "geometry_msgs/msg/PolygonStamped"
OUT_OF_VIEW: Box = (float("nan"),) * 4  # type: ignore[assignment]
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
SEQUENCES_KEY = "saliency_ros.sequences"
SEQUENCE_GAP_NS = 2_000_000_000
DEFAULT_START_NS = 1_700_000_000_000_000_000  # fixed, so that two builds are byte-identical
DAVIS_FPS = 24.0
TYPESTORE = get_typestore(Stores.ROS2_KILTED)


@dataclass(frozen=True)
class Clip:
    """One sequence to write: frame files with their masks, or a video file without."""

    name: str
    fps: float
    frames: tuple[Path, ...] = ()
    masks: tuple[Path | None, ...] = ()
    video: Path | None = None
    boxes: tuple[Box, ...] = ()  # one target box per frame (NaN: out of view), or none


@dataclass(frozen=True)
class SequenceInfo:
    """Where one sequence lies in a bag."""

    name: str
    start_ns: int
    end_ns: int
    frames: int


@dataclass(frozen=True)
class BagFrame:
    """One camera frame of a bag and its ground-truth mask message, if the bag has one."""

    sequence: str
    index: int  # within the sequence
    stamp_ns: int
    image: Any  # sensor_msgs/Image as deserialized by rosbags (image_codec reads it as is)
    gt: Any | None
    box: Box | None = None  # the target box, NaNs when out of view; None: the bag has no boxes


# ----------------------------------------------------------------------------- building


def clips_from(source: Path, layout: str = "auto", fps: float | None = None,
               sequences: Sequence[str] | None = None) -> list[Clip]:
    """The clips of `source`: a dataset folder (any layout `discover` reads), one sequence
    folder of our layout (`frames/` + `masks/`), a folder of frames without masks, or a video."""
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() not in VIDEO_SUFFIXES:
            raise DatasetError(f"{source}: not a video file (expected one of {VIDEO_SUFFIXES})")
        cap = cv2.VideoCapture(str(source))
        opened, native = cap.isOpened(), cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        if not opened:
            raise DatasetError(f"{source}: OpenCV cannot open this video")
        return [Clip(source.stem, fps or native or 30.0, video=source)]
    if not source.is_dir():
        raise DatasetError(f"{source} does not exist")
    if is_box_dataset(source):
        boxed = discover_boxes(source)
        if sequences:
            boxed = [s for s in boxed if s.name in set(sequences)]
        return [Clip(s.name, fps or DAVIS_FPS, s.frames, (None,) * len(s), boxes=s.boxes) for s in boxed]
    if (source / "frames").is_dir():
        seqs = [sequence_folder(source)]
    elif any(p.suffix.lower() in IMAGE_SUFFIXES for p in source.iterdir()):
        frames = tuple(sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        return [Clip(source.name, fps or DAVIS_FPS, frames, (None,) * len(frames))]
    else:
        seqs = discover(source, layout)
    if sequences:
        unknown = sorted(set(sequences) - {s.name for s in seqs})
        if unknown:
            raise DatasetError(f"{source}: no sequence(s) {unknown}; it has {[s.name for s in seqs]}")
        seqs = [s for s in seqs if s.name in set(sequences)]
    return [Clip(s.name, fps or DAVIS_FPS, s.frames, s.masks) for s in seqs]


def _read_clip(clip: Clip, max_frames: int | None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(bgr frame, 0/255 mask or None) of each frame, checked as it is read."""
    if clip.video is not None:
        cap = cv2.VideoCapture(str(clip.video))
        try:
            n = 0
            while max_frames is None or n < max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                n += 1
                yield frame, None
            if n == 0:
                raise DatasetError(f"{clip.video}: no frame could be decoded")
        finally:
            cap.release()
        return
    for i, (fp, mp) in enumerate(zip(clip.frames, clip.masks)):
        if max_frames is not None and i >= max_frames:
            return
        frame = cv2.imread(str(fp), cv2.IMREAD_COLOR)
        if frame is None:
            raise DatasetError(f"{fp}: unreadable image (sequence {clip.name!r}, frame {i})")
        mask = None
        if mp is not None:
            raw = cv2.imread(str(mp), cv2.IMREAD_GRAYSCALE)
            if raw is None:
                raise DatasetError(f"{mp}: unreadable mask (sequence {clip.name!r}, frame {i})")
            if raw.shape != frame.shape[:2]:
                raise DatasetError(f"{mp}: mask is {raw.shape[1]}x{raw.shape[0]} but frame {fp.name} is "
                                   f"{frame.shape[1]}x{frame.shape[0]}")
            mask = np.where(raw > 127, 255, 0).astype(np.uint8)
        yield frame, mask


def image_message(img: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "camera") -> Any:
    """A rosbags sensor_msgs/Image of a contiguous uint8 HxW(xC) array."""
    types = TYPESTORE.types
    stamp = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    img = np.ascontiguousarray(img)
    return types[IMAGE_TYPE](
        header=types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id),
        height=img.shape[0], width=img.shape[1], encoding=encoding, is_bigendian=0,
        step=img.shape[1] * (img.shape[2] if img.ndim == 3 else 1), data=img.reshape(-1),
    )


def box_message(box: Box, stamp_ns: int, frame_id: str = "camera") -> Any:
    """A rosbags geometry_msgs/PolygonStamped of a box's corners (empty: out of view)."""
    types = TYPESTORE.types
    stamp = types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    x, y, w, h = box
    corners = [] if not all(np.isfinite(box)) else [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    point = types["geometry_msgs/msg/Point32"]
    return types[BOX_TYPE](header=types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id),
                           polygon=types["geometry_msgs/msg/Polygon"](points=[point(x=a, y=b, z=0.0) for a, b in corners]))


def polygon_box(msg: Any) -> Box:
    """The axis-aligned box around a PolygonStamped's points; NaNs for an empty polygon."""
    if not msg.polygon.points:
        return OUT_OF_VIEW
    xs = [float(p.x) for p in msg.polygon.points]
    ys = [float(p.y) for p in msg.polygon.points]
    return (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def _stamped(clips: Sequence[Clip], start_ns: int, max_frames: int | None
             ) -> Iterator[tuple[Clip, int, int, np.ndarray, np.ndarray | None]]:
    """(clip, index in it, stamp, frame, mask) for every frame of `clips` laid end to end: the
    timeline of a bag, shared by writing and direct reading."""
    stamp = start_ns
    for clip in clips:
        period_ns = int(round(1e9 / clip.fps))
        for n, (frame, mask) in enumerate(_read_clip(clip, max_frames)):
            yield clip, n, stamp, frame, mask
            stamp += period_ns
        stamp += SEQUENCE_GAP_NS


def write_bag(path: Path, clips: Sequence[Clip], storage: str = "mcap", start_ns: int = DEFAULT_START_NS,
              max_frames: int | None = None, progress: Any = None) -> list[SequenceInfo]:
    """Write `clips` end to end into one bag at `path` (which must not exist).

    `progress`, if given, is called with the number of frames written after each frame.
    """
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {list(STORAGES)}, got {storage!r}")
    if path.exists():
        raise FileExistsError(f"{path} already exists (remove it, or pass --force)")
    infos: list[SequenceInfo] = []
    writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
    writer.open()
    try:
        cam = writer.add_connection(CAMERA_TOPIC, IMAGE_TYPE, typestore=TYPESTORE)
        gt_con = box_con = None
        for clip, n, stamp, frame, mask in _stamped(clips, start_ns, max_frames):
            if n == 0:
                infos.append(SequenceInfo(clip.name, stamp, stamp, 0))
            infos[-1] = SequenceInfo(clip.name, infos[-1].start_ns, stamp, n + 1)
            writer.write(cam, stamp, TYPESTORE.serialize_cdr(image_message(frame, "bgr8", stamp), IMAGE_TYPE))
            box = clip.boxes[n] if clip.boxes else None
            if box is not None:
                if box_con is None:
                    box_con = writer.add_connection(GT_BOX_TOPIC, BOX_TYPE, typestore=TYPESTORE)
                writer.write(box_con, stamp, TYPESTORE.serialize_cdr(box_message(box, stamp), BOX_TYPE))
            if mask is not None:
                if gt_con is None:
                    gt_con = writer.add_connection(GT_TOPIC, IMAGE_TYPE, typestore=TYPESTORE)
                writer.write(gt_con, stamp, TYPESTORE.serialize_cdr(image_message(mask, "mono8", stamp), IMAGE_TYPE))
            if progress:
                progress(1)
        writer.set_custom_data(SEQUENCES_KEY, json.dumps([vars(i) for i in infos]))
    except BaseException:
        writer.close()
        shutil.rmtree(path, ignore_errors=True)  # never leave half a bag that reads as whole
        raise
    writer.close()
    return infos


def build_bags(clips: Sequence[Clip], out: Path, storage: str = "mcap", single: bool = False,
               force: bool = False, max_frames: int | None = None, progress: Any = None) -> list[Path]:
    """One bag per clip under the folder `out` (named after the clip), or all clips in the
    single bag `out`. Returns the bag paths."""
    targets = [(out, list(clips))] if single else [(out / c.name, [c]) for c in clips]
    for path, _ in targets:
        if path.exists():
            if not force:
                raise FileExistsError(f"{path} already exists (remove it, or pass --force)")
            shutil.rmtree(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not single:
        out.mkdir(parents=True, exist_ok=True)
    for path, group in targets:
        write_bag(path, group, storage, max_frames=max_frames, progress=progress)
    return [p for p, _ in targets]


# ----------------------------------------------------------------------------- reading


def cdr_stamp_ns(raw: bytes | memoryview) -> int:
    """Header stamp of a serialized message whose first field is std_msgs/Header (Image,
    CompressedImage), read from the CDR bytes without deserializing the image: players and
    recorders need only this, at 720p and 30 Hz."""
    if len(raw) < 12:
        raise ValueError(f"{len(raw)} bytes: too short for a CDR message with a header")
    little = raw[1] & 1
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


def _metadata(path: Path) -> dict[str, Any]:
    meta_file = path / "metadata.yaml"
    if not path.is_dir():
        raise BagError(path, "not a rosbag2 folder (give the folder that holds metadata.yaml)")
    if not meta_file.is_file():
        raise BagError(path, "no metadata.yaml: not a rosbag2 folder (or an unfinished recording; "
                       "`ros2 bag reindex` rebuilds it)")
    try:
        return yaml.safe_load(meta_file.read_text())["rosbag2_bagfile_information"]
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise BagError(meta_file, f"unreadable metadata: {err}") from None


class BagReader:
    """Frames of a bag in time order, with their ground truth, after checking the storage.

    `frames()` raises `BagError` if a message cannot be decoded or if the bag holds fewer
    messages than metadata.yaml lists (a cut-short bag is an error, not a shorter result).
    """

    def __init__(self, path: Path, camera_topic: str = CAMERA_TOPIC, gt_topic: str = GT_TOPIC,
                 box_topic: str = GT_BOX_TOPIC) -> None:
        self.path = Path(path)
        meta = _metadata(self.path)
        for rel in meta.get("relative_file_paths") or []:
            check_storage_file(self.path / rel)
        self.expected = {t["topic_metadata"]["name"]: int(t["message_count"])
                         for t in meta.get("topics_with_message_count") or []}
        if camera_topic not in self.expected:
            raise BagError(self.path, f"no {camera_topic} topic; the bag has {sorted(self.expected)}")
        self.camera_topic = camera_topic
        self.gt_topic = gt_topic if gt_topic in self.expected else None
        self.box_topic = box_topic if box_topic in self.expected else None
        listed = int(meta.get("message_count", -1))
        if listed != sum(self.expected.values()):
            raise BagError(self.path, f"metadata.yaml says message_count {listed}, but its topics list "
                           f"{sum(self.expected.values())} messages: the metadata was edited or is damaged")
        custom = (meta.get("custom_data") or {}).get(SEQUENCES_KEY)
        self.sequences = ([SequenceInfo(**s) for s in json.loads(custom)] if custom
                          else [SequenceInfo(self.path.name, 0, 2**63 - 1, self.expected[camera_topic])])
        self.frame_count = self.expected[camera_topic]
        if (in_sequences := sum(s.frames for s in self.sequences)) != self.frame_count:
            raise BagError(self.path, f"custom_data lists {in_sequences} frames in its sequences, the "
                           f"metadata {self.frame_count} on {camera_topic}")

    @property
    def has_ground_truth(self) -> bool:
        return self.gt_topic is not None or self.box_topic is not None

    @property
    def sequence_names(self) -> list[str]:
        return [s.name for s in self.sequences]

    def sequence_fps(self, name: str) -> float | None:
        """The frame rate of a sequence from its stamps; None when it has a single frame or
        the bag does not list its sequences."""
        s = next(s for s in self.sequences if s.name == name)
        if s.frames < 2 or s.end_ns == 2**63 - 1:
            return None
        return (s.frames - 1) * 1e9 / (s.end_ns - s.start_ns)

    def _sequence_of(self, stamp_ns: int) -> tuple[str, int]:
        for i, s in enumerate(self.sequences):
            if s.start_ns <= stamp_ns <= s.end_ns:
                return s.name, i
        raise BagError(self.path, f"frame stamped {stamp_ns} lies outside every sequence listed in "
                       "custom_data")

    def raw_camera_messages(self) -> Iterator[tuple[int, int, bytes]]:
        """(log time ns, header stamp ns, serialized CDR) of each camera frame: what a player
        publishes unchanged, as `ros2 bag play` does."""
        for _, log_ns, stamp_ns, raw, _ in self._messages([self.camera_topic]):
            yield log_ns, stamp_ns, raw

    def frames(self) -> Iterator[BagFrame]:
        """Each camera frame with its mask and box (matched by header stamp), in time order."""
        truth = [t for t in (self.gt_topic, self.box_topic) if t]
        images: dict[int, Any] = {}
        waiting: dict[str, dict[int, Any]] = {t: {} for t in truth}
        counters: dict[str, int] = {}
        for topic, _, stamp, _, msg in self._messages([self.camera_topic, *truth], decode=True):
            (images if topic == self.camera_topic else waiting[topic])[stamp] = msg
            for s in [s for s in images if all(s in w for w in waiting.values())]:
                name, _ = self._sequence_of(s)
                counters[name] = counters.get(name, 0) + 1
                mask = waiting[self.gt_topic].pop(s) if self.gt_topic else None
                box = polygon_box(waiting[self.box_topic].pop(s)) if self.box_topic else None
                yield BagFrame(name, counters[name] - 1, s, images.pop(s), mask, box)
            if len(images) > 64 or any(len(w) > 64 for w in waiting.values()):
                raise BagError(self.path, f"{len(images)} frames and {[len(w) for w in waiting.values()]} "
                               f"{truth} messages wait for their partner: the topics' header stamps do not match")
        if images:
            first = min(images)
            raise BagError(self.path, f"{len(images)} frame(s) have no {' / '.join(truth)} message with "
                           f"the same header stamp (first: {first})")
        for s in self.sequences:
            if counters.get(s.name, 0) != s.frames:
                raise BagError(self.path, f"custom_data lists {s.frames} frames in sequence {s.name!r}, "
                               f"the storage holds {counters.get(s.name, 0)} stamped within it")

    def _messages(self, topics: list[str], decode: bool = False) -> Iterator[tuple[str, int, int, bytes, Any]]:
        counts = dict.fromkeys(topics, 0)
        try:
            with Reader(self.path) as reader:
                cons = [c for c in reader.connections if c.topic in topics]
                for con, log_ns, raw in reader.messages(connections=cons):
                    counts[con.topic] += 1
                    try:
                        msg = TYPESTORE.deserialize_cdr(raw, con.msgtype) if decode else None
                        stamp = cdr_stamp_ns(raw)
                    except Exception as err:  # rosbags raises several types on bad CDR
                        raise BagError(self.path, f"message {counts[con.topic]} on {con.topic} (log time "
                                       f"{log_ns}) does not decode as {con.msgtype}: {err}") from None
                    yield con.topic, log_ns, stamp, raw, msg
        except BagError:
            raise
        except Exception as err:  # ReaderError, sqlite3 errors: all mean an unusable bag
            raise BagError(self.path, f"{type(err).__name__}: {err}") from None
        for topic in topics:
            if counts[topic] != self.expected[topic]:
                raise BagError(self.path, f"metadata.yaml lists {self.expected[topic]} messages on {topic}, "
                               f"the storage holds {counts[topic]}: the bag was cut short or edited")


class DatasetReader:
    """A dataset folder (or video) read as the bag `bag build --single` would make of it: the
    same frames, stamps, sequences and ground-truth messages, without writing the bag. Offline
    evaluation then runs on datasets directly, through exactly the code that reads bags."""

    def __init__(self, path: Path, fps: float | None = None) -> None:
        self.path = Path(path)
        self.clips = clips_from(self.path, fps=fps)
        self.frame_count = sum(len(c.frames) for c in self.clips if c.video is None) or None
        self.has_ground_truth = any(c.boxes or any(m is not None for m in c.masks) for c in self.clips)

    @property
    def sequence_names(self) -> list[str]:
        return [c.name for c in self.clips]

    def sequence_fps(self, name: str) -> float:
        """The frame rate the bag of this sequence would have (a video's own rate)."""
        return next(c.fps for c in self.clips if c.name == name)

    def frames(self) -> Iterator[BagFrame]:
        for clip, n, stamp, frame, mask in _stamped(self.clips, DEFAULT_START_NS, None):
            yield BagFrame(clip.name, n, stamp, image_message(frame, "bgr8", stamp),
                           None if mask is None else image_message(mask, "mono8", stamp),
                           clip.boxes[n] if clip.boxes else None)


def open_frames(path: Path) -> BagReader | DatasetReader:
    """A rosbag2 folder (it holds metadata.yaml) as a `BagReader`; any other dataset folder or
    video as a `DatasetReader`."""
    path = Path(path)
    return BagReader(path) if (path / "metadata.yaml").is_file() else DatasetReader(path)
