"""Real-DDS test harness: the nodes run in a `saliency-ros run` process, this process is the
camera and the downstream subscriber. Fast DDS uses config/fastdds_loopback.xml and a domain
id of this test session's own, so parallel runs on one machine do not see each other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from test.conftest import REPO

DOMAIN_ID = 100 + os.getpid() % 100
ROS_ENV = {
    "FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_loopback.xml"),
    "ROS_DOMAIN_ID": str(DOMAIN_ID),
    "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
}


@pytest.fixture(scope="session")
def ros_context() -> Iterator[object]:
    """rclpy initialised in this process with the loopback profile and our domain."""
    os.environ.update(ROS_ENV)
    rclpy = pytest.importorskip("rclpy", reason="ROS tests need the ros-wheels extra (rclpy)")
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


def write_params(path: Path, **node_overrides: dict[str, object]) -> Path:
    """config/drone.yaml with per-node overrides, e.g. objects_node={"threads": 1}."""
    params = yaml.safe_load((REPO / "config" / "drone.yaml").read_text())
    for node, values in node_overrides.items():
        params[f"/**/{node}"]["ros__parameters"].update(values)
    path.write_text(yaml.safe_dump(params))
    return path


class NodesProcess:
    """`saliency-ros run` in a child process; collects its output for failure messages."""

    def __init__(self, params: Path, *args: str) -> None:
        self.log = params.with_suffix(".log")
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "saliency_ros.cli", "run", "--params", str(params), *args],
            cwd=REPO, env={**os.environ, **ROS_ENV, "PYTHONUNBUFFERED": "1"},
            stdout=self._log_file, stderr=subprocess.STDOUT)

    def node_pid(self, name: str, timeout: float = 30.0) -> int:
        """The pid of a node's own process: `saliency-ros run` starts one child per node."""
        pid, end = self.proc.pid, time.monotonic() + timeout
        while time.monotonic() < end:
            for child in map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split()):
                if f"--node\0{name}\0" in Path(f"/proc/{child}/cmdline").read_text():
                    return child
            time.sleep(0.05)
        raise AssertionError(f"no process of {name} under saliency-ros run\n{self.output()[-3000:]}")

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text()

    def interrupt(self, timeout: float = 15.0) -> int:
        """SIGINT, as Ctrl-C in a terminal or `ros2 launch` on shutdown sends."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


def wait_until(predicate, timeout: float, what: str, log: NodesProcess | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)
    detail = f"\n--- nodes process output ---\n{log.output()[-3000:]}" if log else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")
