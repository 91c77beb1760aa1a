"""The salient-object outputs (`saliency/objects/*`) and their parameters, in one place.

objects_node publishes them from its own inference; saliency_node publishes them from the same
inference as `/saliency` when `publish_objects` is true (`config/shared_inference.yaml`), so
that one SOD net run per frame serves both outputs on a small board. Both nodes declare these
parameters from here, so the mask means the same whichever node makes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from saliency_ros.nodes.base import Param, PerceptionNode
from saliency_ros.runtime.overlay import overlay
from saliency_ros.runtime.pipelines import ADAPTIVE_FLOOR, ObjectsPipeline, ObjectsResult

PARAMS = {
    "threshold_mode": Param("adaptive", "adaptive: twice the map's mean, at least "
                            "adaptive_floor; fixed: the threshold parameter",
                            choices=("adaptive", "fixed"), dynamic=True),
    "threshold": Param(0.5, "fixed threshold on the probability", float_range=(0.01, 0.99), dynamic=True),
    "adaptive_floor": Param(ADAPTIVE_FLOOR, "lowest adaptive threshold (keeps empty scenes empty; "
                            "0.5: the best mask IoU on DAVIS train, lower: larger masks)",
                            float_range=(0.0, 0.9), dynamic=True),
    "publish_probability": Param(False, "also publish saliency/objects/probability (32FC1)", dynamic=True),
}
TOPICS = ("mask", "probability", "overlay")


class ObjectOutputs:
    """The publishers of `saliency/objects/{mask,probability,overlay}` of one node."""

    def __init__(self, node: PerceptionNode, qos: QoSProfile) -> None:
        self.node = node
        self.pubs = {name: node.create_lifecycle_publisher(Image, f"saliency/objects/{name}", qos)
                     for name in TOPICS}
        self.last_threshold = float("nan")

    def apply_parameters(self, pipeline: ObjectsPipeline) -> None:
        """The node's current threshold parameters, onto `pipeline` (they are dynamic)."""
        p = self.node.p
        pipeline.floor = p("adaptive_floor")
        pipeline.set_threshold("adaptive" if p("threshold_mode") == "adaptive" else p("threshold"))

    def publish(self, header: Header, frame: np.ndarray, result: ObjectsResult) -> None:
        """The mask; the probability when asked for; the overlay while someone subscribes."""
        self.last_threshold = result.threshold
        self.node._send(self.pubs["mask"], header, result.mask, "mono8")
        if self.node.p("publish_probability"):
            self.node._send(self.pubs["probability"], header, result.probability, "32FC1")
        if self.pubs["overlay"].get_subscription_count() > 0:
            self.node._send(self.pubs["overlay"], header, overlay(frame, result.probability, result.mask), "bgr8")

    def destroy(self) -> None:
        for pub in self.pubs.values():
            self.node.destroy_lifecycle_publisher(pub)
        self.pubs.clear()

    def status(self) -> dict[str, str]:
        return {"threshold": f"{self.last_threshold:.3f}"}
