"""`saliency-ros eval --live` against nodes started by `saliency-ros run`: three processes
(nodes, evaluator, and this test as `ros2 bag play` where needed) over real DDS."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test.conftest import REPO
from test.ros.conftest import ROS_ENV, NodesProcess, wait_until, write_params

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodesProcess, Path]]:
    params = write_params(tmp_path_factory.mktemp("live") / "params.yaml")
    proc = NodesProcess(params, "--camera", "none")
    wait_until(lambda: "configured" in proc.output() and proc.output().count("configured") >= 2, 60,
               "both perception nodes to configure", proc)
    yield proc, params
    proc.stop()


def _eval(*args: str) -> subprocess.Popen:
    import os

    return subprocess.Popen([sys.executable, "-m", "saliency_ros.cli", "eval", *args],
                            cwd=REPO, env={**os.environ, **ROS_ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_live_scores_equal_offline_and_nothing_drops(nodes, tiny_bag: Path, tmp_path: Path) -> None:
    proc, params = nodes
    live = _eval("--live", str(tiny_bag), "--params", str(params), "--out", str(tmp_path / "live"),
                 "--record", str(tmp_path / "rec"), "--rate", "0.5")
    out, err = live.communicate(timeout=180)
    assert live.returncode == 0, err + proc.output()[-2000:]
    result = json.loads((tmp_path / "live" / "eval.json").read_text())
    topics = result["topics"]
    # The default /saliency model reads one frame, so every frame expects a map (a pair model: 9).
    assert topics["/saliency"]["expected"] == 11 and topics["/saliency/objects/mask"]["expected"] == 11
    for name, t in topics.items():
        assert t["dropped"] == 0 and t["received"] == t["expected"], name
        assert t["latency_ms"]["p50"] > 0, name
    offline = subprocess.run([sys.executable, "-m", "saliency_ros.cli", "eval", str(tiny_bag), "--params",
                              str(params), "--out", str(tmp_path / "off"), "--baselines", "--overlay", ""],
                             cwd=REPO, capture_output=True, text=True, timeout=180)
    assert offline.returncode == 0, offline.stderr
    off = json.loads((tmp_path / "off" / "eval.json").read_text())["methods"]
    for method in ("sst", "sod", "sod_mask"):
        for key, value in off[method]["overall"].items():
            assert result["methods"][method]["overall"][key] == pytest.approx(value, abs=1e-6), (method, key)
    # The recording holds the camera frames and all three outputs, readable as a bag.
    from saliency_ros.evaluation.bags import BagReader

    rec = BagReader(tmp_path / "rec")
    assert rec.expected["/camera/image_raw"] == 11 and rec.expected["/saliency"] == 11


def test_external_player_with_a_frame_dropped_on_purpose(nodes, tiny_bag: Path, tmp_path: Path,
                                                         ros_context) -> None:
    """This test plays the bag the way `ros2 bag play` does (serialized messages unchanged)
    but leaves frame 4 out: the evaluator must report exactly that frame as dropped."""
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from saliency_ros.evaluation.bags import BagReader

    proc, params = nodes
    node = Node("bag_player", context=ros_context)
    pub = node.create_publisher(Image, "/camera/image_raw", QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE))
    listener = _eval("--live", "--play", "external", str(tiny_bag), "--params", str(params),
                     "--out", str(tmp_path / "ext"), "--idle", "3", "--wait", "60")
    try:
        # As a user would: start playing once the evaluator says it listens.
        assert listener.stderr is not None
        while "play the bag now" not in (line := listener.stderr.readline()):
            assert line, f"evaluator exited: {listener.communicate()[1]}"
        # Three readers: both perception nodes and the evaluator. The nodes matched long ago, so
        # waiting for two let a loaded machine start before the evaluator had matched.
        wait_until(lambda: pub.get_subscription_count() >= 3, 30, "the camera subscriptions", proc)
        time.sleep(1.0)  # the readers' side matches this writer too
        for i, (_, _, raw) in enumerate(BagReader(tiny_bag).raw_camera_messages()):
            if i != 4:
                pub.publish(bytes(raw))
            time.sleep(0.1)
        out, rest = listener.communicate(timeout=120)
        err = line + rest
    finally:
        if listener.poll() is None:
            listener.kill()
        node.destroy_node()
    assert listener.returncode == 0, err + proc.output()[-2000:]
    result = json.loads((tmp_path / "ext" / "eval.json").read_text())
    assert result["published"] == 10 and result["inputs_missing"] == 1
    for name in ("/saliency", "/saliency/objects/mask", "/saliency/objects/probability"):
        assert result["topics"][name]["dropped"] == 1, (name, result["topics"], proc.output()[-3000:])
    assert "1 never arrived" in (tmp_path / "ext" / "report.md").read_text()


def test_live_replay_scores_target_boxes_as_offline_does(nodes, tmp_path: Path) -> None:
    """A bag with /camera/gt_box through running nodes: the pointing game and box-NSS of what
    the nodes publish equal the offline scores."""
    from saliency_ros.evaluation.bags import build_bags, clips_from
    from test.sources.test_boxes import write_box_clip

    proc, params = nodes
    write_box_clip(tmp_path / "data" / "clip", ["28,20,8,8", "0,0,4,4", "NaN,NaN,NaN,NaN", "29.5,21,6.5,6", "10,10,5,5"],
                   size=(96, 64))
    (bag,) = build_bags(clips_from(tmp_path / "data", fps=10), tmp_path / "bag", single=True)
    live = _eval("--live", str(bag), "--params", str(params), "--out", str(tmp_path / "live"), "--rate", "0.5")
    _, err = live.communicate(timeout=180)
    assert live.returncode == 0, err + proc.output()[-2000:]
    result = json.loads((tmp_path / "live" / "eval.json").read_text())
    assert all(t["dropped"] == 0 for t in result["topics"].values()), result["topics"]
    offline = subprocess.run([sys.executable, "-m", "saliency_ros.cli", "eval", str(bag), "--params", str(params),
                              "--out", str(tmp_path / "off"), "--baselines", "--overlay", ""],
                             cwd=REPO, capture_output=True, text=True, timeout=180)
    assert offline.returncode == 0, offline.stderr
    off = json.loads((tmp_path / "off" / "eval.json").read_text())["methods"]
    for method in ("sst", "sod"):
        live_scores = result["methods"][method]["overall"]
        assert live_scores["box_out_of_view"] == 1, method
        for key in ("pointing_hit_rate", "box_nss", "box_frames"):
            assert live_scores[key] == pytest.approx(off[method]["overall"][key], abs=1e-5), (method, key)
