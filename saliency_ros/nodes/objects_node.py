"""objects_node: the newest camera frame -> SOD net -> salient-object mask (and probability).

Topics (relative to the node namespace):
  in   camera/image_raw (sensor_msgs/Image) or camera/image_raw/compressed (CompressedImage)
  out  saliency/objects/mask (mono8, 0/255, camera resolution)
       saliency/objects/probability (32FC1 in [0, 1], when publish_probability is true)
       saliency/objects/overlay (bgr8, only while subscribed)
Every output carries the input frame's header. With `config/shared_inference.yaml`,
saliency_node publishes these outputs itself and this node is not started.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.qos import QoSProfile
from std_msgs.msg import Header

from saliency_ros.nodes import object_outputs
from saliency_ros.nodes.base import Param, PerceptionNode, spin_node
from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.pipelines import ObjectsPipeline


class ObjectsNode(PerceptionNode):
    ROLE = "objects"
    PARAMS = {
        "model": Param("sod_effl0_256_int8.onnx", "SOD ONNX file (absolute, or a name in the package's models/; sod_effl0_256.onnx: fp32)"),
        **object_outputs.PARAMS,
    }

    def __init__(self, **kwargs: Any) -> None:
        self.pipeline: ObjectsPipeline | None = None
        self.outputs: object_outputs.ObjectOutputs | None = None
        super().__init__("objects_node", **kwargs)

    def _load(self, engine: Engine) -> None:
        self.pipeline = ObjectsPipeline(engine)
        spec = engine.card.input
        for _ in range(3):
            self.pipeline(np.zeros((spec.height, spec.width, 3), np.uint8))

    def _create_outputs(self, qos: QoSProfile) -> None:
        self.outputs = object_outputs.ObjectOutputs(self, qos)

    def _destroy_outputs(self) -> None:
        if self.outputs is not None:
            self.outputs.destroy()
        self.outputs = None

    def _process(self, frame: np.ndarray, header: Header, key: tuple[Any, ...]) -> bool:
        assert self.pipeline is not None and self.outputs is not None
        self.outputs.apply_parameters(self.pipeline)
        image = self._preprocessed(self.pipeline.prepare, frame)
        self.outputs.publish(header, frame, self.pipeline.run(image, frame.shape))
        return True

    def _extra_status(self) -> dict[str, str]:
        return {"threshold": "nan"} if self.outputs is None else self.outputs.status()


def main(args: list[str] | None = None) -> None:
    spin_node(ObjectsNode, args)


if __name__ == "__main__":
    main()
