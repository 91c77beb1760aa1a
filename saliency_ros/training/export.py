"""Export registered models to ONNX with a model card beside each file.

Exported graphs take float32 NCHW images (already resized and normalised as the card says),
have named inputs and one output `saliency` of probabilities in [0, 1], and a dynamic batch
axis. The torch-vs-ONNX-Runtime parity is checked by the tests, on random and real frames.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import re
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from saliency_ros.models import create_model, get_entry
from saliency_ros.models.skd import SpatialStudent, SpatioTemporalStudent, TemporalStudent, student_shape
from saliency_ros.models.sod import SODNet
from saliency_ros.runtime.model_card import (
    InputSpec,
    ModelCard,
    OutputSpec,
    card_path_for,
    sha256_file,
    write_card,
)

OPSET = 18
OUTPUT_NAME = "saliency"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PAPERS = {
    "skd": {
        "id": "001_cc34c7b445d12626",
        "title": "SKD: spatiotemporal knowledge distillation for aerial video saliency",
        "notes": "../shared/papers/NOTES.md",
    },
    "sod": {
        "id": "000_2884c312624b1e7d",
        "title": "Video salient object detection by spatiotemporal distillation",
        "notes": "../shared/papers/NOTES.md",
    },
}


@dataclass(frozen=True)
class ExportResult:
    """Where an export went and what it measured."""

    onnx_path: Path
    card_path: Path
    parameters: int
    flops: int
    bytes: int


def onnx_file(name: str, input_size: int) -> str:
    """The file a model of `name` exported at `input_size` is written to (its shape is in the card)."""
    return f"{name}_{input_size}.onnx"


def saliency_sod_file(sod_file: str, shape: tuple[int, int]) -> str:
    """The SOD net's second export, at `shape`, that /saliency runs (`export.saliency_shape`):
    `<sod file's stem>_<height>x<width>.onnx`."""
    return f"{Path(sod_file).stem}_{shape[0]}x{shape[1]}.onnx"


_SALIENCY_SOD = re.compile(r"sod_[a-z0-9]+_\d+_\d+x\d+(_int8)?")


def is_saliency_model(path: Path) -> bool:
    """Whether `path` is a /saliency model: an Sst, or the SOD net exported for /saliency."""
    return path.name.startswith("skd_sst") or _SALIENCY_SOD.fullmatch(path.stem) is not None


def deployable(model: nn.Module) -> nn.Module:
    """The module that flies: SOD nets drop their inter-frame encoder, students are as is."""
    return model.deploy() if isinstance(model, SODNet) else model


def input_shape(name: str, input_size: int, aspect: float = 1.0,
                shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """(height, width) of a model's input: SKD students at `aspect` (`student_shape`) or at
    `shape` when given (sides multiples of 4); the SOD net at its square `input_size` (what it
    trains on) or at `shape` (sides multiples of 32, the backbone's stride)."""
    skd = get_entry(name).family == "skd"
    if shape is None:
        if not skd and aspect != 1.0:
            raise ValueError(f"{name} takes a shape, not an aspect; aspect is for SKD students")
        return student_shape(input_size, aspect) if skd else (input_size, input_size)
    step = 4 if skd else 32
    if min(shape) < step or any(side % step for side in shape):
        raise ValueError(f"{name} inputs need sides that are positive multiples of {step}, got {list(shape)}")
    return int(shape[0]), int(shape[1])


def example_inputs(name: str, input_size: int, batch: int = 2, aspect: float = 1.0,
                   shape: tuple[int, int] | None = None) -> tuple[torch.Tensor, ...]:
    """Random inputs in the registry's input order (batch 2, so export keeps batch dynamic)."""
    entry = get_entry(name)
    gen = torch.Generator().manual_seed(0)
    h, w = input_shape(name, input_size, aspect, shape)
    return tuple(torch.randn(batch, 3, h, w, generator=gen) for _ in entry.inputs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward pass at batch 1 (multiply-adds count as two)."""
    one = tuple(x[:1] for x in inputs)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*one)
    return int(counter.get_total_flops())


def _pair(v: int | tuple[int, ...]) -> tuple[int, ...]:
    return (v, v) if isinstance(v, int) else tuple(v)


def layer_table(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], select: Callable[[str, nn.Module], bool]
) -> list[dict[str, Any]]:
    """Rows (name, type, output shape C x H x W, params) for the selected modules, in call order."""
    rows: list[dict[str, Any]] = []
    hooks = []
    for mod_name, module in model.named_modules():
        if not select(mod_name, module):
            continue

        def hook(mod: nn.Module, _in: Any, out: Any, mod_name: str = mod_name) -> None:
            kernel = getattr(mod, "kernel_size", None)
            rows.append(
                {
                    "name": mod_name,
                    "type": type(mod).__name__,
                    "kernel": list(_pair(kernel)) if kernel is not None else None,
                    "output": list(out.shape[1:]) if isinstance(out, torch.Tensor) else None,
                    "params": count_parameters(mod),
                }
            )

        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(*(x[:1] for x in inputs))
    finally:
        for h in hooks:
            h.remove()
    return rows


def _select_layers(model: nn.Module) -> Callable[[str, nn.Module], bool]:
    if isinstance(model, (SpatialStudent, TemporalStudent, SpatioTemporalStudent)):
        return lambda _n, m: isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d))
    # SOD: the stem, every backbone block, and each head block of the trunk.
    head = {"aspp", "gamma_low", "gamma_high", "p0_head", "unit1", "unit2"}
    return lambda n, _m: (
        n in {f"trunk.{h}" for h in head}
        or n == "trunk.backbone._conv_stem"
        or n == "trunk.backbone.conv1"
        or (n.startswith("trunk.backbone._blocks.") and n.count(".") == 3)
        or (n.startswith("trunk.backbone.layers.") and n.count(".") == 3)
    )


def git_commit(repo: Path) -> str:
    """HEAD of the checkout the exporter runs from, with '-dirty' for uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def input_spec(name: str, input_size: int, pair_alignment: str = "none", aspect: float = 1.0,
               shape: tuple[int, int] | None = None) -> InputSpec:
    """Preprocessing contract of a model: RGB, ImageNet mean/std, area downsampling to
    `input_shape`, and for frame-pair models whether the previous frame is ego-motion aligned
    (runtime.egomotion).

    Area interpolation is the SKD paper's resolution reduction R; the SOD net uses it too, so
    one resize routine serves both and matches what training does.
    """
    height, width = input_shape(name, input_size, aspect, shape)
    return InputSpec(
        names=get_entry(name).inputs,
        height=height,
        width=width,
        color="RGB",
        scale=1.0 / 255.0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize="area",
        pair_alignment=pair_alignment,
    )


def export_model(
    model: nn.Module,
    name: str,
    input_size: int,
    out_dir: Path,
    training: dict[str, Any] | None = None,
    repo: Path | None = None,
    pair_alignment: str = "none",
    aspect: float = 1.0,
    shape: tuple[int, int] | None = None,
    file: str | None = None,
) -> ExportResult:
    """Export `model` (registered as `name`) at `input_size` to `out_dir/<name>_<size>.onnx`
    (or `out_dir/<file>`).

    `training` is the card's training section; without it the card says the weights are
    untrained, which is what the tests and the bench use. A student's `aspect` sets its input
    shape (`student_shape`), or `shape` does; the file keeps the size's name and the card
    gives the shape.
    """
    entry = get_entry(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = deployable(model).eval()
    inputs = example_inputs(name, input_size, aspect=aspect, shape=shape)
    onnx_path = out_dir / (file or onnx_file(name, input_size))

    batch = torch.export.Dim("batch", min=1, max=1024)
    # The exporter warns about torchvision ops it cannot register (we have no torchvision)
    # and about pytree internals; neither concerns our graphs.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        program = torch.onnx.export(
            net,
            inputs,
            dynamo=True,
            input_names=list(entry.inputs),
            output_names=[OUTPUT_NAME],
            dynamic_shapes={n: {0: batch} for n in entry.inputs},  # forward() uses these names
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    program.save(str(onnx_path), external_data=False)
    proto = onnx.load(str(onnx_path))
    onnx.checker.check_model(proto, full_check=True)

    params = count_parameters(net)
    flops = count_flops(net, inputs)
    card = ModelCard(
        name=name,
        file=onnx_path.name,
        sha256=sha256_file(onnx_path),
        input=input_spec(name, input_size, pair_alignment, aspect, shape),
        output=OutputSpec(
            name=OUTPUT_NAME,
            meaning="saliency probability of the newest frame" if entry.family == "skd"
            else "salient-object probability",
        ),
        trained=training is not None,
        extra={
            "description": entry.description,
            "paper": PAPERS[entry.family],
            "parameters": params,
            "flops": flops,
            "flops_input": [1, *inputs[0].shape[1:]],
            "architecture": {
                "config": _config_of(model),
                "layers": layer_table(net, inputs, _select_layers(net)),
            },
            "training": training or {"status": "untrained: random initialisation, not for use"},
            "export": {
                "opset": OPSET,
                "dynamic_axes": {n: {"0": "batch"} for n in entry.inputs},
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "git_commit": git_commit(repo or Path(__file__).resolve().parents[2]),
                "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "host": platform.node(),
            },
        },
    )
    card_path = card_path_for(onnx_path)
    write_card(card, card_path)
    return ExportResult(onnx_path, card_path, params, flops, onnx_path.stat().st_size)


def _config_of(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, SODNet):
        cfg = model.config
        return {
            "backbone": cfg.backbone,
            "imagenet_init": cfg.pretrained,
            "low_channels": cfg.low_channels,
            "high_channels": cfg.high_channels,
            "aspp_channels": cfg.aspp_channels,
            "aspp_rates": list(cfg.aspp_rates),
            "phi_channels": cfg.phi_channels,
            "inter_frame_encoder": "training only; not in the exported graph",
        }
    return {"widths": asdict(model.widths), "pair_order": "(current, previous)"}  # type: ignore[arg-type]


def export_untrained(name: str, input_size: int, out_dir: Path, seed: int = 0) -> ExportResult:
    """Export a freshly initialised model (SOD backbone from ImageNet): for speed and parity
    checks only; its card says `trained: false`."""
    torch.manual_seed(seed)
    cfg: dict[str, Any] = {"input_size": input_size} if get_entry(name).family == "skd" else {}
    return export_model(create_model(name, **cfg), name, input_size, out_dir)
