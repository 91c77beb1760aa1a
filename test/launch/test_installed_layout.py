"""What `colcon build` installs is the layout ROS tools expect (`ros2 run`, `ros2 launch` and
the ament index find it): the same files a user's workspace gets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from test.conftest import REPO

pytestmark = pytest.mark.slow

EXECUTABLES = ("saliency-ros", "saliency_node", "objects_node", "camera_source")


def test_installed_layout(installed: Path) -> None:
    lib, share = installed / "lib" / "saliency_ros", installed / "share" / "saliency_ros"
    assert sorted(p.name for p in lib.iterdir()) == sorted(EXECUTABLES)
    assert all(os.access(lib / name, os.X_OK) for name in EXECUTABLES)
    assert (installed / "share" / "ament_index" / "resource_index" / "packages" / "saliency_ros").is_file()
    assert (share / "package.xml").is_file() and (share / "launch" / "drone.launch.py").is_file()
    assert {p.name for p in (share / "config").glob("*")} >= {"drone.yaml", "fastdds_loopback.xml"}
    shipped = sorted(p.name for p in (REPO / "models").iterdir())
    assert sorted(p.name for p in (share / "models").iterdir()) == shipped
    for name in shipped:  # the installed weights are the shipped bytes
        assert (share / "models" / name).read_bytes() == (REPO / "models" / name).read_bytes()


def test_ros2_cli_finds_the_package(installed: Path) -> None:
    prefix = subprocess.run(["ros2", "pkg", "prefix", "saliency_ros"], capture_output=True, text=True, timeout=60)
    assert prefix.returncode == 0 and Path(prefix.stdout.strip()) == installed, prefix.stderr
    executables = subprocess.run(["ros2", "pkg", "executables", "saliency_ros"], capture_output=True, text=True,
                                 timeout=60)
    assert sorted(line.split()[1] for line in executables.stdout.splitlines()) == sorted(EXECUTABLES)
