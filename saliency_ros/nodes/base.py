"""What both perception nodes share: lifecycle, parameters, input checks, worker, diagnostics.

Life of a frame: the subscription callback (executor thread) only stores the message in a
`NewestSlot`; an inference thread takes the newest one, decodes and checks it, runs the model
and publishes with the input header. Frames replaced in the slot before the worker reached
them are counted as `dropped`; frames refused by a check are counted under their reason and
logged (throttled), never used. Model loading and warm-up happen in `configure`, so the first
real frame after `activate` runs at full speed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.event_handler import QoSMessageLostInfo, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from saliency_ros.heap import keep_freed_frames
from saliency_ros.image_codec import ImageDecodeError, compressed_to_bgr8, from_array, to_bgr8
from saliency_ros.newest_slot import NewestSlot
from saliency_ros.paths import resolve_data_file
from saliency_ros.runtime.engine import BACKENDS, Engine, EngineError, available_providers
from saliency_ros.stream_stats import StampGaps, WindowStats
from saliency_ros.thread_priority import lower_thread_priority, thread_nice

QOS_CHOICES = ("sensor_data", "reliable", "best_effort")
WARN_EVERY_S = 5.0
WARN_LEVEL_FOR_S = 10.0  # /diagnostics stays at WARN this long after a bad frame
# Skips that are normal operation, not bad input: no warning, no WARN level.
EXPECTED_SKIPS = frozenset({"rate_limited", "pair_filling"})
# The split of a published frame's time in /diagnostics (`<stage>_ms_p50`); receive is header
# stamp -> our callback, so it includes the camera's own publishing and DDS; preprocess is the
# pipeline's `prepare`: the card's resize and normalisation of the frame (the resize is most of
# it) and, for /saliency, the grey frame its motion prior or alignment reads; pipeline is the
# rest outside the model (the motion prior, resizing and thresholding the outputs).
SPLIT = ("receive", "decode", "preprocess", "model", "pipeline", "encode", "publish")
T = TypeVar("T")


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


def _short(text: str, limit: int = 64) -> str:
    """repr of `text`, cut to `limit` characters: a hostile 100 kB frame_id must not flood the log."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


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
        if not param.name:  # rclpy would create it (a parameter named '' is never declared)
            return SetParametersResult(successful=False, reason="a parameter name cannot be empty")
        spec = specs.get(param.name)
        if spec and (problem := spec.problem(param.name, param.value)):
            return SetParametersResult(successful=False, reason=problem)
    return SetParametersResult(successful=True)


def declare(node: Any, specs: dict[str, Param]) -> list[str]:
    """Declare `specs` on `node`; the problems of the values it starts with (from a
    parameters file or overrides). rclpy raises on a value out of its range or of the wrong
    type, which would kill the process before it could say so in /diagnostics: such a
    parameter is declared with its default instead and reported, so configure fails with it."""
    problems = []
    for name, p in specs.items():
        try:
            node.declare_parameter(name, p.default, p.descriptor())
        except (InvalidParameterValueException, InvalidParameterTypeException) as err:
            node.declare_parameter(name, p.default, p.descriptor(), ignore_override=True)
            problems.append(f"{name}: {err}")
    return problems + [m for name, spec in specs.items() if (m := spec.problem(name, node.get_parameter(name).value))]


