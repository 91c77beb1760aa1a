"""`ros2 launch saliency_ros drone.launch.py` as users run it: the installed launch file included
by launch_pytest (the nodes are separate processes started by launch), real ros2cli for
parameters and lifecycle, and `ros2 launch` itself for Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import launch_pytest
import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from saliency_ros.evaluation.offline import SALIENCY_DEFAULTS

from test.conftest import REPO
from test.launch.conftest import Probe, stamp_of

pytestmark = [pytest.mark.ros, pytest.mark.slow]

START_S = 90.0  # both nodes load, warm up and answer (seconds, under a loaded CI machine)


def drone_launch(domain: int, **arguments: str):
    """The installed drone.launch.py, found through the ament index, on `domain`."""
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import IncludeLaunchDescription, SetEnvironmentVariable
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    path = Path(get_package_share_directory("saliency_ros")) / "launch" / "drone.launch.py"
    return LaunchDescription([
        SetEnvironmentVariable("ROS_DOMAIN_ID", str(domain)),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(path)), launch_arguments=arguments.items()),
        launch_pytest.actions.ReadyToTest(),
    ])


def params_file(folder: Path, **node_values: dict) -> Path:
    """The installed config/drone.yaml with per-node values changed, written by the test."""
    from ament_index_python.packages import get_package_share_directory

    params = yaml.safe_load((Path(get_package_share_directory("saliency_ros")) / "config" / "drone.yaml").read_text())
    for node, values in node_values.items():
        params[f"/**/{node}"]["ros__parameters"].update(values)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def ros2(domain: int, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """The real ros2 command line on `domain` (no daemon: nothing is left running)."""
    return subprocess.run(["ros2", *args], env={**os.environ, "ROS_DOMAIN_ID": str(domain)},
                          capture_output=True, text=True, timeout=timeout)


def statuses(diagnostics: list[DiagnosticArray]) -> dict[str, object]:
    """Newest DiagnosticStatus of each name."""
    return {st.name: st for arr in diagnostics for st in arr.status}


@launch_pytest.fixture
def sim_camera(installed: Path, domain: int):
    return drone_launch(domain, use_sim_camera="true")


@pytest.mark.launch(fixture=sim_camera)
def test_default_launch_answers_the_sim_camera(probe: Probe) -> None:
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from saliency_ros.evaluation.bags import cdr_stamp_ns

    # The camera's 720p frames are taken serialized and only their stamps read, so that this
    # Python probe keeps up with them and sees every frame the nodes can answer.
    sent: set[int] = set()
    probe.node.create_subscription(Image, "/camera/image_raw", lambda raw: sent.add(cdr_stamp_ns(raw)),
                                   QoSProfile(depth=60, reliability=ReliabilityPolicy.RELIABLE), raw=True)
    sal, mask = probe.listen(Image, "/saliency"), probe.listen(Image, "/saliency/objects/mask")
    probe.spin_until(lambda: sal and mask and sent, START_S, "the camera, /saliency and the mask")
    del sal[:], mask[:]  # from here on this probe has seen every camera frame the outputs can answer
    probe.spin_until(lambda: len(sal) >= 5 and len(mask) >= 5, 30.0, "more outputs")
    assert probe.state("saliency_node") == "active" and probe.state("objects_node") == "active"
    for msg in sal + mask:
        assert msg.header.frame_id == "camera" and (msg.height, msg.width) == (720, 1280)
    # Every output carries a camera stamp. Under load this probe itself can miss a frame (the
    # camera's reliable writer keeps 5), so a stamp it did not see must fall in a gap of its own
    # view of the camera stream, never between two consecutive camera frames.
    seen = np.array(sorted(sent))
    period = np.median(np.diff(seen))
    inside = [stamp_of(m) for m in sal + mask if seen[0] <= stamp_of(m) <= seen[-1]]
    assert len(inside) >= 5, f"only {len(inside)} outputs within the probe's view of the camera"
    for stamp in (s for s in inside if s not in sent):
        i = int(np.searchsorted(seen, stamp))
        assert seen[i] - seen[i - 1] > 1.5 * period, \
            f"output stamp {stamp} is no camera frame (camera period {period / 1e6:.1f} ms)"


@launch_pytest.fixture
def outside_camera(installed: Path, domain: int):
    return drone_launch(domain, use_sim_camera="false", camera_topic="/test/cam")


@pytest.mark.launch(fixture=outside_camera)
def test_an_outside_camera_on_a_remapped_topic(probe: Probe) -> None:
    from rclpy.qos import qos_profile_sensor_data

    camera = probe.node.create_publisher(Image, "/test/cam", qos_profile_sensor_data)
    sal, mask = probe.listen(Image, "/saliency"), probe.listen(Image, "/saliency/objects/mask")
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
    sent: list[int] = []

    def send_and_check() -> bool:
        msg = Image(height=240, width=320, encoding="bgr8", step=960)
        msg.header.frame_id = "test_cam"
        sent.append(time.time_ns())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(sent[-1], 10**9)
        msg.data = frame.tobytes()
        camera.publish(msg)
        time.sleep(0.1)
        return len(sal) >= 3 and len(mask) >= 3

    probe.spin_until(send_and_check, START_S, "outputs for frames sent on /test/cam")
    for msg in sal + mask:
        assert stamp_of(msg) in sent and msg.header.frame_id == "test_cam" and (msg.height, msg.width) == (240, 320)


@launch_pytest.fixture
def namespaced(installed: Path, domain: int):
    return drone_launch(domain, use_sim_camera="true", namespace="drone1")


@pytest.mark.launch(fixture=namespaced)
def test_a_namespace_moves_every_output_but_diagnostics(probe: Probe) -> None:
    sal, mask = probe.listen(Image, "/drone1/saliency"), probe.listen(Image, "/drone1/saliency/objects/mask")
    root = probe.listen(Image, "/saliency")
    diagnostics = probe.listen(DiagnosticArray, "/diagnostics")
    probe.spin_until(lambda: len(sal) >= 3 and len(mask) >= 3, START_S, "namespaced outputs")
    probe.spin_until(lambda: {"/drone1/saliency_node: saliency", "/drone1/objects_node: objects"}
                     <= set(statuses(diagnostics)), 10.0, "both nodes on the global /diagnostics")
    assert probe.state("drone1/saliency_node") == "active" and not root


@launch_pytest.fixture
def shared_inference(installed: Path, domain: int):
    return drone_launch(domain, use_sim_camera="true", shared_inference="true")


@pytest.mark.launch(fixture=shared_inference)
def test_shared_inference_runs_one_perception_node_for_both_outputs(probe: Probe, domain: int) -> None:
    sal, mask = probe.listen(Image, "/saliency"), probe.listen(Image, "/saliency/objects/mask")
    diagnostics = probe.listen(DiagnosticArray, "/diagnostics")
    probe.spin_until(lambda: len(sal) >= 3 and len(mask) >= 3, START_S, "/saliency and the mask")
    both = {stamp_of(m) for m in sal} & {stamp_of(m) for m in mask}
    assert both, "no camera frame answered on both outputs"
    assert probe.parameters("saliency_node")["publish_objects"] is True
    assert probe.parameters("saliency_node")["model"] == "sod_effl0_256_int8.onnx"
    probe.spin_until(lambda: "/saliency_node: saliency" in statuses(diagnostics), 10.0, "saliency_node's status")
    assert "/objects_node: objects" not in statuses(diagnostics)
    listed = ros2(domain, "node", "list", "--no-daemon", "--spin-time", "5").stdout.split()
    assert "/saliency_node" in listed and "/objects_node" not in listed, listed


@launch_pytest.fixture
def own_params(installed: Path, domain: int, tmp_path: Path):
    path = params_file(tmp_path, saliency_node={"output_encoding": "mono8"},
                       objects_node={"publish_probability": True, "threshold_mode": "fixed", "threshold": 0.7})
    return drone_launch(domain, use_sim_camera="true", params_file=str(path))


@pytest.mark.launch(fixture=own_params)
def test_a_params_file_takes_effect(probe: Probe, domain: int) -> None:
    sal, prob = probe.listen(Image, "/saliency"), probe.listen(Image, "/saliency/objects/probability")
    probe.spin_until(lambda: len(sal) >= 2 and len(prob) >= 2, START_S, "/saliency and the probability map")
    assert {m.encoding for m in sal} == {"mono8"} and {m.encoding for m in prob} == {"32FC1"}
    got = ros2(domain, "param", "get", "/objects_node", "threshold", "--no-daemon", "--spin-time", "5")
    assert got.returncode == 0 and "Double value is: 0.7" in got.stdout, got.stdout + got.stderr
    assert probe.parameters("saliency_node")["output_encoding"] == "mono8"


@launch_pytest.fixture
def invalid_params(installed: Path, domain: int, tmp_path: Path):
    path = params_file(tmp_path, objects_node={"threshold_mode": "otsu"}, saliency_node={"threads": 100})
    return drone_launch(domain, use_sim_camera="false", params_file=str(path))


@pytest.mark.launch(fixture=invalid_params)
def test_invalid_values_fail_configure_with_their_reason(probe: Probe) -> None:
    diagnostics = probe.listen(DiagnosticArray, "/diagnostics")
    names = {"/saliency_node: saliency", "/objects_node: objects"}
    probe.spin_until(lambda: names <= set(statuses(diagnostics)), START_S, "both nodes on /diagnostics")
    now = statuses(diagnostics)
    objects, saliency = now["/objects_node: objects"], now["/saliency_node: saliency"]
    assert objects.level == saliency.level == b"\x02"  # ERROR
    assert "threshold_mode must be one of ['adaptive', 'fixed'], got 'otsu'" in objects.message
    assert "threads: " in saliency.message and "out of range" in saliency.message
    assert probe.state("objects_node") == probe.state("saliency_node") == "unconfigured"


@launch_pytest.fixture
def managed(installed: Path, domain: int, tmp_path: Path):
    path = params_file(tmp_path, saliency_node={"autostart": False}, objects_node={"autostart": False})
    return drone_launch(domain, use_sim_camera="true", params_file=str(path))


@pytest.mark.launch(fixture=managed)
def test_without_autostart_the_nodes_wait_for_ros2_lifecycle(probe: Probe, domain: int) -> None:
    sal, mask = probe.listen(Image, "/saliency"), probe.listen(Image, "/saliency/objects/mask")
    probe.spin_until(lambda: probe.state("saliency_node") == "unconfigured", START_S, "saliency_node")
    # Six participants share the domain (three nodes, launch_ros, this probe, ros2): all meet.
    listed = ros2(domain, "node", "list", "--no-daemon", "--spin-time", "5").stdout.split()
    assert {"/camera_source", "/saliency_node", "/objects_node"} <= set(listed), listed
    time.sleep(3.0)  # autostart would have configured them by now
    assert not sal and not mask and probe.state("objects_node") == "unconfigured"
    for transition in ("configure", "activate"):
        out = ros2(domain, "lifecycle", "set", "/saliency_node", transition, "--no-daemon", "--spin-time", "5")
        assert out.returncode == 0 and "Transitioning successful" in out.stdout, out.stdout + out.stderr
    probe.spin_until(lambda: len(sal) >= 3, START_S, "/saliency after configure + activate")
    assert probe.state("saliency_node") == "active" and probe.state("objects_node") == "unconfigured"
    assert not mask


def test_ros2_launch_stops_cleanly_on_sigint(installed: Path, domain: int, probe: Probe, tmp_path: Path) -> None:
    """Ctrl-C on `ros2 launch`: exit 0 within 5 s, no node left, nothing alarming logged.

    The log goes to a file, not a pipe: a pipe nobody reads fills up while the nodes run and
    would block `ros2 launch` on its next write, shutdown included."""
    log_path = tmp_path / "launch.log"
    with log_path.open("w") as log_file:
        launch = subprocess.Popen(["env", "--default-signal=INT", "ros2", "launch", "saliency_ros", "drone.launch.py",
                                   "use_sim_camera:=true"], env={**os.environ, "ROS_DOMAIN_ID": str(domain)},
                                  stdout=log_file, stderr=subprocess.STDOUT, text=True)
    try:
        sal, mask = probe.listen(Image, "/saliency"), probe.listen(Image, "/saliency/objects/mask")
        probe.spin_until(lambda: len(sal) >= 5 and len(mask) >= 5, START_S, "outputs of ros2 launch")
        nodes = subprocess.run(["ps", "-o", "pid=", "--ppid", str(launch.pid)], capture_output=True, text=True).stdout
        children = [int(p) for p in nodes.split()]
        assert len(children) >= 3, nodes  # camera_source, saliency_node, objects_node
        t0 = time.monotonic()
        launch.send_signal(signal.SIGINT)
        try:
            code = launch.wait(5.0)
        except subprocess.TimeoutExpired:
            code = None
        stop_s = time.monotonic() - t0
        log = log_path.read_text()
        assert code == 0, f"ros2 launch gave {code} {stop_s:.1f} s after SIGINT (None: still running):\n{log[-3000:]}"
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait()
    left = [p for p in children if Path(f"/proc/{p}").exists()]
    assert not left, f"node processes {left} outlived ros2 launch"
    for bad in ("[ERROR]", "context is invalid", "Failed to publish", "Traceback", "internal_error"):
        assert bad not in log, f"{bad!r} in the log of a normal stop ({stop_s:.1f} s):\n{log[-3000:]}"


@launch_pytest.fixture
def launched_for_parity(installed: Path, domain: int):
    return drone_launch(domain, use_sim_camera="false")


@pytest.mark.launch(fixture=launched_for_parity)
def test_saliency_ros_run_brings_up_the_same_nodes_as_the_launch_file(probe: Probe, installed: Path,
                                                                        domain: int) -> None:
    """pip-only users start the nodes with `saliency-ros run`: same node classes, parameters file
    and values as `ros2 launch`, compared as the running nodes report them."""
    probe.spin_until(lambda: probe.state("objects_node") == "active", START_S, "objects_node active")
    launched = {n: probe.parameters(n) for n in ("saliency_node", "objects_node")}
    other = domain + 40  # its own domain, so the two bring-ups never see each other
    run = subprocess.Popen([sys.executable, "-m", "saliency_ros.cli", "run", "--camera", "none", "--params",
                            str(installed / "share" / "saliency_ros" / "config" / "drone.yaml")],
                           cwd=REPO, env={**os.environ, "ROS_DOMAIN_ID": str(other)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = Probe(other)
    try:
        second.spin_until(lambda: second.state("objects_node") == "active", START_S, "saliency-ros run")
        ran = {n: second.parameters(n) for n in ("saliency_node", "objects_node")}
    finally:
        second.close()
        run.send_signal(signal.SIGINT)
        run.wait(20)
    assert ran == launched
    assert launched["saliency_node"]["model"] == SALIENCY_DEFAULTS["model"] and len(launched["objects_node"]) > 10
