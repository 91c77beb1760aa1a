"""Bag building and reading: round trips in both storage formats and every refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from saliency_ros.evaluation.bag_check import BagError
from saliency_ros.evaluation.bags import (CAMERA_TOPIC, DEFAULT_START_NS, GT_TOPIC, SEQUENCE_GAP_NS, SEQUENCES_KEY,
                                          BagReader, DatasetReader, build_bags, clips_from)
from saliency_ros.image_codec import to_array, to_bgr8
from saliency_ros.sources.layouts import DatasetError
from test.conftest import write_dataset, write_video


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_is_lossless_with_stamps_at_the_frame_rate(tiny_dataset: Path, tmp_path: Path,
                                                              storage: str) -> None:
    (bag,) = build_bags(clips_from(tiny_dataset, fps=10.0), tmp_path / "b", storage, single=True)
    reader = BagReader(bag)
    assert [s.name for s in reader.sequences] == ["alpha", "beta"]
    assert reader.has_ground_truth and reader.frame_count == 11
    assert sorted(reader.expected) == sorted([CAMERA_TOPIC, GT_TOPIC])
    frames = list(reader.frames())
    assert [f.sequence for f in frames] == ["alpha"] * 6 + ["beta"] * 5
    for f in frames:
        name = f"{f.index:05d}.png"
        expected = cv2.imread(str(tiny_dataset / f.sequence / "frames" / name))
        mask = cv2.imread(str(tiny_dataset / f.sequence / "masks" / name), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(to_bgr8(f.image), expected)
        np.testing.assert_array_equal(to_array(f.gt), mask)
        assert f.image.encoding == "bgr8" and f.gt.encoding == "mono8"
        assert f.image.header.stamp == f.gt.header.stamp
    stamps = np.array([f.stamp_ns for f in frames])
    assert stamps[0] == DEFAULT_START_NS
    np.testing.assert_array_equal(np.diff(stamps[:6]), 100_000_000)  # 10 fps
    assert stamps[6] - stamps[5] == SEQUENCE_GAP_NS + 100_000_000


def test_one_bag_per_sequence_and_no_overwrite(tiny_dataset: Path, tmp_path: Path) -> None:
    bags = build_bags(clips_from(tiny_dataset, sequences=["beta"]), tmp_path / "per", "sqlite3")
    assert [b.name for b in bags] == ["beta"]
    assert [s.name for s in BagReader(bags[0]).sequences] == ["beta"]
    with pytest.raises(FileExistsError, match="already exists"):
        build_bags(clips_from(tiny_dataset, sequences=["beta"]), tmp_path / "per")
    build_bags(clips_from(tiny_dataset, sequences=["beta"]), tmp_path / "per", force=True)


def test_video_gives_frames_without_ground_truth(tmp_path: Path) -> None:
    (clip,) = clips_from(write_video(tmp_path / "clip.avi", 15.0, 7))
    assert clip.fps == pytest.approx(15.0)
    (bag,) = build_bags([clip], tmp_path / "v")
    reader = BagReader(bag)
    frames = list(reader.frames())
    assert not reader.has_ground_truth and len(frames) == 7 and frames[0].gt is None
    assert np.diff([f.stamp_ns for f in frames]).tolist() == [66_666_667] * 6
    assert reader.sequence_names == ["clip"] and reader.sequence_fps("clip") == pytest.approx(15.0, rel=1e-6)


def test_dataset_reader_names_the_sequences_its_frames_carry(tiny_dataset: Path, tmp_path: Path) -> None:
    """Read directly, a dataset or a video (whose length is known only once read) lists the
    sequences and frame rates its bag would have."""
    video = DatasetReader(write_video(tmp_path / "clip.avi", 15.0, 7))
    assert video.sequence_names == ["clip"] and video.sequence_fps("clip") == pytest.approx(15.0)
    assert {f.sequence for f in video.frames()} == {"clip"}
    folder = DatasetReader(tiny_dataset, fps=10.0)
    assert folder.sequence_names == ["alpha", "beta"] and folder.frame_count == 11
    assert [f.sequence for f in folder.frames()] == ["alpha"] * 6 + ["beta"] * 5


def test_dataset_errors_name_the_file(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", {"s": 3}, 64, 48)
    (root / "s" / "masks" / "00002.png").unlink()
    with pytest.raises(DatasetError, match="without a mask.*00002"):
        clips_from(root)
    root = write_dataset(tmp_path / "e", {"s": 3}, 64, 48)
    (root / "s" / "frames" / "00001.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="00001.png: unreadable image"):
        build_bags(clips_from(root), tmp_path / "out_e")
    assert not (tmp_path / "out_e" / "s").exists()  # no half bag left behind
    root = write_dataset(tmp_path / "f", {"s": 3}, 64, 48)
    cv2.imwrite(str(root / "s" / "masks" / "00000.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match="mask is 10x10 but frame 00000.png is 64x48"):
        build_bags(clips_from(root), tmp_path / "out_f")
    with pytest.raises(DatasetError, match="no sequence"):
        clips_from(root, sequences=["nope"])


def _storage_file(bag: Path) -> Path:
    (f,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    return f


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_is_reported_with_file_and_offset(tiny_dataset: Path, tmp_path: Path, storage: str) -> None:
    (bag,) = build_bags(clips_from(tiny_dataset), tmp_path / "t", storage, single=True)
    f = _storage_file(bag)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BagError, match="truncated") as info:
        BagReader(bag)
    assert info.value.path == f and info.value.offset is not None and 0 < info.value.offset <= len(data)
    assert str(f) in str(info.value) and "at byte" in str(info.value)


def test_corrupt_mcap_record_is_reported_at_its_offset(tiny_bag: Path, tmp_path: Path) -> None:
    bag = tmp_path / "c"
    shutil.copytree(tiny_bag, bag)
    f = _storage_file(bag)
    data = bytearray(f.read_bytes())
    first_record = 8
    data[first_record] = 0x7F  # an opcode MCAP does not have
    f.write_bytes(bytes(data))
    with pytest.raises(BagError, match="unknown MCAP record opcode 0x7f") as info:
        BagReader(bag)
    assert info.value.offset == first_record


def _edited_copy(tiny_bag: Path, tmp_path: Path, edit) -> Path:
    """A copy of `tiny_bag` whose metadata.yaml went through `edit(info)`."""
    bag = tmp_path / "m"
    shutil.copytree(tiny_bag, bag)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    edit(meta["rosbag2_bagfile_information"])
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    return bag


def test_bag_shorter_than_its_metadata_is_an_error(tiny_bag: Path, tmp_path: Path) -> None:
    def more(info: dict) -> None:  # every count one higher, consistently, no sequence list
        for t in info["topics_with_message_count"]:
            t["message_count"] += 1
        info["message_count"] += len(info["topics_with_message_count"])
        info.pop("custom_data")

    with pytest.raises(BagError, match="lists 12 messages on /camera/image_raw, the storage holds 11"):
        list(BagReader(_edited_copy(tiny_bag, tmp_path, more)).frames())


def test_metadata_totals_and_sequence_lists_must_agree(tiny_bag: Path, tmp_path: Path) -> None:
    def total(info: dict) -> None:
        info["message_count"] += 1

    with pytest.raises(BagError, match="says message_count 23, but its topics list 22"):
        BagReader(_edited_copy(tiny_bag, tmp_path / "a", total))

    def moved(info: dict) -> None:  # one frame moved from alpha to beta in the sequence list
        seqs = json.loads(info["custom_data"][SEQUENCES_KEY])
        seqs[0]["frames"] -= 1
        seqs[1]["frames"] += 1
        info["custom_data"][SEQUENCES_KEY] = json.dumps(seqs)

    with pytest.raises(BagError, match="lists 5 frames in sequence 'alpha', the storage holds 6"):
        list(BagReader(_edited_copy(tiny_bag, tmp_path / "b", moved)).frames())

    def dropped(info: dict) -> None:
        seqs = json.loads(info["custom_data"][SEQUENCES_KEY])
        info["custom_data"][SEQUENCES_KEY] = json.dumps(seqs[:1])

    with pytest.raises(BagError, match="custom_data lists 6 frames in its sequences, the metadata 11"):
        BagReader(_edited_copy(tiny_bag, tmp_path / "c", dropped))


def test_not_a_bag(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="not a rosbag2 folder"):
        BagReader(tmp_path)
    with pytest.raises(BagError, match="not a rosbag2 folder"):
        BagReader(tmp_path / "missing")


def test_one_sequence_folder(tiny_dataset: Path, tmp_path: Path) -> None:
    (clip,) = clips_from(tiny_dataset / "beta")
    assert clip.name == "beta" and len(clip.frames) == 5 and all(m is not None for m in clip.masks)
