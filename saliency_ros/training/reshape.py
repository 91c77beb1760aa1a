"""Models exported again at another input shape, their weights read back from their ONNX files.

Why: both nets are fully convolutional, so weights trained on one input shape run on others
(students: sides multiples of 4; the SOD net: multiples of 32). A 16:9 camera frame squeezed
into 128 x 128 shows its objects 1.8x narrower than they are; at 96 x 168 (the same pixels,
the same model cost) it does not. The SOD net trains on crops that keep about their frame's
aspect, so it too reads a camera frame better un-squeezed. `export.student_shape` and
`export.sod_shape` in a recipe say which model ships at which shape. `train all` exports at
the training shape and reshapes here; `saliency-ros train reshape` does the same for the
models already in `models/`, which needs no run folder: the ONNX initialisers carry the torch
parameter names (the SOD net's BatchNorms are folded into its convolutions by the exporter, so
they come back as identities that add the folded bias). A reshaped model is scored again
through the offline evaluation (the nodes' code) because the scores in its card were measured
at the old shape; the card keeps the old shape and scores under `training.reshaped`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import numpy_helper
from torch import nn

from saliency_ros.models import create_model
from saliency_ros.models.skd import SKDWidths, SpatioTemporalStudent
from saliency_ros.models.sod import SODNet
from saliency_ros.runtime.model_card import card_path_for
from saliency_ros.training.export import export_model, onnx_file, saliency_sod_file
from saliency_ros.training.quantize import int8_path
from saliency_ros.training.recipe import Recipe

_STUDENT_FILE = re.compile(r"skd_sst_(\d+)")
_SOD_FILE = re.compile(r"(sod_[a-z0-9]+)_(\d+)")


def _initializers(graph: onnx.GraphProto) -> dict[str, torch.Tensor]:
    """A graph's initialisers by name, as writable torch tensors."""
    return {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}


def student_from_onnx(path: Path) -> SpatioTemporalStudent:
    """The torch Sst whose exported fp32 graph is `path` (named `skd_sst_<size>.onnx`)."""
    match = _STUDENT_FILE.fullmatch(path.stem)
    if match is None:
        raise ValueError(f"{path.name}: not an fp32 SKD student export (skd_sst_<size>.onnx)")
    card = json.loads(card_path_for(path).read_text())
    widths = SKDWidths(**card["architecture"]["config"]["widths"])
    net = create_model("skd_sst", input_size=int(match.group(1)), widths=widths)
    graph = onnx.load(str(path)).graph
    state = _initializers(graph)
    # The exporter's optimiser drops a convolution's all-zero bias (an untrained one) from the
    # node's inputs; such a bias is zero. Every other parameter must be there by name.
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) == 2 and node.input[1].endswith(".weight"):
            bias = node.input[1].removesuffix(".weight") + ".bias"
            state.setdefault(bias, torch.zeros(state[node.input[1]].shape[1 if node.op_type == "ConvTranspose" else 0]))
    net.load_state_dict({k: v for k, v in state.items() if k in net.state_dict()}, strict=True)
    return net.eval()


