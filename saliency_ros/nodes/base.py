"""What both perception nodes share: lifecycle, parameters, input checks, worker, diagnostics.

Life of a frame: the subscription callback (executor thread) only stores the message in a
`NewestSlot`; an inference thread takes the newest one, decodes and checks it, runs the model
and publishes with the input header. Frames replaced in the slot before the worker reached
them are counted as `dropped`; frames refused by a check are counted under their reason and
logged (throttled), never used. Model loading and warm-up happen in `configure`, so the first
real frame after `activate` runs at full speed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from saliency_ros.image_codec import ImageDecodeError, compressed_to_bgr8, from_array, to_bgr8
from saliency_ros.newest_slot import NewestSlot
from saliency_ros.paths import resolve_data_file
from saliency_ros.runtime.engine import BACKENDS, Engine, EngineError, available_providers
from saliency_ros.stream_stats import WindowStats

QOS_CHOICES = ("sensor_data", "reliable", "best_effort")
WARN_EVERY_S = 5.0
WARN_LEVEL_FOR_S = 10.0  # /diagnostics stays at WARN this long after a bad frame
# Skips that are normal operation, not bad input: no warning, no WARN level.
EXPECTED_SKIPS = frozenset({"rate_limited", "pair_filling"})


def qos_profile(kind: str, depth: int) -> QoSProfile:
    """sensor_data (best effort, keep last 5), reliable or best_effort with `depth`."""
    if kind == "sensor_data":
        return qos_profile_sensor_data
    reliability = QoSReliabilityPolicy.RELIABLE if kind == "reliable" else QoSReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability)


def image_msg(header: Header, img: np.ndarray, encoding: str) -> Image:
    """sensor_msgs/Image of `img` with the given header (data as array.array: fast assignment)."""
    msg = Image()
    msg.header = header
    msg.height, msg.width, msg.step, data = from_array(img, encoding)
    msg.encoding, msg.is_bigendian = encoding, 0
    msg.data = data
    return msg


def stamp_ns(header: Header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


@dataclass(frozen=True)
class Param:
    """A parameter declaration: default, description, and its constraint."""

    default: Any
    description: str
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    dynamic: bool = False  # may change while the node runs; otherwise read-only after start

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(description=self.description, read_only=not self.dynamic)
        if self.choices:
            d.additional_constraints = f"one of: {', '.join(self.choices)}"
        if self.int_range:
            d.integer_range = [IntegerRange(from_value=self.int_range[0], to_value=self.int_range[1], step=1)]
        if self.float_range:
            d.floating_point_range = [FloatingPointRange(
                from_value=float(self.float_range[0]), to_value=float(self.float_range[1]), step=0.0)]
        return d

    def problem(self, name: str, value: Any) -> str | None:
        """Why `value` is not acceptable, or None. rclpy checks ranges too; initial values
        from a parameters file are checked here on configure."""
        if self.choices and value not in self.choices:
            return f"{name} must be one of {list(self.choices)}, got {value!r}"
        if self.int_range and not self.int_range[0] <= value <= self.int_range[1]:
            return f"{name} must be in [{self.int_range[0]}, {self.int_range[1]}], got {value}"
        if self.float_range and not self.float_range[0] <= value <= self.float_range[1]:
            return f"{name} must be in [{self.float_range[0]}, {self.float_range[1]}], got {value}"
        return None


def check_parameters(specs: dict[str, Param], params: list[Parameter]) -> SetParametersResult:
    """on-set-parameters callback body: refuse the whole set with the first problem found."""
    for param in params:
        spec = specs.get(param.name)
        if spec and (problem := spec.problem(param.name, param.value)):
            return SetParametersResult(successful=False, reason=problem)
    return SetParametersResult(successful=True)


def declare(node: Any, specs: dict[str, Param]) -> list[str]:
    """Declare `specs` on `node`; the problems of the values it starts with (from a
    parameters file or overrides, which rclpy checks only against the ranges)."""
    for name, p in specs.items():
        node.declare_parameter(name, p.default, p.descriptor())
    return [m for name, spec in specs.items() if (m := spec.problem(name, node.get_parameter(name).value))]


COMMON_PARAMS: dict[str, Param] = {
    "autostart": Param(True, "configure and activate on start (false: wait for a lifecycle manager)"),
    "backend": Param("cpu", "ONNX Runtime execution provider", choices=tuple(BACKENDS)),
    "threads": Param(2, "ONNX Runtime intra-op threads", int_range=(1, 64)),
    "input_transport": Param("raw", "raw: sensor_msgs/Image on camera/image_raw; compressed: "
                             "sensor_msgs/CompressedImage on camera/image_raw/compressed",
                             choices=("raw", "compressed")),
    "input_qos": Param("sensor_data", "subscription QoS", choices=QOS_CHOICES),
    "output_qos": Param("reliable", "publisher QoS", choices=QOS_CHOICES),
    "qos_depth": Param(5, "history depth of reliable/best_effort QoS", int_range=(1, 100)),
    "max_image_pixels": Param(3840 * 2160, "larger input frames are refused (oversized)",
                              int_range=(1, 1 << 28)),
    "max_rate_hz": Param(0.0, "process at most this many frames per second (0: every frame "
                         "the model keeps up with)", float_range=(0.0, 1000.0), dynamic=True),
}


class PerceptionNode(LifecycleNode):
    """Base of saliency_node and objects_node. Subclasses declare `PARAMS` and implement
    `_load`, `_create_outputs`, `_process` and `_reset_stream`."""

    PARAMS: dict[str, Param] = {}
    ROLE = "perception"

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = {**COMMON_PARAMS, **self.PARAMS}
        self.status_name = f"{self.get_fully_qualified_name()}: {self.ROLE}"
        self._initial_problems = declare(self, self.params)
        self.add_on_set_parameters_callback(lambda params: check_parameters(self.params, params))
        self.skipped: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        self.input_rate = WindowStats()  # .total: frames received
        self.output_rate = WindowStats()  # .total: frames published
        self.inference_ms = WindowStats()  # ONNX Runtime only
        self.process_ms = WindowStats()  # decode checks done: pre + model + post + publish
        self.latency_ms = WindowStats()  # receive -> publish, inside this node
        self.end_to_end_ms = WindowStats()  # header stamp -> publish (camera clock = ours)
        self.engine: Engine | None = None
        self.error: str | None = None
        self._slot: NewestSlot[tuple[Any, int]] = NewestSlot()
        self._worker: threading.Thread | None = None
        self._subscription: Any = None
        self._last_warn: dict[str, float] = {}
        self._last_bad_frame = -WARN_LEVEL_FOR_S
        self._last_stamp: int | None = None
        self._last_frame_id: str | None = None
        self._last_processed = 0.0
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        if self.p("autostart"):
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # --- parameters -------------------------------------------------------------------
    def p(self, name: str) -> Any:
        return self.get_parameter(name).value

    # --- lifecycle --------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._initial_problems:  # later changes go through check_parameters
            return self._fail_configure("invalid parameters: " + "; ".join(self._initial_problems))
        providers = BACKENDS[self.p("backend")]
        wanted = providers[0]
        if wanted not in available_providers():
            return self._fail_configure(
                f"backend {self.p('backend')!r} needs {wanted}, which this ONNX Runtime build does "
                f"not have (available: {available_providers()})")
        try:
            path = resolve_data_file(self.p("model"), "models")
            self.engine = Engine(path, threads=self.p("threads"), providers=providers)
            t0 = time.perf_counter()
            self._load(self.engine)
            warm_ms = (time.perf_counter() - t0) * 1000
        except (EngineError, FileNotFoundError, ValueError) as err:
            return self._fail_configure(str(err))
        qos = qos_profile(self.p("output_qos"), self.p("qos_depth"))
        self._create_outputs(qos)
        self.error = None
        self.get_logger().info(
            f"configured: {self.engine.path.name} ({self.engine.card.input.height}x"
            f"{self.engine.card.input.width}) on {list(self.engine.session.get_providers())}, "
            f"{self.p('threads')} threads, warm-up {warm_ms:.0f} ms")
        return TransitionCallbackReturn.SUCCESS

    def _fail_configure(self, reason: str) -> TransitionCallbackReturn:
        self.error = reason
        self.engine = None
        self.get_logger().error(f"configure failed: {reason}")
        return TransitionCallbackReturn.FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        compressed = self.p("input_transport") == "compressed"
        qos = qos_profile(self.p("input_qos"), self.p("qos_depth"))
        topic = "camera/image_raw/compressed" if compressed else "camera/image_raw"
        self._subscription = self.create_subscription(
            CompressedImage if compressed else Image, topic, self._on_image, qos)
        self._reset_input()
        self._slot.reopen()
        self._worker = threading.Thread(target=self._work, name=f"{self.get_name()}-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(f"active: reading {self._subscription.topic_name}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_outputs()
        self.engine = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        return TransitionCallbackReturn.SUCCESS

    def _stop_processing(self) -> None:
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
            self._worker = None
        self._slot.clear()

    def _reset_input(self) -> None:
        self._last_stamp = None
        self._last_frame_id = None
        self._reset_stream()

    # --- frames -----------------------------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.input_rate.add()
        self._slot.put((msg, time.monotonic_ns()))

    def _work(self) -> None:
        while (item := self._slot.take()) is not None:
            try:
                self._handle(*item)
            except Exception as err:  # keep flying: count, log, go on with the next frame
                self._skip("internal_error", f"{type(err).__name__}: {err}")

    def _handle(self, msg: Image | CompressedImage, received_ns: int) -> None:
        rate = self.p("max_rate_hz")
        now = time.monotonic()
        if rate > 0 and now - self._last_processed < 1.0 / rate:
            self.skipped["rate_limited"] += 1
            return
        try:
            if isinstance(msg, CompressedImage):
                frame = compressed_to_bgr8(msg.format, msg.data, self.p("max_image_pixels"))
                key: tuple[Any, ...] = (frame.shape, msg.format)
            else:
                frame = to_bgr8(msg, self.p("max_image_pixels"))
                key = (frame.shape, msg.encoding)
        except ImageDecodeError as err:
            self._skip(err.reason, str(err))
            return
        stamp, frame_id = stamp_ns(msg.header), msg.header.frame_id
        if self._last_frame_id is not None and frame_id != self._last_frame_id:
            self._restart("frame_id_change", f"frame_id changed from {self._last_frame_id!r} to {frame_id!r}")
        elif self._last_stamp is not None and stamp < self._last_stamp:
            self._restart("stamp_backwards", f"header stamp went backwards ({stamp} after {self._last_stamp} ns; "
                          "a bag loop or a replay restart)")
        if self._last_stamp is not None and stamp == self._last_stamp and frame_id == self._last_frame_id:
            self._skip("stamp_repeated", f"header stamp {stamp} ns repeated: the same frame twice")
        else:
            self._last_processed = now
            t0 = time.perf_counter()
            published = self._process(frame, msg.header, key)
            self.process_ms.add((time.perf_counter() - t0) * 1000)
            if published:
                self.inference_ms.add(self.engine.last_run_ms)
                self.output_rate.add()
                self.latency_ms.add((time.monotonic_ns() - received_ns) / 1e6)
                self.end_to_end_ms.add((time.time_ns() - stamp) / 1e6)
        self._last_stamp, self._last_frame_id = stamp, frame_id

    def _restart(self, reason: str, detail: str) -> None:
        """A new stream (a bag loop, another camera): pairing starts over and this frame is
        its first. Counted, logged at info: it is normal in replays."""
        self.restarts[reason] += 1
        self._reset_stream()
        self.get_logger().info(f"stream restarts ({reason}, {self.restarts[reason]} so far): {detail}",
                               throttle_duration_sec=WARN_EVERY_S)

    def _skip(self, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        now = time.monotonic()
        self._last_bad_frame = now
        if now - self._last_warn.get(reason, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._last_warn[reason] = now
            self.get_logger().warning(
                f"frame skipped ({reason}, {self.skipped[reason]} so far): {detail}")

    # --- diagnostics ------------------------------------------------------------------
    def status(self) -> DiagnosticStatus:
        """The node's health as one DiagnosticStatus (also what `saliency-ros run` prints)."""
        try:
            state = self._state_machine.current_state[1]
        except Exception:  # handle gone: the context was shut down (SIGINT)
            state = "finalized"
        inf50, inf95 = self.inference_ms.percentiles(50, 95)
        pro50, pro95 = self.process_ms.percentiles(50, 95)
        lat50, lat95 = self.latency_ms.percentiles(50, 95)
        e2e50, e2e95 = self.end_to_end_ms.percentiles(50, 95)
        values = {
            "state": state,
            "model": self.engine.path.name if self.engine else "",
            "backend": ",".join(self.engine.session.get_providers()) if self.engine else self.p("backend"),
            "input_rate_hz": f"{self.input_rate.rate_hz():.2f}",
            "output_rate_hz": f"{self.output_rate.rate_hz():.2f}",
            "received": str(self.input_rate.total),
            "processed": str(self.output_rate.total),
            "dropped": str(self._slot.dropped),
            "inference_ms_p50": f"{inf50:.2f}", "inference_ms_p95": f"{inf95:.2f}",
            "process_ms_p50": f"{pro50:.2f}", "process_ms_p95": f"{pro95:.2f}",
            "latency_ms_p50": f"{lat50:.2f}", "latency_ms_p95": f"{lat95:.2f}",
            "end_to_end_ms_p50": f"{e2e50:.2f}", "end_to_end_ms_p95": f"{e2e95:.2f}",
            **{f"skipped_{k}": str(v) for k, v in sorted(self.skipped.items())},
            **{f"restart_{k}": str(v) for k, v in sorted(self.restarts.items())},
            **self._extra_status(),
        }
        if self.error:
            level, message = DiagnosticStatus.ERROR, self.error
        elif state != "active":
            level, message = DiagnosticStatus.OK, state
        elif time.monotonic() - self._last_bad_frame < WARN_LEVEL_FOR_S:
            bad = {k: v for k, v in self.skipped.items() if k not in EXPECTED_SKIPS and v}
            level, message = DiagnosticStatus.WARN, "frames skipped (totals): " + ", ".join(
                f"{k} {v}" for k, v in sorted(bad.items()))
        elif self.input_rate.total and self.input_rate.rate_hz() == 0.0:
            level, message = DiagnosticStatus.WARN, "no input in the last 5 s"
        else:
            level, message = DiagnosticStatus.OK, "running"
        return DiagnosticStatus(
            level=level, name=self.status_name, message=message,
            hardware_id=values["backend"], values=[KeyValue(key=k, value=v) for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.status()]
        self._diagnostics.publish(msg)

    # --- for subclasses ---------------------------------------------------------------
    def _extra_status(self) -> dict[str, str]:
        return {}

    def _load(self, engine: Engine) -> None:
        raise NotImplementedError

    def _create_outputs(self, qos: QoSProfile) -> None:
        raise NotImplementedError

    def _destroy_outputs(self) -> None:
        raise NotImplementedError

    def _process(self, frame: np.ndarray, header: Header, key: tuple[Any, ...]) -> bool:
        """Run the model on a checked frame and publish; False when nothing was published."""
        raise NotImplementedError

    def _reset_stream(self) -> None:
        """Forget temporal state (the frame pair) after a break in the stream."""


def spin_node(node_class: type[PerceptionNode] | Any, args: list[str] | None = None) -> None:
    """Entry point body of a single-node executable (`ros2 run saliency_ros saliency_node`)."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=args)
    node = node_class()
    executor = SingleThreadedExecutor()  # inference has its own thread; see nodes/bringup.py
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if isinstance(node, PerceptionNode):
            node._stop_processing()
        node.destroy_node()
        rclpy.try_shutdown()
