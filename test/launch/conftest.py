"""The ROS user's path: the package built by colcon, its installed drone.launch.py run by launch.

Once per test run, `colcon build` puts the package into a temporary workspace; the tests then
use only the installed layout (executables in lib/, share/ with the launch file, config and
models, the ament index entry), with the environment that `../shared/ros2/env.sh` and the
workspace's `install/setup.bash` give a user's shell. On an apt ROS 2 (`colcon test`), the
same tests run against the sourced environment. Without launch they skip, saying why.

Every launch gets the package's Fast DDS loopback profile and a ROS_DOMAIN_ID of its own.
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from test.conftest import REPO

try:
    import launch  # noqa: F401
    import launch_pytest  # noqa: F401
    import launch_ros  # noqa: F401
except ImportError as err:
    pytest.skip(f"launch tests need launch, launch_ros and launch_pytest ({err}); on this machine "
                "`bash scripts/setup_venv.sh` installs them from ../shared/ros2, elsewhere an apt ROS 2",
                allow_module_level=True)

from test.ros.probe import OUTPUTS  # noqa: E402  (rclpy-backed; after the skip above)
from test.ros.probe import Probe as RosProbe  # noqa: E402

SHARED_ROS2 = REPO.parent / "shared" / "ros2"
# Domains of this run's launches: within 10..89, away from test/ros (100..199) and the benches;
# a run starts at a place of its own in that range (parity tests add 40 for a second bring-up).
_BASE_DOMAIN = (os.getpid() % 10) * 8
_next_domain = (10 + (_BASE_DOMAIN + n) % 40 for n in itertools.count())


def _sourced_env(*scripts: tuple[Path, str]) -> dict[str, str]:
    """The environment after `source`-ing each (script, argument) in bash, as a user would."""
    line = " && ".join(f"source {shlex.quote(str(s))} {shlex.quote(a)}" for s, a in scripts)
    out = subprocess.run(["bash", "-c", f"{line} && env -0"], check=True, capture_output=True, timeout=60)
    return dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)


@pytest.fixture(scope="package")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The package's install prefix, after one `colcon build` into a temporary workspace (once
    per run: every user of it is in this folder); while these tests run, the process environment
    is that of a shell that sourced the ROS 2 set-up and the workspace, and it is restored after
    them, so later tests resolve files from the checkout again."""
    venv = Path(sys.prefix)
    saved = dict(os.environ)
    if (SHARED_ROS2 / "env.sh").is_file() and shutil.which("colcon", path=str(venv / "bin")):
        ws = tmp_path_factory.mktemp("colcon_ws")
        env = _sourced_env((SHARED_ROS2 / "env.sh", str(venv)))
        t0 = time.monotonic()
        build = subprocess.run(["colcon", "build", "--base-paths", str(REPO)], cwd=ws, env=env,
                               capture_output=True, text=True, timeout=600)
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        print(f"colcon build: {time.monotonic() - t0:.1f} s")
        env = _sourced_env((SHARED_ROS2 / "env.sh", str(venv)), (ws / "install" / "setup.bash", ""))
        prefix = ws / "install" / "saliency_ros"
    else:
        try:  # an apt ROS 2 with this package built and sourced (colcon test)
            from ament_index_python.packages import get_package_prefix

            prefix, env = Path(get_package_prefix("saliency_ros")), dict(os.environ)
        except Exception as err:
            pytest.skip(f"no colcon and no installed saliency_ros ({err})")
    env |= {"FASTDDS_DEFAULT_PROFILES_FILE": str(prefix / "share" / "saliency_ros" / "config" / "fastdds_loopback.xml"),
            "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "PYTHONUNBUFFERED": "1",
            "ROS_LOG_DIR": str(tmp_path_factory.mktemp("ros_log"))}
    os.environ.clear()
    os.environ.update(env)
    try:
        yield prefix
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def domain() -> int:
    """A ROS_DOMAIN_ID for one launch of this run."""
    return next(_next_domain)


class Probe(RosProbe):
    """test/ros's probe (output subscribers, service clients, spun in the background) in a
    context of its own on the launch's domain."""

    def __init__(self, domain_id: int) -> None:
        import rclpy

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        super().__init__(self.context, "launch_test_probe")

    def listen(self, msg_type: Any, topic: str, depth: int = 50) -> list[Any]:
        """The messages on the absolute `topic` as they arrive; the outputs and /diagnostics that
        the probe keeps already are shared, not subscribed twice."""
        key = topic.lstrip("/") if topic.lstrip("/") in OUTPUTS else topic
        if key not in OUTPUTS and key != "/diagnostics":
            self.node.create_subscription(msg_type, topic, self._keep(key), depth)
        return self.received[key]

    def spin_until(self, predicate, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; received "
                             f"{ {t: len(v) for t, v in self.received.items()} }")

    def _call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        return super()._call(srv_type, name, request, timeout)  # nodes still starting: 10 s

    def parameters(self, node: str) -> dict[str, Any]:
        """Every parameter of `node` with its value, as the node reports it."""
        from rcl_interfaces.srv import GetParameters, ListParameters
        from rclpy.parameter import parameter_value_to_python

        names = list(self._call(ListParameters, f"/{node}/list_parameters", ListParameters.Request()).result.names)
        values = self._call(GetParameters, f"/{node}/get_parameters", GetParameters.Request(names=names)).values
        return {n: parameter_value_to_python(v) for n, v in zip(names, values)}

    def close(self) -> None:
        import rclpy

        super().close()
        rclpy.shutdown(context=self.context)


@pytest.fixture
def probe(domain: int, installed: Path) -> Iterator[Probe]:
    p = Probe(domain)
    yield p
    p.close()


def stamp_of(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
