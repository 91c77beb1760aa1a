"""`saliency-ros eval BAG...`: the nodes' computation over recorded frames, without DDS.

Each frame goes through what the nodes do with it -- `image_codec` decoding and its checks,
the `FramePairBuffer` (restarted at sequence boundaries and stamp jumps, as in flight), the
saliency and objects pipelines on ONNX Runtime with the parameters file the nodes read --
and the outputs are scored against the bag's masks next to OpenCV's baselines. One process,
one frame at a time, fixed thread counts: two runs give the same scores.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from saliency_ros.evaluation.bags import open_frames
from saliency_ros.evaluation.baselines import BASELINES, Baseline
from saliency_ros.evaluation.scoreboard import Scoreboard
from saliency_ros.frame_buffer import FramePairBuffer
from saliency_ros.image_codec import ImageDecodeError, to_array, to_bgr8
from saliency_ros.params_files import node_parameters, params_label
from saliency_ros.paths import resolve_data_file
from saliency_ros.runtime.engine import BACKENDS, Engine
from saliency_ros.runtime.overlay import overlay
from saliency_ros.runtime.model_card import card_path_for, load_card
from saliency_ros.runtime.pipelines import (ADAPTIVE_FLOOR, PAIR_INPUTS, ObjectsPipeline, PreparedFrame,
                                            SaliencyPipeline)

# The node parameters the offline path uses, with the nodes' defaults (a test keeps these
# equal to the declarations in nodes/).
MASK_DEFAULTS = {"threshold_mode": "adaptive", "threshold": 0.5, "adaptive_floor": ADAPTIVE_FLOOR}
SALIENCY_DEFAULTS = {"model": "sod_effl0_256_128x256_int8.onnx", "threads": 2, "mirror_average": False,
                     "motion_prior": 3.0,
                     "gap_frames": 1, "gap_ms": 0.0,
                     "reset_after_ms": 500.0, "max_image_pixels": 2560 * 1440,
                     "publish_objects": False, **MASK_DEFAULTS}
OBJECTS_DEFAULTS = {"model": "sod_effl0_256_int8.onnx", "threads": 2, "mirror_average": False, **MASK_DEFAULTS,
                    "max_image_pixels": 2560 * 1440}
SALIENCY, OBJECTS, MASK = "sst", "sod", "sod_mask"


@dataclass(frozen=True)
class NodeConfig:
    """What the nodes would run with under the parameters file(s): offline evaluation
    computes with it, live evaluation predicts from it which outputs to expect."""

    saliency: dict[str, Any]
    objects: dict[str, Any]

    @classmethod
    def load(cls, params_files: Path | Sequence[Path]) -> NodeConfig:
        """With saliency_node's `publish_objects` the mask is saliency_node's: its model,
        threads and mask parameters (the maps equal one shared inference's: same model, same
        input)."""
        saliency = node_parameters(params_files, "saliency_node", SALIENCY_DEFAULTS)
        objects = node_parameters(params_files, "objects_node", OBJECTS_DEFAULTS)
        if saliency["publish_objects"]:
            objects = {k: saliency[k] for k in OBJECTS_DEFAULTS}
        return cls(saliency, objects)

    @property
    def shared_inference(self) -> bool:
        """Whether saliency_node publishes the mask itself and objects_node does not run."""
        return bool(self.saliency["publish_objects"])

    @property
    def max_pixels(self) -> int:
        """Frames larger than either node accepts are refused, as in flight."""
        return int(min(self.saliency["max_image_pixels"], self.objects["max_image_pixels"]))

    @property
    def reads_pairs(self) -> bool:
        """Whether saliency_node's model reads frame pairs: it then answers a frame only once
        the pair buffer pairs it; a single-frame model answers every frame, the first too."""
        card = load_card(card_path_for(resolve_data_file(self.saliency["model"], "models")))
        return list(card.input.names) == PAIR_INPUTS

    def pair_buffer(self) -> FramePairBuffer[Any]:
        """The pair buffer saliency_node builds from these parameters."""
        s = self.saliency
        return FramePairBuffer.from_parameters(s["gap_frames"], s["gap_ms"], s["reset_after_ms"])


@dataclass
class OfflineOptions:
    params: Path | Sequence[Path]
    backend: str = "cpu"
    baselines: Sequence[str] = BASELINES
    overlay_sequence: str | None = None  # draw this sequence into the overlay sink
    overlay_sink: Callable[[np.ndarray], None] | None = None
    progress: bool = True
    nodes: NodeConfig = field(init=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        self.nodes = NodeConfig.load(self.params)


def _engine(values: dict[str, Any], backend: str) -> Engine:
    return Engine(resolve_data_file(values["model"], "models"), threads=int(values["threads"]),
                  providers=BACKENDS[backend], mirror=bool(values["mirror_average"]))


def _model_entry(engine: Engine) -> dict[str, Any]:
    card = engine.card
    return {"file": str(engine.path), "sha256": card.sha256, "trained": card.trained,
            "input": f"{card.input.width}x{card.input.height}", "mirror_average": engine.mirror}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000.0


def evaluate(bags: Sequence[Path], options: OfflineOptions) -> tuple[dict[str, Any], Scoreboard]:
    """Score every frame of `bags` (rosbag2 folders, or dataset folders read as the bag built
    from them would be: `bags.DatasetReader`). Returns the result dictionary and the scoreboard (which
    holds the PR curves and latencies the plots need)."""
    readers = [open_frames(b) for b in bags]
    sal_cfg, obj_cfg = options.nodes.saliency, options.nodes.objects
    saliency = SaliencyPipeline(_engine(sal_cfg, options.backend), "camera", float(sal_cfg["motion_prior"]))
    objects = ObjectsPipeline(_engine(obj_cfg, options.backend),
                              "adaptive" if obj_cfg["threshold_mode"] == "adaptive" else obj_cfg["threshold"],
                              floor=obj_cfg["adaptive_floor"])
    pairs: FramePairBuffer[PreparedFrame] = options.nodes.pair_buffer()
    baselines = [Baseline(n) for n in options.baselines]
    board = Scoreboard()
    used: set[str] = set()  # sequence names across bags; a repeated one gets its bag's name
    max_pixels = options.nodes.max_pixels
    total = sum(r.frame_count or 0 for r in readers) or None
    with tqdm(total=total, unit="frame", desc="eval", disable=not options.progress) as bar:
        for reader in readers:
            names: dict[str, str] = {}
            current = None
            for f in reader.frames():
                bar.update(1)
                if f.sequence not in names:
                    names[f.sequence] = f.sequence if f.sequence not in used else f"{reader.path.name}/{f.sequence}"
                    used.add(names[f.sequence])
                seq = names[f.sequence]
                if seq != current:  # a new sequence starts from nothing, as after a node restart
                    current = seq
                    pairs.clear()
                    for b in baselines:
                        b.reset()
                board.frame(seq)
                try:
                    frame = to_bgr8(f.image, max_pixels)
                    gt = None if f.gt is None else to_array(f.gt, max_pixels)
                except ImageDecodeError as err:
                    board.skipped[err.reason] += 1
                    continue
                key = (frame.shape, f.image.encoding)

                def sst() -> np.ndarray | None:  # as saliency_node._process
                    prepared = saliency.prepare(frame)
                    pair = pairs.push(prepared, f.stamp_ns, key) if saliency.uses_previous else None
                    if pair is None and saliency.reads_pairs:
                        return None
                    return saliency.run(prepared, None if pair is None else pair.previous, frame.shape)

                sal, ms = _timed(sst)
                if sal is not None:
                    board.time(SALIENCY, ms)
                res, ms = _timed(lambda: objects(frame))
                board.time(OBJECTS, ms)
                maps = {}
                for b in baselines:
                    maps[b.name], ms = _timed(lambda b=b: b(frame))
                    board.time(b.name, ms)
                if gt is not None:
                    if sal is not None:
                        board.score_map(SALIENCY, "saliency", seq, sal, gt)
                    board.score_map(OBJECTS, "objects", seq, res.probability, gt)
                    board.score_mask(MASK, seq, res.mask, gt)
                    for name, m in maps.items():
                        board.score_map(name, "baseline", seq, m, gt)
                if f.box is not None:
                    if sal is not None:
                        board.score_box(SALIENCY, "saliency", seq, sal, f.box, frame.shape)
                    board.score_box(OBJECTS, "objects", seq, res.probability, f.box, frame.shape)
                    for name, m in maps.items():
                        board.score_box(name, "baseline", seq, m, f.box, frame.shape)
                if options.overlay_sink and seq == options.overlay_sequence:
                    options.overlay_sink(overlay(frame, sal, res.mask, truth=gt, box=f.box))
    result = board.results()
    result.update({
        "mode": "offline",
        "bags": [str(r.path) for r in readers],
        "frames": sum(board.sequence_frames.values()),
        "pair_resets": dict(pairs.resets) if saliency.uses_previous else {},
        "parameters": {"saliency_node": sal_cfg, "objects_node": obj_cfg, "backend": options.backend,
                       "params_file": params_label(options.params)},
        "models": {SALIENCY: {**_model_entry(saliency.engine),
                              "motion_prior": 0.0 if saliency.prior is None else saliency.prior.strength},
                   OBJECTS: _model_entry(objects.engine)},
    })
    return result, board
