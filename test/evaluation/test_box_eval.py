"""Box ground truth through bags and the offline evaluation: boxes stamped like their frames
(both storages), out-of-view frames counted, and every method scored with the pointing game."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from saliency_ros.evaluation.bags import GT_BOX_TOPIC, BagReader, build_bags, clips_from, open_frames
from saliency_ros.evaluation.offline import OfflineOptions, evaluate
from test.conftest import REPO
from test.sources.test_boxes import write_box_clip

# 64 x 48 frames: frame 0 has the target at the centre, frame 1 in a corner, frame 2 out of view.
BOXES = ["28,20,8,8", "0,0,4,4", "NaN,NaN,NaN,NaN", "29.5,21,6.5,6"]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_boxes_round_trip_with_the_frames_stamps(tmp_path: Path, storage: str) -> None:
    write_box_clip(tmp_path / "data" / "clip", BOXES)
    (bag,) = build_bags(clips_from(tmp_path / "data", fps=10), tmp_path / "bag", storage, single=True)
    reader = BagReader(bag)
    assert reader.has_ground_truth and reader.box_topic == GT_BOX_TOPIC and reader.gt_topic is None
    frames = list(reader.frames())
    assert [f.box[:2] for f in frames if not math.isnan(f.box[0])] == [(28, 20), (0, 0), (29.5, 21)]
    assert frames[3].box == (29.5, 21.0, 6.5, 6.0) and all(math.isnan(v) for v in frames[2].box)
    assert np.diff([f.stamp_ns for f in frames]).tolist() == [100_000_000] * 3


def test_offline_scores_boxes_for_every_method(tmp_path: Path) -> None:
    write_box_clip(tmp_path / "data" / "clip", BOXES)
    (bag,) = build_bags(clips_from(tmp_path / "data", fps=10), tmp_path / "bag", single=True)
    result, _ = evaluate([bag], OfflineOptions(REPO / "config" / "drone.yaml", progress=False))
    methods = result["methods"]
    assert {"sst", "sod", "spectral_residual", "fine_grained", "binwang_motion", "centre_prior"} <= set(methods)
    centre = methods["centre_prior"]["overall"]
    # Centre prior by hand: hits frames 0 and 3 (central boxes), misses frame 1, skips frame 2.
    assert centre["box_frames"] == 3 and centre["box_out_of_view"] == 1
    assert centre["pointing_hit_rate"] == pytest.approx(2 / 3)
    assert methods["sod"]["overall"]["box_frames"] == 3
    assert methods["sst"]["overall"]["box_frames"] == 3  # the default /saliency model reads one frame
    assert "fbeta_max" not in centre  # no masks in this bag: no mask metrics


def test_a_dataset_folder_scores_exactly_as_its_bag(tmp_path: Path) -> None:
    write_box_clip(tmp_path / "data" / "one", BOXES)
    write_box_clip(tmp_path / "data" / "two", BOXES[::-1])
    (bag,) = build_bags(clips_from(tmp_path / "data"), tmp_path / "bag", single=True)
    opts = OfflineOptions(REPO / "config" / "drone.yaml", progress=False, baselines=["centre_prior", "spectral_residual"])
    via_bag, _ = evaluate([bag], opts)
    direct, _ = evaluate([tmp_path / "data"], opts)
    def scores(result: dict) -> dict:
        return {m: (e.get("overall"), e.get("sequences")) for m, e in result["methods"].items()}

    assert scores(direct) == scores(via_bag) and direct["frames"] == via_bag["frames"] == 8
    assert direct["sequence_frames"] == {"one": 4, "two": 4}
    stamps = [f.stamp_ns for f in open_frames(tmp_path / "data").frames()]
    assert stamps == [f.stamp_ns for f in BagReader(bag).frames()]
