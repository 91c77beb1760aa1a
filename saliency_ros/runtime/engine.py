"""ONNX Runtime session for one exported model, checked against its model card. No torch.

Errors name the file and what it expected, because on a drone the first sign of a wrong
model file is usually this message in a launch log.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from saliency_ros.runtime.model_card import ModelCard, ModelCardError, card_path_for, load_card

MAX_MODEL_BYTES = 1 << 30  # ONNX protobufs are capped at 2 GiB; ours are a few MB

# backend parameter -> ONNX Runtime providers, in order of preference
BACKENDS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}


class EngineError(RuntimeError):
    """The model file is missing, corrupt, or does not match its card."""


def available_providers() -> list[str]:
    """Execution providers this ONNX Runtime build offers."""
    return list(ort.get_available_providers())


def session_options(threads: int) -> ort.SessionOptions:
    """Single-stream options: `threads` intra-op threads, no inter-op pool, all graph opts."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep instead of spinning: on a drone's few cores a spinning pool
    # steals the time the other model, DDS and the camera driver need.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def read_model_bytes(path: Path, limit: int = MAX_MODEL_BYTES) -> bytes:
    """The whole model file, refused with the reason when it is not a regular file (a folder,
    a FIFO that would block, a device) or is larger than any model this package ships."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise EngineError(f"model file {path} does not exist") from None
    except OSError as err:
        raise EngineError(f"model file {path} cannot be read: {err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise EngineError(f"model file {path} is a directory, not an .onnx file")
    if not stat.S_ISREG(st.st_mode):
        raise EngineError(f"model file {path} is not a regular file (a FIFO, socket or device)")
    if st.st_size > limit:
        raise EngineError(f"model file {path} has {st.st_size} bytes, over the {limit}-byte limit")
    return path.read_bytes()


class Engine:
    """Runs one model: `engine(current=..., previous=...)` -> probability map (N x 1 x H x W).

    With `mirror` each call also runs the inputs mirrored left-right and averages the two
    maps, the mirrored one flipped back (test-time flip): the nets were trained on mirrored
    samples but do not answer a scene and its mirror image alike, and the mean of the two
    raised DAVIS val F-max and the aerial_dev scores of both SOD maps (MAE level), for twice
    the model time (README, Training: the results table; docs/training_levers.md §22).
    """

    def __init__(
        self,
        onnx_path: Path,
        threads: int = 1,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        card: ModelCard | None = None,
        mirror: bool = False,
    ) -> None:
        self.path = Path(onnx_path)
        self.mirror = mirror
        data = read_model_bytes(self.path)
        self.card = card or load_card(card_path_for(self.path), verify_sha256=False)
        try:
            # The bytes hashed are the bytes ONNX Runtime gets: no file can be swapped in between.
            self.card.verify_bytes(data, self.path)
        except ModelCardError as err:
            raise EngineError(str(err)) from None
        missing = [p for p in providers if p not in available_providers()]
        if missing:
            raise EngineError(
                f"execution providers {missing} are not in this ONNX Runtime build "
                f"(available: {available_providers()})"
            )
        try:
            self.session = ort.InferenceSession(
                data, sess_options=session_options(threads), providers=list(providers)
            )
        except Exception as err:  # ORT raises several undocumented types for bad files
            raise EngineError(f"model file {self.path} could not be loaded: {err}") from None
        self._check_against_card()
        self.last_run_ms = float("nan")  # ONNX Runtime time of the latest call (diagnostics)

    def _check_against_card(self) -> None:
        spec = self.card.input
        expected = f"inputs {list(spec.names)} of Nx3x{spec.height}x{spec.width} float32"
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != list(spec.names):
            raise EngineError(
                f"model file {self.path} expects {expected}, but its graph has inputs "
                f"{[(i.name, i.shape) for i in inputs]}"
            )
        for i in inputs:
            if i.type != "tensor(float)" or list(i.shape[1:]) != [3, spec.height, spec.width]:
                raise EngineError(
                    f"model file {self.path} expects {expected}, got {i.name} {i.type} {i.shape}"
                )
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs != [self.card.output.name]:
            raise EngineError(f"model file {self.path} must have the one output {self.card.output.name!r} "
                              f"its card names, but its graph has outputs {outputs}")

    def __call__(self, **inputs: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        if self.mirror:  # N x C x H x W: the last axis is left-right
            # One run of the frames and their mirror images as a batch of 2N: 3-7 % less time
            # than two runs of N with the shipped INT8 files (one thread, here).
            n = next(iter(inputs.values())).shape[0]
            (both,) = self.session.run(None, {k: np.concatenate([v, v[..., ::-1]]) for k, v in inputs.items()})
            out = (both[:n] + both[n:, ..., ::-1]) * np.float32(0.5)
        else:
            (out,) = self.session.run(None, inputs)
        self.last_run_ms = (time.perf_counter() - t0) * 1000.0
        return out
