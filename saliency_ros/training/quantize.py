"""INT8 copies of exported models: ONNX Runtime static quantization (QDQ, per-channel weights),
calibrated on real camera frames that go through the card's own preprocessing.

Why static QDQ: the nodes run batch 1 on a CPU, where ONNX Runtime fuses QDQ pairs around
Conv into integer kernels (VNNI on this AVX-512 CPU) and the activations' ranges are fixed once,
from calibration, instead of being measured on every frame. The quantized model keeps the fp32
model's inputs and output, so the same card (with `file`, `sha256` and a `quantization`
section changed) describes it and every runtime path loads it unchanged. Whether it ships is
decided by its scores against the fp32 model's (`training.pipeline`), not here.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quant_pre_process, quantize_static)

from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.model_card import card_path_for, load_card, sha256_file
from saliency_ros.runtime.pipelines import PAIR_INPUTS, SaliencyPipeline
from saliency_ros.runtime.preprocess import to_input
from saliency_ros.sources.layouts import VideoSequence


def calibration_pairs(sequences: Sequence[VideoSequence], count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` (current, previous) BGR frame pairs, one frame apart, spread over `sequences`."""
    rng = np.random.default_rng(seed)
    picks = [(s, int(rng.integers(1, len(s)))) for s in rng.choice(np.array(sequences, dtype=object), count)]
    return [(cv2.imread(str(s.frames[i])), cv2.imread(str(s.frames[i - 1]))) for s, i in picks]


class _PairReader(CalibrationDataReader):
    """Feeds calibration pairs as the model's inputs, exactly as the nodes do: preprocessed as
    the card says and, for a frame-pair model, aligned when the card says so."""

    def __init__(self, onnx_path: Path, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        spec = load_card(card_path_for(onnx_path)).input
        if list(spec.names) == PAIR_INPUTS:
            pipeline = SaliencyPipeline(Engine(onnx_path), output_size="model")
            feeds = [pipeline.feeds(pipeline.prepare(cur), pipeline.prepare(prev)) for cur, prev in pairs]
        else:
            feeds = [{spec.names[0]: to_input(cur, spec)} for cur, _ in pairs]
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def int8_path(onnx_path: Path) -> Path:
    """Where the INT8 copy of `onnx_path` lives beside it: `<name>_int8.onnx`."""
    return onnx_path.with_name(f"{onnx_path.stem}_int8.onnx")


def input_convs(onnx_path: Path) -> list[str]:
    """The Conv nodes that read the graph's inputs, directly or through a Concat of them: a
    student's two frame-reading convolutions, where 8-bit inputs cost small targets most."""
    graph = onnx.load(str(onnx_path)).graph
    inputs = {i.name for i in graph.input}
    made_by = {o: n for n in graph.node for o in n.output}

    def reads_inputs(name: str) -> bool:
        node = made_by.get(name)
        return name in inputs or (node is not None and node.op_type == "Concat" and all(i in inputs for i in node.input))

    return [n.name for n in graph.node if n.op_type == "Conv" and reads_inputs(n.input[0])]


def quantize_model(onnx_path: Path, pairs: Sequence[tuple[np.ndarray, np.ndarray]], out_dir: Path,
                   calibration: dict[str, Any], float_input_convs: bool = False) -> Path:
    """Write `<name>_int8.onnx` and its card into `out_dir`; `calibration` describes the frames
    for the card (data, count). With `float_input_convs` the convolutions that read the inputs
    (`input_convs`) stay float. Returns the quantized model's path."""
    card = json.loads(card_path_for(onnx_path).read_text())
    out = out_dir / int8_path(onnx_path).name
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))  # shape inference + graph clean-up
        excluded = input_convs(prepared) if float_input_convs else []
        quantize_static(str(prepared), str(out), _PairReader(onnx_path, pairs),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excluded)
    card.update(file=out.name, sha256=sha256_file(out))
    card["quantization"] = {
        "what": "INT8 (ONNX Runtime static quantization): QDQ, per-channel int8 weights, uint8 activations"
                + (f"; float: {', '.join(excluded)} (the convolutions that read the frames)" if excluded else ""),
        "calibration": {**calibration, "method": "MinMax", "pairs": len(pairs)},
        "from": {"file": onnx_path.name, "sha256": sha256_file(onnx_path)},
    }
    card_path_for(out).write_text(json.dumps(card, indent=2) + "\n")
    load_card(card_path_for(out))  # schema and checksum, as the runtime will check them
    return out
