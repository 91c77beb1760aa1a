"""objects_node: the newest camera frame -> SOD net -> salient-object mask (and probability).

Topics (relative to the node namespace):
  in   camera/image_raw (sensor_msgs/Image) or camera/image_raw/compressed (CompressedImage)
  out  saliency/objects/mask (mono8, 0/255, camera resolution)
       saliency/objects/probability (32FC1 in [0, 1], when publish_probability is true)
       saliency/objects/overlay (bgr8, only while subscribed)
Every output carries the input frame's header.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from saliency_ros.nodes.base import Param, PerceptionNode, spin_node
from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.overlay import overlay
from saliency_ros.runtime.pipelines import ObjectsPipeline


class ObjectsNode(PerceptionNode):
    ROLE = "objects"
    PARAMS = {
        "model": Param("sod_effl0_256_int8.onnx", "SOD ONNX file (absolute, or a name in the package's models/; sod_effl0_256.onnx: fp32)"),
        "threshold_mode": Param("adaptive", "adaptive: twice the map's mean, at least "
                                "adaptive_floor; fixed: the threshold parameter",
                                choices=("adaptive", "fixed"), dynamic=True),
        "threshold": Param(0.5, "fixed threshold on the probability", float_range=(0.01, 0.99), dynamic=True),
        "adaptive_floor": Param(0.2, "lowest adaptive threshold (keeps empty scenes empty)",
                                float_range=(0.0, 0.9), dynamic=True),
        "publish_probability": Param(False, "also publish saliency/objects/probability (32FC1)", dynamic=True),
    }

    def __init__(self, **kwargs: Any) -> None:
        self.pipeline: ObjectsPipeline | None = None
        self._pubs: dict[str, Any] = {}
        self.last_threshold = float("nan")
        super().__init__("objects_node", **kwargs)

    def _load(self, engine: Engine) -> None:
        self.pipeline = ObjectsPipeline(engine)
        spec = engine.card.input
        for _ in range(3):
            self.pipeline(np.zeros((spec.height, spec.width, 3), np.uint8))

    def _create_outputs(self, qos: QoSProfile) -> None:
        for name in ("mask", "probability", "overlay"):
            self._pubs[name] = self.create_lifecycle_publisher(Image, f"saliency/objects/{name}", qos)

    def _destroy_outputs(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs.clear()

    def _process(self, frame: np.ndarray, header: Header, key: tuple[Any, ...]) -> bool:
        assert self.pipeline is not None
        self.pipeline.floor = self.p("adaptive_floor")
        self.pipeline.set_threshold("adaptive" if self.p("threshold_mode") == "adaptive" else self.p("threshold"))
        result = self.pipeline(frame)
        self.last_threshold = result.threshold
        self._send(self._pubs["mask"], header, result.mask, "mono8")
        if self.p("publish_probability"):
            self._send(self._pubs["probability"], header, result.probability, "32FC1")
        if self._pubs["overlay"].get_subscription_count() > 0:
            self._send(self._pubs["overlay"], header, overlay(frame, result.probability, result.mask), "bgr8")
        return True

    def _extra_status(self) -> dict[str, str]:
        return {"threshold": f"{self.last_threshold:.3f}"}


def main(args: list[str] | None = None) -> None:
    spin_node(ObjectsNode, args)


if __name__ == "__main__":
    main()
