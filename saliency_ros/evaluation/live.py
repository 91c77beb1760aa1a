"""`saliency-ros eval --live BAG`: replay a bag into running nodes over DDS and score what
comes back.

Two ways to feed the nodes:
  play    this process publishes the bag's camera messages unchanged (serialized bytes, as
          `ros2 bag play` does) at the recorded timing divided by `rate`;
  listen  something else plays the bag (`ros2 bag play BAG` on a full ROS 2 install); this
          process records the camera topic and the outputs until the replay goes quiet.
Either way every received message is written, as it arrived, into an MCAP bag (kept with
`record`, viewable in Foxglove), and scoring reads that recording afterwards: the callbacks
only store bytes, so scoring cannot slow the replay down. Outputs are matched to frames by
header stamp; an expected output that never arrived is a dropped frame. Latency is output
arrival minus the frame's publish time (play) or its arrival here (listen).
"""

from __future__ import annotations

import queue
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import StoragePlugin
from tqdm import tqdm

from saliency_ros.evaluation.bags import (CAMERA_TOPIC, IMAGE_TYPE, TYPESTORE, BagError, BagReader,
                                          cdr_stamp_ns)
from saliency_ros.evaluation.offline import MASK, OBJECTS, SALIENCY, NodeConfig
from saliency_ros.evaluation.scoreboard import Scoreboard
from saliency_ros.frame_buffer import FramePairBuffer
from saliency_ros.image_codec import ImageDecodeError, to_array, to_bgr8
from saliency_ros.params_files import params_label

# output topic (relative to the nodes' namespace) -> scoreboard method
OUTPUTS = {"saliency": SALIENCY, "saliency/objects/probability": OBJECTS, "saliency/objects/mask": MASK}


class LiveError(RuntimeError):
    """The replay could not run: no nodes, nothing received, a timeout."""


@dataclass
class LiveOptions:
    params: Path | Sequence[Path]  # the nodes' parameters file(s) (gap settings decide which frames pair)
    namespace: str = ""
    play: bool = True
    rate: float = 1.0
    record: Path | None = None
    wait_s: float = 15.0  # for the nodes to appear (play) or the first frame (listen)
    settle_s: float = 3.0  # after the last frame, for outputs still on their way
    idle_s: float = 5.0  # listen: stop after this long without a camera frame
    start_delay_s: float = 1.0  # after discovery, before the first frame (lets readers match)
    enable_probability: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")


def _topic(namespace: str, name: str) -> str:
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    return f"{ns}/{name}"


class _Recorder:
    """Arrival index of every message, and a writer thread that appends the ones in `keep`
    to an MCAP bag. Callbacks only index and enqueue, so disk writes never delay the
    executor (which would show up as latency of the nodes). The queue is bounded in bytes:
    a disk slower than the replay stops the evaluation with an error, never a silent gap."""

    def __init__(self, path: Path, topics: Sequence[str], keep: set[str],
                 max_queued_bytes: int = 1 << 30) -> None:
        self._writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._cons = {t: self._writer.add_connection(t, IMAGE_TYPE, typestore=TYPESTORE)
                      for t in topics if t in keep}
        self._queue: queue.SimpleQueue[tuple[str, bytes, int] | None] = queue.SimpleQueue()
        self._queued_bytes, self._max = 0, max_queued_bytes
        self._lock = threading.Lock()
        self.overflow = False
        self.arrivals: dict[str, dict[int, int]] = defaultdict(dict)  # topic -> stamp -> wall ns
        self._thread = threading.Thread(target=self._drain, name="recorder", daemon=True)
        self._thread.start()

    def __call__(self, topic: str, raw: bytes, wall_ns: int) -> None:
        self.arrivals[topic].setdefault(cdr_stamp_ns(raw), wall_ns)
        if topic not in self._cons:
            return
        with self._lock:
            if self._queued_bytes + len(raw) > self._max:
                self.overflow = True
                return
            self._queued_bytes += len(raw)
        self._queue.put((topic, raw, wall_ns))

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            topic, raw, wall_ns = item
            self._writer.write(self._cons[topic], wall_ns, raw)
            with self._lock:
                self._queued_bytes -= len(raw)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._writer.close()
        if self.overflow:
            raise LiveError("the recording fell more than 1 GiB behind the replay (slow disk): "
                            "outputs were not all kept; record to a faster disk or lower --rate")