COMMON_PARAMS: dict[str, Param] = {
    "autostart": Param(True, "configure and activate on start (false: wait for a lifecycle manager)"),
    "backend": Param("cpu", "ONNX Runtime execution provider", choices=tuple(BACKENDS)),
    "threads": Param(2, "ONNX Runtime intra-op threads", int_range=(1, 64)),
    "mirror_average": Param(False, "also run each frame mirrored left-right and average the two maps: "
                            "better maps for twice the model time (runtime.engine)"),
    "worker_nice": Param(0, "lower the inference thread's CPU priority by this much (Linux nice "
                         "increment; with threads: 1 the model runs on that thread)", int_range=(0, 19)),
    "input_transport": Param("raw", "raw: sensor_msgs/Image on camera/image_raw; compressed: "
                             "sensor_msgs/CompressedImage on camera/image_raw/compressed",
                             choices=("raw", "compressed")),
    "input_qos": Param("sensor_data", "subscription QoS", choices=QOS_CHOICES),
    "output_qos": Param("reliable", "publisher QoS", choices=QOS_CHOICES),
    "qos_depth": Param(5, "history depth of reliable/best_effort QoS", int_range=(1, 100)),
    # 2560x1440: the largest bgr8 frame the shipped Fast DDS profile carried in full
    # (bench/transport.py); 3200x1800 and 4K frames lost a third in transport.
    "max_image_pixels": Param(2560 * 1440, "larger input frames are refused (oversized)",
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
        self.process_ms = WindowStats()  # decode checks done: pre + model + post + publish
        self.latency_ms = WindowStats()  # receive -> publish, inside this node
        self.end_to_end_ms = WindowStats()  # header stamp -> publish (camera clock = ours)
        # Where a published frame's time goes (p50 in /diagnostics, SPLIT).
        self.split_ms = {k: WindowStats() for k in SPLIT}
        self.inference_ms = self.split_ms["model"]  # ONNX Runtime only
        self._preprocess_ms = self._encode_ms = self._publish_ms = 0.0
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
        # Frames that never reached the callback: DDS message-lost events and stamp gaps.
        self.lost_in_transport = 0
        self.stamp_gaps = StampGaps()
        self._last_loss = -WARN_LEVEL_FOR_S
        # Why recent frames gave no output, for the WARN that says why the output went quiet.
        self._unpublished: deque[str] = deque(maxlen=32)
        self._last_input = self._last_output = time.monotonic()
        self._busy = 0  # 1 while the worker handles a frame (the accounting's "pending")
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
        # Any failure, expected or not, ends here with its reason: logged, ERROR in
        # /diagnostics, and `saliency-ros run` exits 1. An exception escaping a lifecycle
        # callback would leave the node `unconfigured` with nothing said.
        try:
            return self._configure()
        except (EngineError, FileNotFoundError, ValueError) as err:  # ModelCardError is a ValueError
            return self._fail_configure(str(err))
        except Exception as err:
            return self._fail_configure(f"{type(err).__name__}: {err}")

    def _configure(self) -> TransitionCallbackReturn:
        if self._initial_problems:  # later changes go through check_parameters
            return self._fail_configure("invalid parameters: " + "; ".join(self._initial_problems))
        providers = BACKENDS[self.p("backend")]
        wanted = providers[0]
        if wanted not in available_providers():
            return self._fail_configure(
                f"backend {self.p('backend')!r} needs {wanted}, which this ONNX Runtime build does "
                f"not have (available: {available_providers()})")
        path = resolve_data_file(self.p("model"), "models")
        self.engine = Engine(path, threads=self.p("threads"), providers=providers, mirror=self.p("mirror_average"))
        t0 = time.perf_counter()
        self._load(self.engine)
        warm_ms = (time.perf_counter() - t0) * 1000
        qos = qos_profile(self.p("output_qos"), self.p("qos_depth"))
        self._create_outputs(qos)
        self.error = None
        self.get_logger().info(
            f"configured: {self.engine.path.name} ({self.engine.card.input.height}x"
            f"{self.engine.card.input.width}) on {list(self.engine.session.get_providers())}, "
            f"{self.p('threads')} threads{', mirror-averaged' if self.engine.mirror else ''}, warm-up {warm_ms:.0f} ms")
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
            CompressedImage if compressed else Image, topic, self._on_image, qos,
            event_callbacks=SubscriptionEventCallbacks(message_lost=self._on_message_lost))
        self._last_input = self._last_output = time.monotonic()
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
        self._last_input = time.monotonic()
        stamp = stamp_ns(msg.header)
        self.split_ms["receive"].add((time.time_ns() - stamp) / 1e6)
        if self.stamp_gaps.add(stamp):
            self._last_loss = self._last_input
        self._slot.put((msg, time.monotonic_ns()))

    def _on_message_lost(self, info: QoSMessageLostInfo) -> None:
        """The middleware says samples for this reader were lost (rmw_fastrtps reports them)."""
        self.lost_in_transport = info.total_count
        self._last_loss = time.monotonic()
        self._warn("lost_in_transport", f"{info.total_count_change} frame(s) lost in DDS before the node "
                   f"({info.total_count} so far)")

    def _work(self) -> None:
        if increment := self.p("worker_nice"):
            try:
                lower_thread_priority(increment)
            except OSError as err:  # no per-thread nice here: run on, at normal priority, and say so
                self.get_logger().warning(f"worker_nice {increment} not applied: {err}")
        while (item := self._slot.take()) is not None:
            self._busy = 1
            try:
                self._handle(*item)
            except Exception as err:  # keep flying: count, log, go on with the next frame
                self._skip("internal_error", f"{type(err).__name__}: {err}")
            finally:
                self._busy = 0

    def _handle(self, msg: Image | CompressedImage, received_ns: int) -> None:
        """Every frame taken from the slot ends in exactly one counter: processed (published)
        or one `skipped_*` reason, so received = processed + dropped + skipped + pending."""
        rate = self.p("max_rate_hz")
        now = time.monotonic()
        limited = rate > 0 and now - self._last_processed < 1.0 / rate
        if limited and not self.PAIRS_EVERY_FRAME:
            self._not_published("rate_limited")
            return
        t_decode = time.perf_counter()
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
        decode_ms = (time.perf_counter() - t_decode) * 1000
        stamp, frame_id = stamp_ns(msg.header), msg.header.frame_id
        if self._last_frame_id is not None and frame_id != self._last_frame_id:
            self._restart("frame_id_change", f"frame_id changed from {_short(self._last_frame_id)} to "
                          f"{_short(frame_id)}")
        elif self._last_stamp is not None and stamp < self._last_stamp:
            self._restart("stamp_backwards", f"header stamp went backwards ({stamp} after {self._last_stamp} ns; "
                          "a bag loop or a replay restart)")
        if self._last_stamp is not None and stamp == self._last_stamp and frame_id == self._last_frame_id:
            self._skip("stamp_repeated", f"header stamp {stamp} ns repeated: the same frame twice")
        elif limited:
            # Not run, but it keeps the pair buffer at the camera's rate, so the pairs of the
            # frames that do run have the gap the model was trained for.
            self._observe(frame, msg.header, key)
            self._not_published("rate_limited")
        else:
            self._last_processed = now
            self._preprocess_ms = self._encode_ms = self._publish_ms = 0.0
            t0 = time.perf_counter()
            published = self._process(frame, msg.header, key)
            process_ms = (time.perf_counter() - t0) * 1000
            self.process_ms.add(process_ms)
            if published:
                rest = process_ms - self._preprocess_ms - self.engine.last_run_ms - self._encode_ms - self._publish_ms
                for stage, ms in (("decode", decode_ms), ("preprocess", self._preprocess_ms),
                                  ("model", self.engine.last_run_ms), ("pipeline", rest),
                                  ("encode", self._encode_ms), ("publish", self._publish_ms)):
                    self.split_ms[stage].add(ms)
                self.output_rate.add()
                self._last_output = time.monotonic()
                self.latency_ms.add((time.monotonic_ns() - received_ns) / 1e6)
                self.end_to_end_ms.add((time.time_ns() - stamp) / 1e6)
        self._last_stamp, self._last_frame_id = stamp, frame_id

    def _preprocessed(self, prepare: Callable[[np.ndarray], T], frame: np.ndarray) -> T:
        """`prepare(frame)` (the pipeline's resize and normalisation), timed for the split."""
        t0 = time.perf_counter()
        prepared = prepare(frame)
        self._preprocess_ms += (time.perf_counter() - t0) * 1000
        return prepared

    def _send(self, publisher: Any, header: Header, img: np.ndarray, encoding: str) -> None:
        """Encode and publish one output, timing both for the split in /diagnostics."""
        t0 = time.perf_counter()
        msg = image_msg(header, img, encoding)
        t1 = time.perf_counter()
        publisher.publish(msg)
        self._encode_ms += (t1 - t0) * 1000
        self._publish_ms += (time.perf_counter() - t1) * 1000

    def _not_published(self, reason: str) -> None:
        """Count a frame that was handled without output, under `reason` (a skipped_* key)."""
        self.skipped[reason] += 1
        self._unpublished.append(reason)

    def _restart(self, reason: str, detail: str) -> None:
        """A new stream (a bag loop, another camera): pairing starts over and this frame is
        its first. Counted, logged at info: it is normal in replays."""
        self.restarts[reason] += 1
        self._reset_stream()
        self.get_logger().info(f"stream restarts ({reason}, {self.restarts[reason]} so far): {detail}",
                               throttle_duration_sec=WARN_EVERY_S)

    def _skip(self, reason: str, detail: str) -> None:
        self._not_published(reason)
        self._last_bad_frame = time.monotonic()
        self._warn(reason, f"frame skipped ({reason}, {self.skipped[reason]} so far): {detail}")

    def _warn(self, key: str, message: str) -> None:
        """Log a warning at most every WARN_EVERY_S per `key`."""
        now = time.monotonic()
        if now - self._last_warn.get(key, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._last_warn[key] = now
            self.get_logger().warning(message)

    def silence(self) -> str | None:
        """Why the node has published nothing for a while although frames arrive, or None.

        Quiet means no output for 3 s, or for three periods of `max_rate_hz` when that is
        longer, while frames kept arriving in the last second."""
        now = time.monotonic()
        rate = self.p("max_rate_hz")
        quiet_s = max(3.0, 3.0 / rate) if rate > 0 else 3.0
        if now - self._last_input > 1.0 or now - self._last_output < quiet_s or not self._unpublished:
            return None
        reason, count = Counter(self._unpublished).most_common(1)[0]
        return (f"no output for {now - self._last_output:.0f} s although frames arrive: "
                f"{self._explain(reason)} ({count} of the last {len(self._unpublished)} frames)")

    # --- diagnostics ------------------------------------------------------------------
    def _worker_nice(self) -> str:
        """The inference thread's nice value as the kernel has it ('' while none runs)."""
        worker = self._worker
        if worker is None or not worker.is_alive() or worker.native_id is None:
            return ""
        try:
            return str(thread_nice(worker.native_id))
        except ProcessLookupError:  # it ended between the check and the call
            return ""

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
            "mirror_average": str(self.engine.mirror if self.engine else self.p("mirror_average")).lower(),
            "input_rate_hz": f"{self.input_rate.rate_hz():.2f}",
            "output_rate_hz": f"{self.output_rate.rate_hz():.2f}",
            "received": str(self.input_rate.total),
            "processed": str(self.output_rate.total),
            "dropped": str(self._slot.dropped),
            "pending": str(self._slot.pending + self._busy),
            "lost_in_transport": str(self.lost_in_transport),
            "stamp_gap_frames": str(self.stamp_gaps.missing),
            "worker_nice": self._worker_nice(),
            "inference_ms_p50": f"{inf50:.2f}", "inference_ms_p95": f"{inf95:.2f}",
            "process_ms_p50": f"{pro50:.2f}", "process_ms_p95": f"{pro95:.2f}",
            "latency_ms_p50": f"{lat50:.2f}", "latency_ms_p95": f"{lat95:.2f}",
            "end_to_end_ms_p50": f"{e2e50:.2f}", "end_to_end_ms_p95": f"{e2e95:.2f}",
            **{f"{k}_ms_p50": f"{v.percentiles(50)[0]:.2f}" for k, v in self.split_ms.items()},
            **{f"skipped_{k}": str(v) for k, v in sorted(self.skipped.items())},
            **{f"restart_{k}": str(v) for k, v in sorted(self.restarts.items())},
            **self._extra_status(),
        }
        if self.error:
            level, message = DiagnosticStatus.ERROR, self.error
        elif state != "active":
            level, message = DiagnosticStatus.OK, state
        elif quiet := self.silence():
            level, message = DiagnosticStatus.WARN, quiet
        elif time.monotonic() - self._last_loss < WARN_LEVEL_FOR_S:
            level, message = DiagnosticStatus.WARN, (
                f"frames lost before the node (totals): {self.lost_in_transport} reported by DDS, "
                f"{self.stamp_gaps.missing} missing from the header stamps")
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
    # True for nodes whose model reads frame pairs: rate-limited frames are still decoded and
    # handed to `_observe`, so pairing follows the camera, not the output rate.
    PAIRS_EVERY_FRAME = False

    def _extra_status(self) -> dict[str, str]:
        return {}

    def _observe(self, frame: np.ndarray, header: Header, key: tuple[Any, ...]) -> None:
        """Take in a checked frame that is not run (rate limit); see PAIRS_EVERY_FRAME."""

    def _explain(self, reason: str) -> str:
        """A sentence for a skipped_* reason, for the silence warning."""
        return {"rate_limited": "max_rate_hz keeps every frame out",
                "stamp_repeated": "every frame repeats the previous header stamp"}.get(
                    reason, f"frames are skipped as {reason}")

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


def init_ros(args: list[str] | None) -> None:
    """rclpy.init without rclpy's signal handlers: SIGINT and SIGTERM raise KeyboardInterrupt in
    the main thread instead.

    rclpy's handler shuts the context down the moment the signal arrives, while an inference
    worker may still be publishing: it then logged "publisher's context is invalid" and "Failed
    to publish log message to rosout" on every Ctrl-C. Here the process itself stops the
    workers, joins them, destroys the nodes and only then shuts the context down.

    It also keeps freed frame-sized blocks in the heap (`heap.keep_freed_frames`) before any
    frame arrives: every process that runs nodes passes through here.
    """
    from rclpy.signals import SignalHandlerOptions

    keep_freed_frames()

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


# Set once SIGINT or SIGTERM arrived. A signal that lands while pybind11 converts an argument
# of an rclpy call (the executor's take_message) has its KeyboardInterrupt replaced by
# pybind's "RuntimeError: Unable to convert call argument": seen once in the launch test's
# Ctrl-C, where the node then died with a traceback instead of stopping cleanly.
_SIGNALLED = threading.Event()


def _interrupt(signum: int, frame: Any) -> None:
    _SIGNALLED.set()
    raise KeyboardInterrupt(f"signal {signum}")


def _note(signum: int, frame: Any) -> None:
    _SIGNALLED.set()


def stop_signalled() -> bool:
    """Whether SIGINT or SIGTERM has come since `init_ros`."""
    return _SIGNALLED.is_set()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Inside, SIGINT and SIGTERM are only noted (`stop_signalled`), not raised: a node that is
    loading finishes and says whether it configured before the process stops. Used where a
    supervisor may stop a node while it loads because another node failed (nodes/processes.py);
    a user's own Ctrl-C then waits for the load too, until the supervisor's grace runs out (a
    TensorRT engine build can take longer: the node is then killed)."""
    previous = {s: signal.signal(s, _note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def stopped_by_signal() -> Iterator[None]:
    """Around spinning: a stop ends it quietly. A stop is Ctrl-C or SIGTERM (KeyboardInterrupt),
    the context shut down from outside, or a RuntimeError raised after a stop signal (pybind's
    stand-in for the KeyboardInterrupt, above); any other RuntimeError propagates."""
    try:
        yield
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        if not _SIGNALLED.is_set():
            raise


def shut_down(executor: Any | None, nodes: list[Any]) -> None:
    """Workers first, then executor (if one spun), nodes and context: nothing publishes into a
    dead context."""
    for node in nodes:
        if isinstance(node, PerceptionNode):
            node._stop_processing()
    if executor is not None:
        executor.shutdown(timeout_sec=2.0)
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown()


def new_executor() -> Any:
    """The executor every process of ours spins: one thread, rclpy's EventsExecutor.

    Inference runs on the nodes' own worker threads (nodes/bringup.py), so the executor only
    hands messages over, answers services and fires timers. rclpy's EventsExecutor does that
    in C++ instead of rebuilding a wait set in Python for every message, which leaves the GIL
    to the workers: at 720p with both nodes in one process it cut `/saliency` mono8 p50 / p95
    from 12.7-13.1 / 19.4-19.5 to 11.1 / 16.4-17.0 ms and the mask's from 15.6 / 19.2-19.4 to
    12.2 / 17.0-17.2 ms (docs/benchmark_history.md, session 18). It is still in `rclpy.experimental`;
    the real-DDS, launch and Ctrl-C tests run on it. Spin it with `spin_until` from the main
    thread and shut it down there once that returns: in a probe here its `spin()` on another
    thread took a core and starved the main thread, and a shutdown while another thread was
    inside `spin_once` aborted the process.
    """
    from rclpy.experimental import EventsExecutor

    return EventsExecutor()


def spin_until(executor: Any, done: threading.Event | None = None) -> None:
    """Spin in short slices until `done` is set or the context ends. The slices matter: the
    stop signals raise in the main thread (`init_ros`), and Python only runs a signal handler
    once the executor's C++ call has returned."""
    while (done is None or not done.is_set()) and rclpy.ok():
        executor.spin_once(timeout_sec=0.1)


def spin_node(node_class: type[PerceptionNode] | Any, args: list[str] | None = None) -> None:
    """Entry point body of a single-node executable (`ros2 run saliency_ros saliency_node`)."""
    init_ros(args)
    executor = new_executor()
    nodes = []
    try:
        with stopped_by_signal():
            nodes.append(node_class())
            executor.add_node(nodes[0])
            spin_until(executor)
    finally:
        shut_down(executor, nodes)
