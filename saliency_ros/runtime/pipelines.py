"""Frame(s) in, maps out: the computation behind /saliency and /saliency/objects/*. No ROS.

The nodes and the offline evaluation call these same objects, so what is scored is what
flies. Each step uses the model card (preprocessing) and ONNX Runtime (inference); the output
is resized back to the camera frame when asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from saliency_ros.runtime import egomotion
from saliency_ros.runtime import motion_prior as mprior
from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.preprocess import model_sized, normalize, to_input

OUTPUT_SIZES = ("camera", "model")
OUTPUT_ENCODINGS = ("32FC1", "mono8")
# The lowest adaptive threshold of the objects mask (the nodes' `adaptive_floor` default). The
# shipped net's maps average 0.06-0.08, so the floor sets the threshold on most frames: 0.5
# gave the best mask IoU on DAVIS train (at 0.2 the mask was about 1.3x the object on DAVIS
# val; docs/training_levers.md §26).
ADAPTIVE_FLOOR = 0.5


def _resize_to(prob: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    h, w = shape[:2]
    if prob.shape == (h, w):
        return prob
    return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)


def to_mono8(prob: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A float map in [0, 1] as uint8 grey levels (rounded), at `shape` if given.

    Quantised at the model's size and then resized as uint8: within one grey level of
    quantising the camera-size float map, at 0.1-0.2 ms for a 720p output here. The float way
    took 0.2 ms or 2.9 ms depending on the process's heap, most likely page faults on 3.7 MB
    numpy temporaries mapped afresh each call: the cast alone of an existing array took 0.1 ms
    (docs/benchmark_history.md, session 18)."""
    small = (prob * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    return small if shape is None else _resize_to(small, shape)


@dataclass(frozen=True)
class PreparedFrame:
    """What a stream keeps of a frame: the model input and, for models trained on aligned
    pairs or with the motion prior on, the small grey image the ego-motion is estimated on."""

    input: np.ndarray  # 1 x 3 x h x w float32
    gray: np.ndarray | None = None


# The inputs of the two kinds of model the saliency pipeline runs.
PAIR_INPUTS, FRAME_INPUTS = ["current", "previous"], ["image"]


class SaliencyPipeline:
    """Sst on a (current, previous) pair -> float32 saliency map in [0, 1]; or a single-frame
    model (the SOD net's deployed form, input `image`) on the current frame of the pair.

    When the card says `pair_alignment`, the previous input is first warped onto the current
    one by the camera's ego-motion (`runtime.egomotion`), exactly as in training. Why a
    single-frame model at all: at a small input the SOD net costs fewer FLOPs than Sst-128 and
    scores better (README, Training); `/saliency` runs whichever the `model` parameter names.

    A single-frame model sees no motion; with `motion_prior` > 0 its map is lifted where the
    scene moves against the ground between the previous frame and the current one
    (`runtime.motion_prior`). Sst reads the motion from its pair itself, so the prior is off
    for pair models (`prior` None).
    """

    def __init__(self, engine: Engine, output_size: str = "camera", motion_prior: float = 0.0,
                 output_encoding: str = "32FC1") -> None:
        if output_size not in OUTPUT_SIZES:
            raise ValueError(f"output_size must be one of {OUTPUT_SIZES}, got {output_size!r}")
        if output_encoding not in OUTPUT_ENCODINGS:
            raise ValueError(f"output_encoding must be one of {OUTPUT_ENCODINGS}, got {output_encoding!r}")
        self.output_encoding = output_encoding
        names = list(engine.card.input.names)
        if names not in (PAIR_INPUTS, FRAME_INPUTS):
            raise ValueError(f"model file {engine.path} has inputs {names}; the saliency pipeline expects a "
                             f"frame-pair model with inputs {PAIR_INPUTS} (Sst) or a single-frame one with {FRAME_INPUTS}")
        self.engine, self.output_size = engine, output_size
        self.reads_pairs = names == PAIR_INPUTS
        alignment = engine.card.input.pair_alignment
        self.motion = None if alignment == "none" else egomotion.MotionConfig(model=alignment)
        if motion_prior < 0:
            raise ValueError(f"motion_prior must be >= 0, got {motion_prior}")
        self.prior = (mprior.MotionPriorConfig(strength=float(motion_prior))
                      if motion_prior > 0 and not self.reads_pairs else None)
        self.alignment_failures = 0  # pairs left unaligned (or not lifted): too few trackable corners

    @property
    def uses_previous(self) -> bool:
        """Whether a stream must keep previous frames: for Sst's pair or for the motion prior."""
        return self.reads_pairs or self.prior is not None

    def __call__(self, current_bgr: np.ndarray, previous_bgr: np.ndarray | None) -> np.ndarray:
        previous = None if previous_bgr is None else self.prepare(previous_bgr)
        return self.run(self.prepare(current_bgr), previous, current_bgr.shape)

    def prepare(self, frame_bgr: np.ndarray) -> PreparedFrame:
        """What a stream keeps of one frame instead of the frame itself: each frame is then
        resized once, not twice (as current and again as previous)."""
        spec = self.engine.card.input
        if self.prior is not None:  # the prior tracks the camera on the model-sized frame, in grey
            small = model_sized(frame_bgr, spec)
            return PreparedFrame(normalize(small, spec)[None], cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        gray = None if self.motion is None else egomotion.working_gray(frame_bgr, self.motion)
        return PreparedFrame(to_input(frame_bgr, spec), gray)

    def feeds(self, current: PreparedFrame, previous: PreparedFrame) -> dict[str, np.ndarray]:
        """The model's inputs for two prepared frames, the previous one aligned when the card
        says so (also what INT8 calibration feeds, `training.quantize`); a single-frame model
        gets the current one."""
        if not self.reads_pairs:
            return {"image": current.input}
        prev = previous.input
        if self.motion is not None and current.gray is not None and previous.gray is not None:
            prev, motion = egomotion.align_previous(prev, previous.gray, current.gray, self.motion)
            self.alignment_failures += not motion.ok
        return {"current": current.input, "previous": prev}

    def run(self, current: PreparedFrame, previous: PreparedFrame | None, camera_shape: tuple[int, ...]) -> np.ndarray:
        """Saliency of a prepared frame and its predecessor, at `camera_shape` or at model size,
        float32 in [0, 1] or (`output_encoding` mono8) uint8 by `to_mono8`. A single-frame model
        also answers without a predecessor (a stream's first frame), then without the motion
        prior."""
        return self.finish(self.infer(current, previous), current, previous, camera_shape)

    def infer(self, current: PreparedFrame, previous: PreparedFrame | None) -> np.ndarray:
        """The model's own map (float32, its grid), before the motion prior: what
        `ObjectsPipeline.result` thresholds when one inference serves both outputs."""
        if previous is None and self.reads_pairs:
            raise ValueError("a frame-pair model needs the previous frame")
        return self.engine(**self.feeds(current, current if previous is None else previous))[0, 0]

    def finish(self, prob: np.ndarray, current: PreparedFrame, previous: PreparedFrame | None,
               camera_shape: tuple[int, ...]) -> np.ndarray:
        """`infer`'s map made `/saliency`: the motion prior, the output size and encoding."""
        if self.prior is not None and previous is not None and previous.gray is not None and current.gray is not None:
            change, motion = mprior.change(previous.gray, current.gray, self.prior)
            self.alignment_failures += not motion.ok
            if change is not None:
                prob = mprior.lift(prob, change, self.prior.strength)
        shape = camera_shape if self.output_size == "camera" else None
        if self.output_encoding == "mono8":
            return to_mono8(prob, shape)
        return prob if shape is None else _resize_to(prob, shape)


@dataclass(frozen=True)
class ObjectsResult:
    model_probability: np.ndarray  # float32 h x w in [0, 1], the model's grid
    mask: np.ndarray  # uint8 H x W, 0 or 255, camera resolution
    threshold: float  # the threshold used on this frame

    @cached_property
    def probability(self) -> np.ndarray:
        """The probability map at camera resolution (float32), made only when asked for: the
        node publishes it only on request, and the mask does not need it."""
        return _resize_to(self.model_probability, self.mask.shape)


class ObjectsPipeline:
    """SOD net on one frame -> probability and binary mask at camera resolution.

    `threshold="adaptive"` uses twice the map's mean (the SOD literature's adaptive
    threshold), clipped to [`floor`, 0.9] so an empty scene does not light up; a number in
    (0, 1) is a fixed threshold. The floor defaults to `ADAPTIVE_FLOOR`, the nodes' default.
    The mask is the probability at camera size in grey levels (`to_mono8`) against the
    threshold: the same as thresholding the float map except where the probability is within
    one grey level of the threshold, at 0.6 against 0.75-0.85 ms at 720p here.
    """

    def __init__(self, engine: Engine, threshold: float | str = "adaptive", floor: float = ADAPTIVE_FLOOR) -> None:
        if list(engine.card.input.names) != ["image"]:
            raise ValueError(f"model file {engine.path} has inputs {list(engine.card.input.names)}; the objects "
                             "pipeline expects a single-frame model with input ['image'] (SOD net)")
        self.engine = engine
        self.floor = floor
        self.set_threshold(threshold)

    def set_threshold(self, threshold: float | str) -> None:
        """Change the threshold at run time (validated, as a node parameter would be)."""
        if threshold != "adaptive" and not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
            raise ValueError(f"threshold must be 'adaptive' or a number in (0, 1), got {threshold!r}")
        self.threshold = threshold

    def __call__(self, frame_bgr: np.ndarray) -> ObjectsResult:
        return self.run(self.prepare(frame_bgr), frame_bgr.shape)

    def prepare(self, frame_bgr: np.ndarray) -> np.ndarray:
        """The model input of a camera frame, by the card (resize and normalisation)."""
        return to_input(frame_bgr, self.engine.card.input)

    def run(self, image: np.ndarray, camera_shape: tuple[int, ...]) -> ObjectsResult:
        """The result for a prepared input (`prepare`) of a frame of `camera_shape`."""
        return self.result(self.engine(image=image)[0, 0], camera_shape)

    def result(self, prob: np.ndarray, camera_shape: tuple[int, ...]) -> ObjectsResult:
        """The mask of a probability map on the model's grid, at `camera_shape`: also for a map
        the saliency pipeline computed with this model (`SaliencyPipeline.infer`, one inference
        for both outputs)."""
        if self.threshold == "adaptive":
            t = float(np.clip(2.0 * prob.mean(), self.floor, 0.9))
        else:
            t = float(self.threshold)
        # Grey level g >= 255 t - 0.5 is the rounded form of probability >= t, and for a whole g
        # that is g >= its ceiling. One numpy comparison, 0.05 ms at 720p (a lookup table took
        # 0.64), and not cv2.threshold: with cv2.threshold here, the saliency node sharing the
        # process slowed from 3.7 to 6 ms of pipeline per frame (session 18; as cv2.compare did
        # in session 4, docs/benchmark_history.md), whatever OpenCV's thread count.
        level = math.ceil(255.0 * t - 0.5)
        mask = (to_mono8(prob, camera_shape) >= level).view(np.uint8) * np.uint8(255)
        return ObjectsResult(prob, mask, t)