def _set_probability(node: Any, executor: Any, remote: str, value: bool, timeout: float = 5.0) -> bool | None:
    """Set `publish_probability` on the objects node; returns the previous value, or None
    when the node's parameter service does not answer."""
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(node, remote)  # its service clients go with the node
    if not client.wait_for_services(timeout_sec=timeout):
        return None
    fut = client.get_parameters(["publish_probability"])
    executor.spin_until_future_complete(fut, timeout_sec=timeout)
    if not fut.done() or not fut.result().values:
        return None
    previous = bool(fut.result().values[0].bool_value)
    fut = client.set_parameters([Parameter("publish_probability", value=value)])
    executor.spin_until_future_complete(fut, timeout_sec=timeout)
    return previous if fut.done() and fut.result().results[0].successful else None


def _replay(reader: BagReader, options: LiveOptions, record_path: Path) -> dict[str, Any]:
    """Run the replay; returns what happened (publish times, counts, timing)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    camera = _topic(options.namespace, CAMERA_TOPIC.lstrip("/"))
    outputs = {_topic(options.namespace, t): m for t, m in OUTPUTS.items()}
    # The node that publishes the mask: saliency_node itself under shared inference.
    shared = NodeConfig.load(options.params).shared_inference
    objects_node = _topic(options.namespace, "saliency_node" if shared else "objects_node")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("saliency_eval", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    # Outputs are kept for scoring when there is ground truth, everything when asked to
    # record; the camera frames are in the input bag already.
    keep = set(outputs) if reader.has_ground_truth or options.record else set()
    if options.record:
        keep.add(camera)
    recorder = _Recorder(record_path, [camera, *outputs], keep)
    published: dict[int, int] = {}
    restore: bool | None = None
    try:
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for topic in outputs:
            node.create_subscription(Image, topic, lambda raw, t=topic: recorder(t, raw, time.time_ns()),
                                     reliable, raw=True)
        if options.play:
            pub = node.create_publisher(Image, camera, reliable)
            _wait(executor, lambda: pub.get_subscription_count() > 0
                  and all(node.count_publishers(t) for t in outputs), options.wait_s,
                  f"no node subscribes to {camera} and publishes {sorted(outputs)} in this ROS domain; "
                  "start them first, e.g. `saliency-ros run --camera none --loopback --domain-id N` "
                  "with the same --domain-id (and --loopback) as this command")
        else:
            node.create_subscription(Image, camera, lambda raw: recorder(camera, raw, time.time_ns()),
                                     qos_profile_sensor_data, raw=True)
        if options.enable_probability:
            restore = _set_probability(node, executor, objects_node, True)
        # Matched on one side is not yet matched on the other: best-effort readers (the nodes'
        # default) lose what is published before they have matched the writer.
        _spin_for(executor, options.start_delay_s)
        if not options.play:
            print(f"saliency-ros eval: listening on {camera} and {sorted(outputs)}; play the bag now",
                  file=sys.stderr, flush=True)
        t_start = time.monotonic()
        if options.play:
            player = threading.Thread(target=_play, args=(reader, pub, options.rate, published, recorder, camera),
                                      daemon=True)
            player.start()
            with tqdm(total=reader.frame_count, unit="frame", desc="replay", disable=not options.progress) as bar:
                while player.is_alive():
                    executor.spin_once(timeout_sec=0.05)
                    bar.update(len(published) - bar.n)
                bar.update(len(published) - bar.n)
            _settle(executor, recorder, outputs, published, options.settle_s)
        else:
            _listen(executor, recorder, camera, reader, options)
        replay_s = time.monotonic() - t_start
    finally:
        if restore is False:
            _set_probability(node, executor, objects_node, False)
        recorder.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    arrivals = recorder.arrivals
    return {"published": published if options.play else dict(arrivals.get(camera, {})),
            "arrivals": {outputs[t]: dict(arrivals.get(t, {})) for t in outputs},
            "topics": outputs, "camera": camera, "replay_s": replay_s,
            "probability_enabled": restore is not None}


def _spin_for(executor: Any, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)


def _wait(executor: Any, predicate: Any, timeout: float, message: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise LiveError(f"after {timeout:.0f} s: {message}")
        executor.spin_once(timeout_sec=0.05)


def _play(reader: BagReader, pub: Any, rate: float, published: dict[int, int],
          recorder: _Recorder, camera: str) -> None:
    """Publish each camera message at its recorded time offset / rate."""
    t0: float | None = None
    first_log = 0
    for log_ns, stamp_ns, raw in reader.raw_camera_messages():
        if t0 is None:
            t0, first_log = time.monotonic(), log_ns
        delay = t0 + (log_ns - first_log) / 1e9 / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        raw = bytes(raw)
        pub.publish(raw)
        now = time.time_ns()
        published[stamp_ns] = now
        recorder(camera, raw, now)


def _settle(executor: Any, recorder: _Recorder, outputs: dict[str, str], published: dict[int, int],
            settle_s: float) -> None:
    """Spin until every output topic has answered the last frame, or `settle_s` passed."""
    last_stamp = max(published, default=None)
    end = time.monotonic() + settle_s
    while time.monotonic() < end:
        if last_stamp is not None and all(last_stamp in recorder.arrivals.get(t, {}) for t in outputs
                                          if recorder.arrivals.get(t)):
            break
        executor.spin_once(timeout_sec=0.05)
    for _ in range(5):  # drain what is already queued
        executor.spin_once(timeout_sec=0.01)


def _listen(executor: Any, recorder: _Recorder, camera: str, reader: BagReader,
            options: LiveOptions) -> None:
    """Record until the bag's last frame came by and settled, or the camera went quiet."""
    last_stamp = max(s.end_ns for s in reader.sequences)
    seen = recorder.arrivals[camera]
    end_wait = time.monotonic() + options.wait_s
    with tqdm(total=reader.frame_count, unit="frame", desc="listen", disable=not options.progress) as bar:
        while not seen:
            if time.monotonic() > end_wait:
                raise LiveError(f"no frame on {camera} within {options.wait_s:.0f} s; start "
                                f"`ros2 bag play {reader.path}` after this command")
            executor.spin_once(timeout_sec=0.05)
        last_count, last_change = 0, time.monotonic()
        while True:
            executor.spin_once(timeout_sec=0.05)
            if len(seen) != last_count:
                last_count, last_change = len(seen), time.monotonic()
                bar.update(last_count - bar.n)
            idle = time.monotonic() - last_change
            if (last_stamp in seen and idle > options.settle_s) or idle > options.idle_s:
                return


