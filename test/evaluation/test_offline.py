"""Offline evaluation end to end on a bag built by the test: scores, determinism, refusals,
the report files, and the same parameters as the nodes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from saliency_ros.evaluation.bags import TYPESTORE, IMAGE_TYPE, BagReader, build_bags, clips_from
from saliency_ros.evaluation.offline import (OBJECTS_DEFAULTS, SALIENCY_DEFAULTS, NodeConfig, OfflineOptions,
                                             evaluate)
from saliency_ros.evaluation.report import OverlayVideo
from test.conftest import REPO

PARAMS = REPO / "config" / "drone.yaml"


def _metrics(result: dict) -> dict:
    return {m: e.get("overall") for m, e in result["methods"].items()}


def _pair_params(tmp_path: Path) -> Path:
    """config/drone.yaml with a frame-pair model (Sst-128) on /saliency instead of the default."""
    params = yaml.safe_load(PARAMS.read_text())
    params["/**/saliency_node"]["ros__parameters"]["model"] = "skd_sst_128_int8.onnx"
    path = tmp_path / "pair_params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_scores_every_method_and_is_deterministic(tiny_bag: Path, tmp_path: Path) -> None:
    opts = OfflineOptions(PARAMS, progress=False)
    first, board = evaluate([tiny_bag], opts)
    second, _ = evaluate([tiny_bag], OfflineOptions(PARAMS, progress=False))
    assert _metrics(first) == _metrics(second)
    m = first["methods"]
    assert set(m) == {"sst", "sod", "sod_mask", "spectral_residual", "fine_grained", "binwang_motion", "centre_prior"}
    # The default /saliency model reads one frame: every frame has a map, as in the node.
    assert m["sst"]["overall"]["frames"] == 11 and m["sod"]["overall"]["frames"] == 11
    # A pair model (Sst) needs a pair: the first frame of each of the 2 sequences has none.
    pairs, _ = evaluate([tiny_bag], OfflineOptions(_pair_params(tmp_path), baselines=(), progress=False))
    assert pairs["methods"]["sst"]["overall"]["frames"] == 11 - 2
    assert set(m["sst"]["sequences"]) == {"alpha", "beta"}
    assert first["sequence_frames"] == {"alpha": 6, "beta": 5}
    for method in ("sst", "sod"):
        o = m[method]["overall"]
        assert 0 <= o["mae"] <= 1 and 0 <= o["fbeta_max"] <= 1 and 0 <= o["auc_judd"] <= 1
        assert m[method]["latency_ms"]["calls"] == o["frames"]
    # The trained SOD net finds the large vehicles of the synthetic scene far better than chance.
    assert m["sod"]["overall"]["auc_judd"] > 0.8
    assert set(board.sod_summaries()) == {"sst", "sod", "spectral_residual", "fine_grained", "binwang_motion", "centre_prior"}


def test_malformed_frame_is_refused_and_counted_like_the_node_does(tiny_bag: Path, tmp_path: Path) -> None:
    """Rewrite the bag with frame 4's data cut short: the decoder refuses it (counted under
    its reason), the saliency pair spans the gap, and every other frame is scored."""
    from rosbags.rosbag2 import Reader, Writer

    bag = tmp_path / "broken"
    with Reader(tiny_bag) as src, Writer(bag, version=9) as dst:
        cons = {c.topic: dst.add_connection(c.topic, c.msgtype, typestore=TYPESTORE) for c in src.connections}
        n = 0
        for con, t, raw in src.messages():
            if con.topic == "/camera/image_raw":
                n += 1
                if n == 4:
                    msg = TYPESTORE.deserialize_cdr(raw, IMAGE_TYPE)
                    msg.data = msg.data[:100]
                    raw = TYPESTORE.serialize_cdr(msg, IMAGE_TYPE)
            dst.write(cons[con.topic], t, raw)
    result, _ = evaluate([bag], OfflineOptions(_pair_params(tmp_path), baselines=(), progress=False))
    assert sum(result["skipped_frames"].values()) == 1
    assert result["methods"]["sod"]["overall"]["frames"] == 10
    assert result["methods"]["sst"]["overall"]["frames"] == 8


def test_report_files_and_overlay(tiny_bag: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "saliency_ros.cli", "eval", str(tiny_bag), "--out", str(out),
         "--baselines", "spectral_residual", "--overlay", "overlay.gif", "--overlay-sequence", "beta"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in ("eval.json", "report.md", "pr_curves.png", "sequences.png", "latency.png", "overlay.gif"):
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "eval.json").read_text())
    assert result["overlay_sequence"] == "beta"
    md = (out / "report.md").read_text()
    default = SALIENCY_DEFAULTS["model"]
    sst = json.loads((REPO / "models" / default).with_suffix(".json").read_text())["input"]  # the default's shape
    prior = SALIENCY_DEFAULTS["motion_prior"]
    assert f"Models: /saliency `{default}` ({sst['width']}x{sst['height']}, motion prior {prior:g})" in md  # width x height
    assert result["models"]["sst"]["motion_prior"] == prior
    assert "| /saliency (saliency_node) |" in md and "OpenCV SpectralResidual" in md
    from PIL import Image

    assert Image.open(out / "overlay.gif").n_frames == 2  # "beta": 5 frames at 24 fps, GIF at <= 10 fps


def test_mp4_overlay(tmp_path: Path) -> None:
    import cv2

    video = OverlayVideo(tmp_path / "o.mp4", fps=10)
    for i in range(4):
        video(np.full((48, 64, 3), i * 40, np.uint8))
    video.close()
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    with pytest.raises(ValueError, match=".mp4 or .gif"):
        OverlayVideo(tmp_path / "o.avi", fps=10)


def test_parameters_come_from_the_nodes_file(tmp_path: Path) -> None:
    params = yaml.safe_load(PARAMS.read_text())
    params["/**/saliency_node"]["ros__parameters"]["gap_frames"] = 3
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(params))
    nodes = NodeConfig.load(f)
    assert nodes.saliency["gap_frames"] == 3 and nodes.objects["threads"] == 1 and not nodes.shared_inference
    # Shared inference: the mask is saliency_node's (its model, threads and thresholds).
    shared = NodeConfig.load([f, REPO / "config" / "shared_inference.yaml"])
    assert shared.shared_inference and shared.objects["model"] == shared.saliency["model"] == "sod_effl0_256_int8.onnx"
    assert shared.objects["threads"] == shared.saliency["threads"] == 1


def test_mirror_average_from_the_nodes_file_reaches_both_maps(tiny_bag: Path, tmp_path: Path) -> None:
    """`mirror_average` in the parameters file runs both engines mirror-averaged, as the nodes
    would (its arithmetic: test/runtime/test_engine.py), and says so in the result."""
    params = yaml.safe_load(PARAMS.read_text())
    for node in ("saliency_node", "objects_node"):
        params[f"/**/{node}"]["ros__parameters"]["mirror_average"] = True
    f = tmp_path / "mirror.yaml"
    f.write_text(yaml.safe_dump(params))
    plain, _ = evaluate([tiny_bag], OfflineOptions(PARAMS, baselines=(), progress=False))
    mirrored, _ = evaluate([tiny_bag], OfflineOptions(f, baselines=(), progress=False))
    for method in ("sst", "sod"):
        assert not plain["models"][method]["mirror_average"] and mirrored["models"][method]["mirror_average"]
        assert mirrored["methods"][method]["overall"]["frames"] == plain["methods"][method]["overall"]["frames"] == 11
        assert mirrored["methods"][method]["overall"]["mae"] != plain["methods"][method]["overall"]["mae"]


def test_defaults_match_the_node_declarations() -> None:
    pytest.importorskip("rclpy", reason="the node declarations need rclpy")
    from saliency_ros.nodes.base import COMMON_PARAMS
    from saliency_ros.nodes.objects_node import ObjectsNode
    from saliency_ros.nodes.saliency_node import SaliencyNode

    for defaults, node in ((SALIENCY_DEFAULTS, SaliencyNode), (OBJECTS_DEFAULTS, ObjectsNode)):
        declared = {**COMMON_PARAMS, **node.PARAMS}
        assert {k: declared[k].default for k in defaults} == defaults


def test_bag_cli_reports_errors_and_checks(tiny_dataset: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "saliency_ros.cli", "bag", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)

    ok = cli("build", str(tiny_dataset), "--out", str(tmp_path / "bags"), "--storage", "sqlite3")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == [str(tmp_path / "bags" / "alpha"), str(tmp_path / "bags" / "beta")]
    check = cli("check", str(tmp_path / "bags" / "alpha"))
    assert check.returncode == 0 and "OK, 6 frames, ground truth yes" in check.stdout
    db = next((tmp_path / "bags" / "beta").glob("*.db3"))
    db.write_bytes(db.read_bytes()[:5000])
    bad = cli("check", str(tmp_path / "bags" / "beta"))
    assert bad.returncode == 2 and "truncated" in bad.stderr and str(db) in bad.stderr
    again = cli("build", str(tiny_dataset), "--out", str(tmp_path / "bags"))
    assert again.returncode == 2 and "already exists" in again.stderr
    shutil.rmtree(tmp_path / "bags")


@pytest.mark.data
@pytest.mark.slow
def test_real_davis_sequence_models_beat_the_baselines(davis_val: Path, tmp_path: Path) -> None:
    """A bag of one real DAVIS val clip, scored offline: both shipped models must beat every
    OpenCV baseline on F-max and NSS, and the SOD net must reach what its card reports for
    this kind of scene (car-shadow: a car filmed from above and behind)."""
    (bag,) = build_bags(clips_from(davis_val, sequences=["car-shadow"]), tmp_path / "b")
    assert BagReader(bag).frame_count == len(list((davis_val / "car-shadow" / "frames").iterdir()))
    result, _ = evaluate([bag], OfflineOptions(PARAMS, progress=False))
    m = {k: v["overall"] for k, v in result["methods"].items()}
    for base in ("spectral_residual", "fine_grained", "binwang_motion"):
        for ours in ("sst", "sod"):
            assert m[ours]["fbeta_max"] > m[base]["fbeta_max"] and m[ours]["nss"] > m[base]["nss"], (ours, base)
    assert m["sod"]["fbeta_max"] > 0.8 and m["sod_mask"]["iou"] > 0.6


def test_two_bags_with_the_same_sequence_names_stay_apart(tiny_bag: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again"
    shutil.copytree(tiny_bag, copy)
    result, _ = evaluate([tiny_bag, copy], OfflineOptions(PARAMS, baselines=(), progress=False))
    assert result["sequence_frames"] == {"alpha": 6, "beta": 5, "again/alpha": 6, "again/beta": 5}
    assert result["methods"]["sst"]["overall"]["frames"] == 2 * 11  # the default reads one frame