def sod_from_onnx(path: Path) -> SODNet:
    """The torch SOD net whose exported fp32 graph is `path` (named `sod_<backbone>_<size>.onnx`):
    its trunk, in eval mode; the inter-frame encoder is not in the export and stays untrained.

    The exporter folds each BatchNorm into the convolution before it (weight scaled, bias
    added), so each such BatchNorm comes back as an identity (scale 1, mean 0, variance
    1 - eps) whose shift is the folded bias. Which BatchNorm follows which convolution, and
    which PReLU follows which BatchNorm, is read from one traced forward pass."""
    match = _SOD_FILE.fullmatch(path.stem)
    if match is None:
        raise ValueError(f"{path.name}: not an fp32 SOD net export (sod_<backbone>_<size>.onnx)")
    card = json.loads(card_path_for(path).read_text())
    config = {k: v for k, v in card["architecture"]["config"].items()
              if k in ("low_channels", "high_channels", "aspp_channels", "phi_channels")}
    net = create_model(match.group(1), pretrained=False, aspp_rates=tuple(card["architecture"]["config"]["aspp_rates"]),
                       **config).eval()
    graph = onnx.load(str(path)).graph
    init = _initializers(graph)
    conv_node = {n.input[1]: n for n in graph.node if n.op_type == "Conv"}
    prelu_node = {n.input[0]: n for n in graph.node if n.op_type == "PRelu"}
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []  # tensors kept: ids stay unique
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: calls.append((f"trunk.{name}", m, i[0], o)))
             for name, m in net.trunk.named_modules() if not list(m.children())]
    with torch.no_grad():
        net.trunk(torch.zeros(1, 3, card["input"]["height"], card["input"]["width"]))
    for h in hooks:
        h.remove()
    made_by = {id(o): (name, i) for name, m, i, o in calls if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))}

    def bias_of(conv: str) -> torch.Tensor:  # the exporter drops an all-zero bias (untrained BatchNorms)
        node = conv_node[f"{conv}.weight"]
        return init[node.input[2]] if len(node.input) > 2 else torch.zeros(init[node.input[1]].shape[0])

    loaded = set()
    with torch.no_grad():
        for name, m, i, _ in calls:
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(init[f"{name}.weight"])
                if m.bias is not None:
                    m.bias.copy_(bias_of(name))
                loaded |= {f"{name}.weight", f"{name}.bias"}
            elif isinstance(m, nn.BatchNorm2d):
                conv = made_by[id(i)][0]
                m.weight.fill_(1.0)
                m.bias.copy_(bias_of(conv))
                m.running_mean.zero_()
                m.running_var.fill_(1.0 - m.eps)
                loaded |= {f"{name}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
            elif isinstance(m, nn.PReLU):
                conv = made_by[id(made_by[id(i)][1])][0]  # PReLU <- BatchNorm <- convolution
                m.weight.copy_(init[prelu_node[conv_node[f"{conv}.weight"].output[0]].input[1]].reshape(-1))
                loaded.add(f"{name}.weight")
    missing = [k for k in net.state_dict() if k.startswith("trunk.") and k not in loaded]
    if missing:
        raise ValueError(f"{path.name}: no value in the graph for {missing[:5]}")
    return net


def reshape_models(recipe: Recipe, out: Path, models_dir: Path, command: str = "") -> list[Path]:
    """Export the SOD net and the students of `models_dir` whose shape differs from the
    recipe's `export.sod_shape` / `export.student_shape` again at that shape, scored on the
    recipe's val set and (the SOD net and the first size) its box clips; returns the rewritten
    fp32 files (their INT8 copies are the caller's: `pipeline.quantize_exported`). `command`
    is the one the cards name (default: `saliency-ros train reshape`)."""
    from saliency_ros.training.pipeline import relative

    command = command or f"saliency-ros train reshape --recipe {relative(recipe.path)}"
    sod = models_dir / onnx_file(recipe.sod.model, recipe.sod.input_size)
    first = models_dir / onnx_file("skd_sst", recipe.skd.sizes[0])
    written = []
    if recipe.sod_shape is not None:  # first: the students are scored beside the SOD net of models_dir
        written += _reshape(sod, sod_from_onnx, recipe.sod_shape, "sod", first, recipe, out / "sod", models_dir, command)
    for size, shape in recipe.student_shapes.items():  # every other size ships as trained
        written += _reshape(models_dir / onnx_file("skd_sst", size), student_from_onnx, shape, "sst", sod, recipe,
                            out / f"sst_{size}", models_dir, command, boxes=size == recipe.skd.sizes[0])
    if recipe.saliency_shape is not None:  # the SOD net again, scored as /saliency is
        written += _reshape(sod, sod_from_onnx, recipe.saliency_shape, "sst", sod, recipe, out / "saliency", models_dir,
                            command, file=saliency_sod_file(sod.name, recipe.saliency_shape))
    return written


def _reshape(src: Path, read: Callable[[Path], nn.Module], shape: tuple[int, int], method: str, beside: Path,
             recipe: Recipe, out: Path, models_dir: Path, command: str, boxes: bool = True,
             file: str | None = None) -> list[Path]:
    """`src` exported again at `shape` into `models_dir` in its place, and scored as `method`
    of the offline evaluation (the other model, `beside`, runs with it); nothing when it has
    that shape. With `file`, a new model instead; with `export.int8` its fp32 export stays in
    `out` (the same 15 MB of weights as `src`; models/ stays under 30 MB) and only its INT8
    copy ships (`pipeline.quantize_exported`). Nothing when the file that ships is in
    `models_dir` at `shape`, made from `src` as it is."""
    from saliency_ros.training.pipeline import metric_names, offline_scores, score_boxes

    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist, but the recipe's export section gives it a shape")
    card = json.loads(card_path_for(src).read_text())
    old = [card["input"]["height"], card["input"]["width"]]
    target = models_dir / (file or src.name)
    if file is None and list(shape) == old:
        return []
    ships = int8_path(target) if file is not None and recipe.export_int8 else target
    if file is not None and ships.is_file():
        made = json.loads(card_path_for(ships).read_text())
        if ([made["input"]["height"], made["input"]["width"]] == list(shape)
                and made["training"].get("reshaped", {}).get("from", {}).get("sha256") == card["sha256"]):
            return []
    if not card["trained"]:
        raise ValueError(f"{src.name} is untrained: nothing to reshape")
    net, name, size = read(src), card["name"], int(src.stem.rsplit("_", 1)[1])
    training = {**card["training"], "reshaped": {
        "command": command, "input": list(shape),
        "from": {"input": old, "sha256": card["sha256"], "metrics": card["training"]["metrics"]},
        "scored_by": "the offline evaluation of the exported graph (every val frame; a student's from its second)"}}
    staged = export_model(net, name, size, out / "models", training,
                          pair_alignment=card["input"]["pair_alignment"], shape=shape, file=file).onnx_path
    val_name, box_name = metric_names(recipe)
    pair = (staged, beside) if method == "sst" else (beside, staged)
    metrics: dict[str, Any] = {val_name: offline_scores(*pair, [recipe.data.val], out / "val", baselines=())[method]}
    if boxes and recipe.data.boxes:
        metrics[box_name] = score_boxes(recipe, *pair, out / "boxes")[method]
    training["metrics"] = metrics
    print(f"train reshape: {src.name} {old[0]}x{old[1]} -> {target.name} {shape[0]}x{shape[1]}: "
          f"{json.dumps({n: {k: round(m[k], 3) for k in ('fbeta_max', 'mae', 'pointing_hit_rate', 'box_nss') if k in m} for n, m in metrics.items()})}")
    final = out / "scored" if ships != target else models_dir
    return [export_model(net, name, size, final, training, pair_alignment=card["input"]["pair_alignment"],
                         shape=shape, file=file).onnx_path]
