"""`saliency-ros run` and the node executables as processes: camera source, namespaces,
compressed input, model errors at configure, and clean shutdown on SIGINT."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage

from saliency_ros.nodes.processes import NODES
from saliency_ros.runtime.engine import Engine, available_providers
from saliency_ros.runtime.model_card import sha256_file
from saliency_ros.runtime.pipelines import ObjectsPipeline, SaliencyPipeline
from saliency_ros.sources.synthetic import SyntheticDroneScene
from test.conftest import REPO
from test.ros.conftest import ROS_ENV, NodesProcess, wait_until, write_params
from test.ros.probe import Probe

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def assert_clean_stop(log: str) -> None:
    """Nothing alarming on a normal stop: workers are joined before the context goes."""
    for bad in ("Traceback", "context is invalid", "Failed to publish", "internal_error", "[ERROR]"):
        assert bad not in log, f"{bad!r} in the log of a normal stop:\n{log[-3000:]}"


def test_camera_folder_in_a_namespace_then_sigint(tmp_path: Path, ros_context: object) -> None:
    scene = SyntheticDroneScene(320, 240, seed=1)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        cv2.imwrite(str(frames / f"{i:03d}.png"), scene.frame(i)[0])
    params = write_params(tmp_path / "params.yaml",
                          camera_source={"width": 0, "height": 0, "rate_hz": 15.0, "frame_id": "test_cam"},
                          saliency_node={"threads": 1}, objects_node={"threads": 1})
    nodes = NodesProcess(params, "--camera", str(frames), "--namespace", "drone1")
    probe = Probe(ros_context, namespace="drone1")
    try:
        wait_until(lambda: len(probe.received["saliency"]) >= 8, 60.0, "8 saliency maps from the camera", nodes)
        msgs = list(probe.received["saliency"])
        stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in msgs]
        assert all(m.header.frame_id == "test_cam" and (m.height, m.width) == (240, 320) for m in msgs)
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # the folder loops, stamps go on
        assert probe.set_parameter("drone1/camera_source", "rate_hz", 1000.0)[0] is False
        assert probe.set_parameter("drone1/camera_source", "rate_hz", 10.0) == (True, "")
        # One process per node, as `ros2 launch` starts them, under the one that was started.
        pids = [nodes.node_pid(name) for name in NODES]
        assert len(set(pids)) == 3 and nodes.proc.pid not in pids
        assert nodes.interrupt() == 0, nodes.output()
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
        out = nodes.output()
        assert "--- final" in out, out
        assert_clean_stop(out)
    finally:
        probe.close()
        nodes.stop()


def test_compressed_input_and_a_single_frame_saliency_model(tmp_path: Path, ros_context: object) -> None:
    """JPEG input reaches both nodes. The default /saliency model reads one frame, so the first
    frame of a new stream (another frame_id) is answered too; a pair model would wait for the
    second (test_nodes). Both nodes run in the one process here (`--one-process`), the bring-up
    the other tests do not start."""
    params = write_params(tmp_path / "params.yaml",
                          saliency_node={"threads": 1, "input_transport": "compressed"},
                          objects_node={"threads": 1, "input_transport": "compressed"})
    nodes = NodesProcess(params, "--camera", "none", "--one-process")
    probe = Probe(ros_context)
    frame = SyntheticDroneScene(320, 240, seed=2).frame(0)[0]
    stamp = [time.time_ns()]

    def answered() -> bool:
        stamp[0] += 33_000_000
        msg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", frame)[1].tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp[0], 10**9)
        msg.header.frame_id = "cam"
        probe.publish(msg, settle_s=0.2)
        return bool(probe.with_stamp("saliency", stamp[0]) and probe.with_stamp("saliency/objects/mask", stamp[0]))

    try:
        wait_until(answered, 60.0, "outputs for JPEG CompressedImage input", nodes)
        mask = probe.with_stamp("saliency/objects/mask", stamp[0])[0]
        assert (mask.height, mask.width, mask.header.frame_id) == (240, 320, "cam")
        msg = CompressedImage(format="jpeg", data=cv2.imencode(".jpg", frame)[1].tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp[0] + 33_000_000, 10**9)
        msg.header.frame_id = "another_cam"
        probe.publish(msg, settle_s=0.2)
        wait_until(lambda: bool(probe.with_stamp("saliency", stamp[0] + 33_000_000)), 10.0,
                   "/saliency for the first frame of a new stream", nodes)
        assert not Path(f"/proc/{nodes.proc.pid}/task/{nodes.proc.pid}/children").read_text().split()
    finally:
        probe.close()
        nodes.stop()


@pytest.mark.parametrize("mirror", [False, True], ids=["plain", "mirror_average"])
def test_shared_inference_makes_both_outputs_from_one_model_run(tmp_path: Path, ros_context: object,
                                                                 mirror: bool) -> None:
    """`saliency-ros run --shared-inference`: objects_node is not started; saliency_node answers
    each frame on /saliency and the mask, and both equal the offline pipelines with the 224 x 320
    net (/saliency with the motion prior on the pair, the mask as objects_node makes it); with
    `mirror_average` both come from the mirror-averaged run."""
    params = write_params(tmp_path / "params.yaml", saliency_node={"threads": 1, "publish_probability": True,
                                                                   "mirror_average": mirror})
    nodes = NodesProcess(params, "--camera", "none", "--shared-inference")
    probe = Probe(ros_context)
    scene = SyntheticDroneScene(320, 240, targets=3, seed=4)
    stamp = [time.time_ns()]

    def send(i: int) -> int:
        stamp[0] += 33_333_333
        probe.publish(Probe.image(scene.frame(i)[0], "bgr8", stamp[0]), settle_s=0.2)
        return stamp[0]

    try:
        wait_until(lambda: bool(probe.with_stamp("saliency/objects/mask", send(0))), 60.0,
                   "a mask from saliency_node", nodes)
        last = [send(i) for i in (1, 2)][-1]
        sal, mask = probe.wait_for("saliency", last), probe.wait_for("saliency/objects/mask", last)
        prob = probe.wait_for("saliency/objects/probability", last)
        names = probe.node.get_node_names()
        assert "saliency_node" in names and "objects_node" not in names, names
        engine = Engine(REPO / "models" / "sod_effl0_256_int8.onnx", mirror=mirror)
        assert probe.status("saliency")["mirror_average"] == str(mirror).lower()
        expected_sal = SaliencyPipeline(engine, motion_prior=3.0)(scene.frame(2)[0], scene.frame(1)[0])
        expected = ObjectsPipeline(engine)(scene.frame(2)[0])
        np.testing.assert_allclose(np.frombuffer(sal.data, np.float32).reshape(240, 320), expected_sal, atol=1e-4)
        np.testing.assert_allclose(np.frombuffer(prob.data, np.float32).reshape(240, 320), expected.probability,
                                   atol=1e-4)
        got = np.frombuffer(mask.data, np.uint8).reshape(240, 320)
        assert (got != expected.mask).mean() < 1e-3 and 0 < (got > 0).mean() < 0.5
        assert "threshold" in probe.status("saliency")
        assert nodes.interrupt() == 0, nodes.output()
        assert_clean_stop(nodes.output())
    finally:
        probe.close()
        nodes.stop()


def test_bad_model_files_fail_configure_naming_file_and_input(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf" * 100)
    card = json.loads((REPO / "models" / "sod_effl0_256.json").read_text())
    card["sha256"], card["file"] = sha256_file(corrupt), corrupt.name
    (tmp_path / "corrupt.json").write_text(json.dumps(card))
    params = write_params(tmp_path / "params.yaml",
                          saliency_node={"model": str(tmp_path / "missing.onnx")},
                          objects_node={"model": str(corrupt)})
    run = [sys.executable, "-m", "saliency_ros.cli", "run", "--camera", "none", "--params"]
    out = subprocess.run([*run, str(params)], cwd=REPO, env={**os.environ, **ROS_ENV},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"model file {tmp_path / 'missing.onnx'} does not exist" in out.stdout
    assert f"model file {corrupt} could not be loaded" in out.stdout

    # A malformed card (input is a list) beside genuine weights: refused naming file and field.
    shutil.copy(REPO / "models" / "skd_sst_64.onnx", tmp_path / "listed.onnx")
    card = json.loads((REPO / "models" / "skd_sst_64.json").read_text())
    card["input"], card["file"] = [64, 64], "listed.onnx"
    (tmp_path / "listed.json").write_text(json.dumps(card))
    malformed = write_params(tmp_path / "malformed.yaml", saliency_node={"model": str(tmp_path / "listed.onnx")})
    out = subprocess.run([*run, str(malformed)], cwd=REPO, env={**os.environ, **ROS_ENV},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"model card {tmp_path / 'listed.json'}: field input: [64, 64] is not of type 'object'" in out.stdout
    assert "configure failed" in out.stderr  # the node's own log line, with the same reason

    # Values rclpy refuses at declaration (range, type) and values only the node checks
    # (choices) all fail configure with their reason instead of killing the process.
    bad_values = write_params(tmp_path / "values.yaml", saliency_node={"threads": 100, "gap_frames": "two"},
                              objects_node={"threshold_mode": "otsu"})
    out = subprocess.run([*run, str(bad_values)], cwd=REPO, env={**os.environ, **ROS_ENV},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stdout + out.stderr
    assert "saliency_node did not configure: invalid parameters: threads: " in out.stdout
    assert "Parameter threads out of range. Min: 1, Max: 64, value: 100" in out.stdout
    assert "gap_frames: Trying to set parameter 'gap_frames' to 'two'" in out.stdout
    assert "objects_node did not configure: invalid parameters: threshold_mode must be one of" in out.stdout

    wrong_role = write_params(tmp_path / "wrong.yaml", objects_node={"model": "skd_sst_64.onnx"})
    out = subprocess.run([*run, str(wrong_role)], cwd=REPO, env={**os.environ, **ROS_ENV},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "skd_sst_64.onnx has inputs ['current', 'previous']" in out.stdout
    assert "expects a single-frame model with input ['image']" in out.stdout

    pair_shared = write_params(tmp_path / "pair_shared.yaml",
                               saliency_node={"model": "skd_sst_64.onnx", "publish_objects": True})
    out = subprocess.run([*run, str(pair_shared)], cwd=REPO, env={**os.environ, **ROS_ENV},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "publish_objects needs a single-frame SOD model (input 'image'); skd_sst_64.onnx reads frame pairs" \
        in out.stdout, out.stdout
    assert "objects_node" not in out.stdout  # not started: saliency_node would publish the mask

    if "CUDAExecutionProvider" in available_providers():
        return  # a GPU build: the backend is available, nothing to refuse
    cuda = write_params(tmp_path / "cuda.yaml", objects_node={"backend": "cuda"})
    out = subprocess.run([*run, str(cuda)], cwd=REPO, env={**os.environ, **ROS_ENV},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "backend 'cuda' needs CUDAExecutionProvider" in out.stdout and "available:" in out.stdout


@pytest.mark.parametrize("node, role", [("saliency_node", "saliency"), ("objects_node", "objects")])
def test_node_executable_stops_cleanly_on_sigint_while_working(tmp_path: Path, ros_context: object,
                                                                node: str, role: str) -> None:
    """What `ros2 run saliency_ros <node>` / the launch file start, interrupted while 720p
    frames stream in: the worker is mid-frame when the signal comes (before the fix, every run
    logged "publisher's context is invalid" from objects_node)."""
    params = write_params(tmp_path / "params.yaml", **{node: {"threads": 1}})
    proc = subprocess.Popen([sys.executable, "-m", f"saliency_ros.nodes.{node}", "--ros-args",
                             "--params-file", str(params)],
                            cwd=REPO, env={**os.environ, **ROS_ENV}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    probe = Probe(ros_context)
    stop = threading.Event()
    frame = SyntheticDroneScene(1280, 720, seed=3).frame(0)[0]

    def camera() -> None:
        while not stop.is_set():
            probe.publish(Probe.image(frame, "bgr8", time.time_ns()), settle_s=1 / 30)

    streaming = threading.Thread(target=camera)
    try:
        wait_until(lambda: any(st.name == f"/{node}: {role}" and any(
            kv.key == "state" and kv.value == "active" for kv in st.values)
            for arr in list(probe.received["/diagnostics"]) for st in arr.status), 60.0, f"{node} active")
        streaming.start()
        wait_until(lambda: int(probe.status(role)["processed"]) >= 10, 30.0, f"{node} at work")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert_clean_stop(proc.stdout.read())
    finally:
        stop.set()
        if streaming.is_alive():
            streaming.join()
        probe.close()
        if proc.poll() is None:
            proc.kill()


def test_any_configure_failure_is_logged_and_an_error_in_diagnostics(ros_context: object) -> None:
    """An unexpected exception while loading is caught like the expected ones: the node stays
    unconfigured with the reason as its ERROR status instead of failing silently."""
    from diagnostic_msgs.msg import DiagnosticStatus
    from rclpy.parameter import Parameter

    from saliency_ros.nodes.saliency_node import SaliencyNode

    class Failing(SaliencyNode):
        def _load(self, engine: object) -> None:
            raise RuntimeError("warm-up ran out of memory")

    node = Failing(context=ros_context, parameter_overrides=[Parameter("threads", value=1)])
    try:
        status = node.status()
        assert node.error == "RuntimeError: warm-up ran out of memory"
        assert status.level == DiagnosticStatus.ERROR and status.message == node.error
        assert {kv.key: kv.value for kv in status.values}["state"] == "unconfigured"
    finally:
        node.destroy_node()
