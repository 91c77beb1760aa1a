"""The nodes of config/drone.yaml in this process: `saliency-ros run --one-process`, and each child
of `saliency-ros run` (`--node NAME`, one node; nodes/processes.py starts one per node).

Brings up the same executables' node classes with the same parameters file and remappings
that launch/drone.launch.py uses and prints the nodes' rates and latencies while it runs.
SIGINT (Ctrl-C), SIGTERM or `duration` ends it cleanly.

Threads: each perception node runs inference on its own worker thread, so the models run in
parallel; the executor only moves messages and answers services, and it is single-threaded on
purpose. Measured here with two 720p subscriptions in one process, rclpy's
MultiThreadedExecutor delivered 8-18 of ~130 frames at p50 100-150 ms, the single-threaded
one all of them at p50 4.4-8 ms (README, design notes); since session 18 that one thread runs
rclpy's EventsExecutor (`base.new_executor`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rclpy.node import Node
from rclpy.parameter import Parameter

from saliency_ros.nodes.base import (PerceptionNode, init_ros, new_executor, shut_down, signals_held,
                                     spin_until, stop_signalled, stopped_by_signal)
from saliency_ros.nodes.camera_source import CameraSource
from saliency_ros.nodes.objects_node import ObjectsNode
from saliency_ros.nodes.saliency_node import SaliencyNode
from saliency_ros.params_files import node_parameters

CAMERA_TOPIC = "camera/image_raw"


def ros_arguments(params_files: Sequence[Path], camera_topic: str | None) -> list[str]:
    """`--ros-args` for the process: the parameters files (a later one overrides) and the
    camera topic remapping (raw and compressed, as image_transport names them)."""
    args = ["--ros-args"]
    for params_file in params_files:
        args += ["--params-file", str(params_file)]
    if camera_topic:
        args += ["-r", f"{CAMERA_TOPIC}:={camera_topic}",
                 "-r", f"{CAMERA_TOPIC}/compressed:={camera_topic}/compressed"]
    return args


def summary_line(node: PerceptionNode) -> str:
    """One line of a node's live numbers, from the same status /diagnostics publishes."""
    v = {kv.key: kv.value for kv in node.status().values}
    skipped = sum(int(x) for k, x in v.items() if k.startswith("skipped_") and k != "skipped_pair_filling")
    return (f"{node.ROLE:>8}: in {v['input_rate_hz']:>6} Hz  out {v['output_rate_hz']:>6} Hz  "
            f"dropped {v['dropped']:>4}  skipped {skipped:>3}  model {v['inference_ms_p50']} ms  frame {v['process_ms_p50']} ms  "
            f"end-to-end p50 {v['end_to_end_ms_p50']} / p95 {v['end_to_end_ms_p95']} ms  [{v['state']}]")


def run(params_files: Sequence[Path], camera: str | None, namespace: str = "", camera_topic: str | None = None,
        duration_s: float | None = None, report_every_s: float = 2.0,
        overrides: Sequence[Parameter] = (), echo: Callable[[str], None] = print,
        extra_ros_args: Sequence[str] = (), only: str | None = None) -> int:
    """Spin the nodes until SIGINT or `duration_s`; returns the process exit code. objects_node
    is not started when saliency_node publishes the mask itself (`publish_objects` in the files,
    as `drone.launch.py shared_inference:=true` decides). With `only` (nodes/processes.NODES) this process
    runs that node alone, as a child of `saliency-ros run`: a stop signal while the node loads
    then waits until it has loaded and said whether it configured (the supervisor stops the
    other nodes when one fails, and each failure is still reported)."""
    default = {"publish_objects": SaliencyNode.PARAMS["publish_objects"].default}
    shared = node_parameters(params_files, "saliency_node", default)["publish_objects"]
    if only == "objects_node" and shared:
        return 0
    init_ros(["saliency-ros", *ros_arguments(params_files, camera_topic), *extra_ros_args])
    nodes: list[Node] = []

    def give_up(code: int, *messages: str) -> int:
        for message in messages:
            echo(f"saliency-ros run: {message}")
        shut_down(None, nodes)
        return code

    loading = signals_held() if only else contextlib.nullcontext()
    try:
        with loading:
            if camera is not None and only in (None, "camera_source"):
                nodes.append(CameraSource(namespace=namespace,
                                          parameter_overrides=[Parameter("source", value=camera)]))
            # The saliency node is made last: its subscription is then served first from each
            # camera message (receive 2.7 -> 1.5 ms p50, the mask's 1.6 -> 2.4 ms), and `/saliency`
            # has the tighter latency target (docs/benchmark_history.md, session 18).
            if not shared and only in (None, "objects_node"):
                nodes.append(ObjectsNode(namespace=namespace, parameter_overrides=list(overrides)))
            if only in (None, "saliency_node"):
                nodes.append(SaliencyNode(namespace=namespace, parameter_overrides=list(overrides)))
    except ValueError as err:  # camera_source: bad parameters or source
        return give_up(2, str(err))
    perception = [n for n in nodes if isinstance(n, PerceptionNode)]
    if failed := [n for n in perception if n.error]:
        return give_up(1, *(f"{n.get_name()} did not configure: {n.error}" for n in failed))
    executor = new_executor()
    for node in nodes:
        executor.add_node(node)
    stop, done = threading.Event(), threading.Event()
    if stop_signalled():  # a stop came while the node loaded
        done.set()

    def report() -> None:
        start = time.monotonic()
        while not stop.wait(report_every_s):
            if perception:  # a camera alone has nothing to report
                echo("\n".join([f"--- {time.monotonic() - start:5.1f} s", *map(summary_line, perception)]))
            if duration_s is not None and time.monotonic() - start >= duration_s:
                done.set()

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    try:
        with stopped_by_signal():
            spin_until(executor, done)
    finally:
        stop.set()
        for node in perception:
            node._stop_processing()
        if perception:
            echo("\n".join(["--- final", *map(summary_line, perception)]))
        shut_down(executor, nodes)
    return 0
