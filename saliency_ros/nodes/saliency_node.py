"""saliency_node: camera frames -> a saliency model -> `saliency` (Image).

The model is an Sst on (current, previous) pairs kept in a pair buffer, or a single-frame model
(the SOD net's file, input `image`; the default) on every frame, its map lifted where the scene
moves against the ground since the previous frame of the buffer (`motion_prior`; the first
frame of a stream is answered without it). See runtime.pipelines.SaliencyPipeline.

Topics (relative to the node namespace):
  in   camera/image_raw (sensor_msgs/Image) or camera/image_raw/compressed (CompressedImage)
  out  saliency (32FC1 in [0, 1] or mono8), saliency/overlay (bgr8, only while subscribed)
       saliency/objects/* as objects_node publishes them, when publish_objects is true
The output carries the header (stamp, frame_id) of the current frame of the pair.

With `publish_objects` (`config/shared_inference.yaml`: the SOD net at 224 x 320) one inference
per frame makes both `/saliency` (its map with the motion prior) and the object mask (its map
thresholded as objects_node does), and objects_node is not started: on two cores that takes a
whole model run per frame off the CPU (docs/benchmark_history.md, session 26).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from saliency_ros.frame_buffer import FramePairBuffer, Pair
from saliency_ros.nodes import object_outputs
from saliency_ros.nodes.base import Param, PerceptionNode, spin_node, stamp_ns
from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.overlay import overlay
from saliency_ros.runtime.pipelines import OUTPUT_SIZES, ObjectsPipeline, PreparedFrame, SaliencyPipeline


class SaliencyNode(PerceptionNode):
    ROLE = "saliency"
    PARAMS = {
        "model": Param("sod_effl0_256_128x256_int8.onnx", "ONNX file (absolute, or a name in the package's models/): the SOD net at 128 x 256 on one frame (default), or an SKD student on frame pairs (skd_sst_128*, skd_sst_64*: faster, weaker on small targets); *_int8: quantized"),
        "motion_prior": Param(3.0, "single-frame models: a region moving against the ground weighs up to "
                              "1 + this much more than a static one (runtime.motion_prior; 0: off)",
                              float_range=(0.0, 20.0)),
        "gap_frames": Param(1, "previous frame (Sst's pair, the motion prior) = this many frames back "
                            "(used when gap_ms is 0)",
                            int_range=(1, 30)),
        "gap_ms": Param(0.0, "previous frame = the newest at least this many ms older (0: use "
                        "gap_frames)", float_range=(0.0, 2000.0)),
        "reset_after_ms": Param(500.0, "a stamp step larger than this restarts pairing",
                                float_range=(1.0, 60000.0)),
        "output_encoding": Param("32FC1", "32FC1 in [0, 1] or mono8 (0-255)",
                                 choices=("32FC1", "mono8"), dynamic=True),
        "output_size": Param("camera", "camera: input resolution; model: the model's grid",
                             choices=OUTPUT_SIZES, dynamic=True),
        "publish_objects": Param(False, "also publish saliency/objects/* from this node's own inference "
                                 "(a single-frame SOD model; objects_node then need not run; "
                                 "config/shared_inference.yaml)"),
        **object_outputs.PARAMS,
    }

    def __init__(self, **kwargs: Any) -> None:
        self.pipeline: SaliencyPipeline | None = None
        self.pairs: FramePairBuffer[PreparedFrame] | None = None
        self._out: Any = None
        self._overlay: Any = None
        self.objects: ObjectsPipeline | None = None
        self.object_outputs: object_outputs.ObjectOutputs | None = None
        super().__init__("saliency_node", **kwargs)

    def _load(self, engine: Engine) -> None:
        self.pipeline = SaliencyPipeline(engine, self.p("output_size"), self.p("motion_prior"))
        self.PAIRS_EVERY_FRAME = self.pipeline.uses_previous
        if self.p("publish_objects"):
            if self.pipeline.reads_pairs:
                raise ValueError(f"publish_objects needs a single-frame SOD model (input 'image'); {engine.path.name} "
                                 "reads frame pairs: set model to sod_effl0_256_int8.onnx or publish_objects to false")
            self.objects = ObjectsPipeline(engine)
        self.pairs = FramePairBuffer.from_parameters(self.p("gap_frames"), self.p("gap_ms"),
                                                     self.p("reset_after_ms"))
        spec = engine.card.input
        blank = self.pipeline.prepare(np.zeros((spec.height, spec.width, 3), np.uint8))
        for _ in range(3):
            self.pipeline.run(blank, blank, (spec.height, spec.width))
        self.pipeline.alignment_failures = 0  # a blank frame has no corners to track

    def _create_outputs(self, qos: QoSProfile) -> None:
        self._out = self.create_lifecycle_publisher(Image, "saliency", qos)
        self._overlay = self.create_lifecycle_publisher(Image, "saliency/overlay", qos)
        if self.objects is not None:
            self.object_outputs = object_outputs.ObjectOutputs(self, qos)

    def _destroy_outputs(self) -> None:
        for pub in (self._out, self._overlay):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._out = self._overlay = None
        if self.object_outputs is not None:
            self.object_outputs.destroy()
        self.object_outputs = None

    def _reset_stream(self) -> None:
        if self.pairs is not None:
            self.pairs.clear()

    PAIRS_EVERY_FRAME = True

    def _observe(self, frame: np.ndarray, header: Header, key: tuple[Any, ...]) -> Pair[PreparedFrame] | None:
        """Push a frame into the pair buffer; the pair it completes, if any."""
        assert self.pipeline is not None and self.pairs is not None
        # The buffer holds model inputs, not frames: each frame is resized once.
        return self._push(self.pipeline.prepare(frame), header, key)

    def _push(self, prepared: PreparedFrame, header: Header, key: tuple[Any, ...]) -> Pair[PreparedFrame] | None:
        assert self.pairs is not None
        return self.pairs.push(prepared, stamp_ns(header), key)

    def _explain(self, reason: str) -> str:
        if reason != "pair_filling" or self.pairs is None:
            return super()._explain(reason)
        restarts = {**{k: v for k, v in self.pairs.resets.items() if v}, **self.restarts}
        if not restarts:
            return "the frame pair is still filling"
        return ("every frame starts the frame pair over (restarts so far: "
                + ", ".join(f"{k} {v}" for k, v in sorted(restarts.items())) + ")")

    def _process(self, frame: np.ndarray, header: Header, key: tuple[Any, ...]) -> bool:
        assert self.pipeline is not None
        current, previous = self._preprocessed(self.pipeline.prepare, frame), None
        if self.pipeline.uses_previous:
            pair = self._push(current, header, key)
            if pair is None and self.pipeline.reads_pairs:
                self._not_published("pair_filling")
                return False
            previous = None if pair is None else pair.previous
        encoding = self.p("output_encoding")
        self.pipeline.output_size, self.pipeline.output_encoding = self.p("output_size"), encoding
        prob = self.pipeline.infer(current, previous)
        sal = self.pipeline.finish(prob, current, previous, frame.shape)
        self._send(self._out, header, sal, encoding)
        if self._overlay.get_subscription_count() > 0:
            heat = sal if encoding == "32FC1" else sal.astype(np.float32) / np.float32(255.0)
            self._send(self._overlay, header, overlay(frame, heat), "bgr8")
        if self.objects is not None and self.object_outputs is not None:  # after /saliency: its target is tighter
            self.object_outputs.apply_parameters(self.objects)
            self.object_outputs.publish(header, frame, self.objects.result(prob, frame.shape))
        return True

    def _extra_status(self) -> dict[str, str]:
        if self.pairs is None or self.pipeline is None:
            return {}
        status = {f"pair_reset_{k}": str(v) for k, v in self.pairs.resets.items()}
        if self.pipeline.motion is not None or self.pipeline.prior is not None:
            status["alignment_failures"] = str(self.pipeline.alignment_failures)
        if self.object_outputs is not None:
            status.update(self.object_outputs.status())
        return status


def main(args: list[str] | None = None) -> None:
    spin_node(SaliencyNode, args)


if __name__ == "__main__":
    main()
