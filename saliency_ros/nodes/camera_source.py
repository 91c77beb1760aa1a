"""camera_source: a video file, an image folder or the synthetic drone scene as a camera.

Publishes camera/image_raw (bgr8) at `rate_hz` with the node clock's time as stamp and
`frame_id`, so the perception nodes can be run and tested without a camera. At the end of a
file it loops or stops, as asked; `rate_hz` can change while it runs.
"""

from __future__ import annotations

from typing import Any

import cv2
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from saliency_ros.nodes.base import (QOS_CHOICES, Param, check_parameters, declare, image_msg, qos_profile,
                                     spin_node)
from saliency_ros.sources.files import SourceError, open_source

PARAMS: dict[str, Param] = {
    "source": Param("synthetic", "synthetic, a video file or an image folder"),
    "rate_hz": Param(30.0, "publishing rate", float_range=(0.1, 240.0), dynamic=True),
    "width": Param(1280, "frame width (synthetic size; files are resized to it unless 0)",
                   int_range=(0, 8192)),
    "height": Param(720, "frame height (as width)", int_range=(0, 8192)),
    "frame_id": Param("camera", "header frame_id"),
    "loop": Param(True, "start over at the end of a file or folder"),
    "seed": Param(0, "synthetic scene seed", int_range=(0, 1 << 30)),
    "qos": Param("reliable", "publisher QoS", choices=QOS_CHOICES),
}


class CameraSource(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("camera_source", **kwargs)
        if problems := declare(self, PARAMS):
            raise ValueError("invalid parameters: " + "; ".join(problems))
        self.add_on_set_parameters_callback(lambda params: check_parameters(PARAMS, params))
        self.add_post_set_parameters_callback(self._apply)
        v = {n: self.get_parameter(n).value for n in PARAMS}
        try:
            self.source = open_source(v["source"], v["width"] or 1280, v["height"] or 720, v["seed"])
        except SourceError as err:
            raise ValueError(str(err)) from None
        self.size = (v["width"], v["height"]) if v["width"] and v["height"] else None
        self.frame_id, self.loop = v["frame_id"], v["loop"]
        self.published = 0
        self._pub = self.create_publisher(Image, "camera/image_raw", qos_profile(v["qos"], 5))
        self._timer = self.create_timer(1.0 / v["rate_hz"], self._tick)
        self.get_logger().info(f"publishing {v['source']} on {self._pub.topic_name} at {v['rate_hz']} Hz")

    def _apply(self, params: list[Parameter]) -> None:
        for param in params:
            if param.name == "rate_hz":
                self._timer.timer_period_ns = int(1e9 / param.value)

    def _tick(self) -> None:
        frame = self.source.read()
        if frame is None and self.loop:
            self.source.rewind()
            frame = self.source.read()
        if frame is None:
            self.get_logger().info(f"end of {self.source.name} after {self.published} frames")
            self._timer.cancel()
            return
        if self.size and frame.shape[1::-1] != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        self._pub.publish(image_msg(header, frame, "bgr8"))
        self.published += 1


def main(args: list[str] | None = None) -> None:
    spin_node(CameraSource, args)


if __name__ == "__main__":
    main()
