"""The test's side of the wire: a camera publisher, subscribers to every output, and clients
for the nodes' parameter and lifecycle services. Real rclpy over real DDS."""

from __future__ import annotations

import array
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

OUTPUTS = ("saliency", "saliency/objects/mask", "saliency/objects/probability")


class Probe:
    def __init__(self, context: Any, name: str = "probe", namespace: str = "") -> None:
        self.node = Node(name, namespace=namespace, context=context)
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.camera = self.node.create_publisher(Image, "camera/image_raw", qos)
        self.compressed = self.node.create_publisher(CompressedImage, "camera/image_raw/compressed", qos)
        self.received: dict[str, list[Any]] = defaultdict(list)
        self._lock = threading.Lock()
        for topic in OUTPUTS:
            self.node.create_subscription(Image, topic, self._keep(topic), qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._keep("/diagnostics"), 50)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.1)

    def _keep(self, topic: str):
        def store(msg: Any) -> None:
            with self._lock:
                self.received[topic].append(msg)
        return store

    def close(self) -> None:
        # The spin thread must be out of the executor before the executor, node and context
        # go: shut down from here while the thread still handled a task, the executor's guard
        # condition was destroyed under it (a thread warning the suite reported). So the thread
        # leaves its loop first and only then is the executor shut down.
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()

    # --- publishing -------------------------------------------------------------------
    @staticmethod
    def image(img: np.ndarray | bytes, encoding: str, stamp_ns: int, frame_id: str = "cam",
              height: int | None = None, width: int | None = None, step: int | None = None,
              big_endian: bool = False) -> Image:
        msg = Image()
        msg.header = Header(frame_id=frame_id)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        if isinstance(img, np.ndarray):
            height, width = img.shape[:2]
            step = step or img.strides[0]
            raw = img.tobytes()
        else:
            raw = img
        msg.height, msg.width, msg.step, msg.encoding = height, width, step, encoding
        msg.is_bigendian = int(big_endian)
        data = array.array("B")
        data.frombytes(raw)
        msg.data = data
        return msg

    def publish(self, msg: Image | CompressedImage, settle_s: float = 0.12) -> None:
        """Publish, then leave the nodes time to process (so no frame is dropped as stale)."""
        (self.compressed if isinstance(msg, CompressedImage) else self.camera).publish(msg)
        time.sleep(settle_s)

    # --- looking at outputs -----------------------------------------------------------
    def with_stamp(self, topic: str, stamp_ns: int) -> list[Any]:
        with self._lock:
            return [m for m in self.received[topic]
                    if m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec == stamp_ns]

    def wait_for(self, topic: str, stamp_ns: int, timeout: float = 5.0) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if got := self.with_stamp(topic, stamp_ns):
                return got[-1]
            time.sleep(0.01)
        raise AssertionError(f"no {topic} with stamp {stamp_ns} within {timeout} s")

    def status(self, role: str, timeout: float = 3.0) -> dict[str, str]:
        """Key/values of the newest /diagnostics status of `role` (saliency or objects)."""
        with self._lock:
            self.received["/diagnostics"].clear()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                for arr in reversed(self.received["/diagnostics"]):
                    for st in arr.status:
                        if st.name.endswith(f": {role}"):
                            return {"_level": ord(st.level) if isinstance(st.level, bytes) else st.level,
                                    "_message": st.message, "_hardware_id": st.hardware_id,
                                    **{kv.key: kv.value for kv in st.values}}
            time.sleep(0.05)
        raise AssertionError(f"no /diagnostics from {role} within {timeout} s")

    # --- services ---------------------------------------------------------------------
    def _call(self, srv_type: Any, name: str, request: Any, timeout: float = 5.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout), f"service {name} not available"
            future = client.call_async(request)
            end = time.monotonic() + timeout
            while not future.done() and time.monotonic() < end:
                time.sleep(0.01)
            assert future.done(), f"service {name} did not answer in {timeout} s"
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameter(self, node: str, name: str, value: Any) -> tuple[bool, str]:
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        result = self._call(SetParameters, f"/{node}/set_parameters", request).results[0]
        return result.successful, result.reason

    def lifecycle(self, node: str, transition: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition
        return self._call(ChangeState, f"/{node}/change_state", request).success

    def state(self, node: str) -> str:
        return self._call(GetState, f"/{node}/get_state", GetState.Request()).current_state.label
