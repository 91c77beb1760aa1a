"""heap.keep_freed_frames: frame-sized buffers stop faulting their pages in anew.

Counted as minor page faults (getrusage), not timed: each case runs in a fresh interpreter,
since a process's malloc thresholds cannot be put back once set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test.ros.conftest import ROS_ENV

# 60 frames' worth of the 32FC1 encode path: a fresh 720p float map, its bytes and array.array.
_FAULTS = """
import array, json, resource, sys
import numpy as np
{setup}
def frame():
    big = np.full((720, 1280), 0.5, np.float32)
    data = array.array("B")
    data.frombytes(big.tobytes())
    return len(data)
frame()  # the first frame may fault either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(60):
    frame()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({{"set": {result}, "faults_per_frame": faults / 60}}))
"""


def _faults(setup: str, result: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _FAULTS.format(setup=setup, result=result)],
                         capture_output=True, text=True, timeout=120, check=True, env={**os.environ, **ROS_ENV})
    return json.loads(out.stdout.splitlines()[-1])


def test_kept_blocks_do_not_fault_again() -> None:
    default = _faults("", "None")
    kept = _faults("from saliency_ros.heap import keep_freed_frames\nok = keep_freed_frames()", "ok")
    if not kept["set"]:
        pytest.skip("this C library has no mallopt (not glibc): keep_freed_frames changes nothing here")
    # A 3.7 MB map is about 900 pages; each frame touches three such buffers.
    assert default["faults_per_frame"] > 1000
    assert kept["faults_per_frame"] < 50


def test_every_node_process_keeps_them() -> None:
    """init_ros is the entry of every node executable and of `saliency-ros run`."""
    pytest.importorskip("rclpy", reason="ROS tests need the ros-wheels extra (rclpy)")
    kept = _faults("from saliency_ros.nodes.base import init_ros\ninit_ros([])\nimport rclpy\nrclpy.shutdown()",
                   "hasattr(__import__('ctypes').CDLL(None), 'mallopt')")
    if not kept["set"]:
        pytest.skip("this C library has no mallopt (not glibc): keep_freed_frames changes nothing here")
    assert kept["faults_per_frame"] < 50
