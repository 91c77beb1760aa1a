"""Students exported again at another input shape, their weights read back from their ONNX files.

Why: the SKD students are fully convolutional, so weights trained on one input shape run on
any whose sides are multiples of 4. A 16:9 camera frame squeezed into 128 x 128 shows its
objects 1.8x narrower than they are; at 96 x 168 (the same pixels, the same model cost) it does
not. `export.student_shape` in a recipe says which sizes ship at which shape. `train all` exports
at the training shape and reshapes here; `saliency-ros train reshape` does the same for the
students already in `models/`, which needs no run folder: the ONNX initialisers carry the
torch parameter names. A reshaped student is scored again through the offline evaluation (the
nodes' code) because the scores in its card were measured at the old shape; the card keeps the
old shape and scores under `training.reshaped`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import numpy_helper

from saliency_ros.models import create_model
from saliency_ros.models.skd import SKDWidths, SpatioTemporalStudent
from saliency_ros.runtime.model_card import card_path_for
from saliency_ros.training.export import export_model, onnx_file
from saliency_ros.training.recipe import Recipe

_STUDENT_FILE = re.compile(r"skd_sst_(\d+)")


def student_from_onnx(path: Path) -> SpatioTemporalStudent:
    """The torch Sst whose exported fp32 graph is `path` (named `skd_sst_<size>.onnx`)."""
    match = _STUDENT_FILE.fullmatch(path.stem)
    if match is None:
        raise ValueError(f"{path.name}: not an fp32 SKD student export (skd_sst_<size>.onnx)")
    card = json.loads(card_path_for(path).read_text())
    widths = SKDWidths(**card["architecture"]["config"]["widths"])
    net = create_model("skd_sst", input_size=int(match.group(1)), widths=widths)
    graph = onnx.load(str(path)).graph
    state = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    # The exporter's optimiser drops a convolution's all-zero bias (an untrained one) from the
    # node's inputs; such a bias is zero. Every other parameter must be there by name.
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) == 2 and node.input[1].endswith(".weight"):
            bias = node.input[1].removesuffix(".weight") + ".bias"
            state.setdefault(bias, torch.zeros(state[node.input[1]].shape[1 if node.op_type == "ConvTranspose" else 0]))
    net.load_state_dict({k: v for k, v in state.items() if k in net.state_dict()}, strict=True)
    return net.eval()


def reshape_students(recipe: Recipe, out: Path, models_dir: Path, command: str = "") -> list[Path]:
    """Export the students of `models_dir` whose shape differs from the recipe's
    `export.student_shape` again at that shape, scored on the recipe's val set (and, for the
    first size, its box clips) with the SOD net of `models_dir` beside; returns the rewritten
    fp32 files (their INT8 copies are the caller's: `pipeline.quantize_exported`). `command`
    is the one the cards name (default: `saliency-ros train reshape`)."""
    from saliency_ros.training.pipeline import metric_names, offline_scores, relative, score_boxes

    sod = models_dir / onnx_file(recipe.sod.model, recipe.sod.input_size)
    val_name, box_name = metric_names(recipe)
    written = []
    for size, shape in recipe.student_shapes.items():  # every other size ships as trained
        src = models_dir / onnx_file("skd_sst", size)
        if not src.is_file():
            raise FileNotFoundError(f"{src} does not exist, but export.student_shape lists size {size}")
        card = json.loads(card_path_for(src).read_text())
        old = [card["input"]["height"], card["input"]["width"]]
        if list(shape) == old:
            continue
        if not card["trained"]:
            raise ValueError(f"{src.name} is untrained: nothing to reshape")
        net = student_from_onnx(src)
        training = {**card["training"], "reshaped": {
            "command": command or f"saliency-ros train reshape --recipe {relative(recipe.path)}",
            "input": list(shape), "from": {"input": old, "sha256": card["sha256"], "metrics": card["training"]["metrics"]},
            "scored_by": "the offline evaluation of the exported graph (every val frame with a previous frame)"}}
        staged = export_model(net, "skd_sst", size, out / "models", training,
                              pair_alignment=card["input"]["pair_alignment"], shape=shape).onnx_path
        metrics: dict[str, Any] = {
            val_name: offline_scores(staged, sod, [recipe.data.val], out / f"val_{size}", baselines=())["sst"]}
        if size == recipe.skd.sizes[0] and recipe.data.boxes:
            metrics[box_name] = score_boxes(recipe, [staged, sod], out / f"boxes_{size}")["sst"]
        training["metrics"] = metrics
        written.append(export_model(net, "skd_sst", size, models_dir, training,
                                    pair_alignment=card["input"]["pair_alignment"], shape=shape).onnx_path)
        print(f"train reshape: {src.name} {old[0]}x{old[1]} -> {shape[0]}x{shape[1]}: "
              f"{json.dumps({n: {k: round(m[k], 3) for k in ('fbeta_max', 'mae', 'pointing_hit_rate', 'box_nss') if k in m} for n, m in metrics.items()})}")
    return written