def _recorded(path: Path, topics: dict[str, str]) -> Iterator[tuple[str, int, bytes]]:
    """(method, stamp, raw) of the recorded outputs, in arrival order."""
    with Reader(path) as reader:
        cons = [c for c in reader.connections if c.topic in topics]
        for con, _, raw in reader.messages(connections=cons):
            yield topics[con.topic], cdr_stamp_ns(raw), raw


def evaluate_live(bags: Sequence[Path], options: LiveOptions) -> tuple[dict[str, Any], Scoreboard]:
    if len(bags) != 1:
        raise LiveError(f"live replay plays one bag at a time, got {len(bags)}; `saliency-ros bag build "
                        "--single` puts many sequences into one")
    reader = BagReader(bags[0])
    tmp = None
    record = options.record
    if record is None:
        tmp = Path(tempfile.mkdtemp(prefix="saliency_eval_"))
        record = tmp / "outputs"
    elif record.exists():
        raise FileExistsError(f"{record} already exists (choose a new --record path)")
    try:
        run = _replay(reader, options, record)
        result, board = _score(reader, run, record, options)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if options.record is not None:
        result["recording"] = str(options.record)
    return result, board


def _score(reader: BagReader, run: dict[str, Any], record: Path,
           options: LiveOptions) -> tuple[dict[str, Any], Scoreboard]:
    nodes = NodeConfig.load(options.params)
    sal_cfg, obj_cfg, max_pixels = nodes.saliency, nodes.objects, nodes.max_pixels
    pairs: FramePairBuffer[None] | None = nodes.pair_buffer() if nodes.reads_pairs else None
    arrivals: dict[str, dict[int, int]] = run["arrivals"]
    probability = run["probability_enabled"] or bool(arrivals.get(OBJECTS))
    published: dict[int, int] = run["published"]
    board = Scoreboard()
    expected: dict[str, int] = defaultdict(int)
    pending: dict[int, dict[str, bytes]] = defaultdict(dict)
    stream = _recorded(record, run["topics"])
    unmatched = {m: set(a) for m, a in arrivals.items()}
    current = None
    for f in reader.frames():
        if f.sequence != current:
            current = f.sequence
            if pairs is not None:
                pairs.clear()
        board.frame(f.sequence)
        try:
            frame = to_bgr8(f.image, max_pixels)
        except ImageDecodeError as err:
            board.skipped[err.reason] += 1  # the nodes refuse it too: no output expected
            continue
        wanted = {OBJECTS, MASK} if probability else {MASK}
        if pairs is None or pairs.push(None, f.stamp_ns, (frame.shape, f.image.encoding)) is not None:
            wanted.add(SALIENCY)
        for m in wanted:
            expected[m] += 1
        have = {m for m in wanted if f.stamp_ns in arrivals.get(m, {})}
        sent = published.get(f.stamp_ns)
        for m in have:
            unmatched[m].discard(f.stamp_ns)
            if sent is not None:
                board.time(m, (arrivals[m][f.stamp_ns] - sent) / 1e6)
        if f.gt is None and f.box is None:
            continue
        while any(m not in pending[f.stamp_ns] for m in have):  # read the recording up to here
            method, stamp, raw = next(stream)
            pending[stamp][method] = raw
        outs = pending.pop(f.stamp_ns, {})
        for stamp in [s for s in pending if s < f.stamp_ns]:  # passed: unmatched; memory stays flat
            del pending[stamp]
        gt = None if f.gt is None else to_array(f.gt, max_pixels)
        for m, raw in outs.items():
            img = to_array(TYPESTORE.deserialize_cdr(raw, IMAGE_TYPE), max_pixels)
            if m == MASK:
                if gt is not None:
                    board.score_mask(MASK, f.sequence, img, gt)
                continue
            pred = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img
            kind = "saliency" if m == SALIENCY else "objects"
            if gt is not None:
                board.score_map(m, kind, f.sequence, pred, gt)
            if f.box is not None:  # target boxes are scored at the camera frame's size
                board.score_box(m, kind, f.sequence, pred, f.box, frame.shape)
    result = board.results()
    topics: dict[str, Any] = {}
    for topic, m in run["topics"].items():
        got = arrivals.get(m, {})
        received = len(got) - len(unmatched.get(m, ()))
        gaps = np.diff(sorted(got.values()))
        topics[topic] = {"method": m, "expected": expected.get(m, 0), "received": received,
                         "dropped": expected.get(m, 0) - received, "unmatched": len(unmatched.get(m, ())),
                         # the steady rate: pauses between sequences do not count
                         "output_rate_hz": 1e9 / float(np.median(gaps)) if gaps.size else 0.0,
                         "latency_ms": result["methods"].get(m, {}).get("latency_ms")}
    result.update({"mode": "live", "play": "self" if options.play else "external",
                   "bags": [str(reader.path)], "frames": reader.frame_count,
                   "published": len(published), "rate": options.rate, "replay_s": run["replay_s"],
                   "inputs_missing": reader.frame_count - len(published),
                   "topics": topics, "probability_scored": probability,
                   "parameters": {"saliency_node": sal_cfg, "objects_node": obj_cfg,
                                  "params_file": params_label(options.params)}})
    return result, board


__all__ = ["BagError", "LiveError", "LiveOptions", "cdr_stamp_ns", "evaluate_live"]
