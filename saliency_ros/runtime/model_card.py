"""Model cards: the JSON beside each `.onnx` that says what the model takes and how it was made.

The card is the one source of truth for preprocessing (size, colour order, scaling, mean/std,
resize mode): the exporter writes it, the runtime and the offline evaluation read it. No torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCHEMA = "saliency_ros/model-card/1"
_RESIZE_MODES = ("area", "bilinear")
_COLOR_ORDERS = ("RGB", "BGR")
PAIR_ALIGNMENTS = ("none", "homography", "affine")  # runtime.egomotion models, or raw pairs


class ModelCardError(ValueError):
    """A card is missing, malformed, or disagrees with its ONNX file."""


@dataclass(frozen=True)
class InputSpec:
    """How a camera frame becomes one of the model's input tensors."""

    names: tuple[str, ...]  # ONNX input names, in call order (e.g. current, previous)
    height: int
    width: int
    color: str  # channel order the network expects
    scale: float  # multiply uint8 by this before mean/std
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str  # OpenCV interpolation used to reach (height, width)
    layout: str = "NCHW"
    dtype: str = "float32"
    # Frame-pair models: the previous frame is warped onto the current one by the camera's
    # ego-motion (runtime.egomotion) before inference, as in training.
    pair_alignment: str = "none"

    def __post_init__(self) -> None:
        if self.pair_alignment not in PAIR_ALIGNMENTS:
            raise ModelCardError(f"input.pair_alignment must be one of {PAIR_ALIGNMENTS}, got {self.pair_alignment!r}")
        if self.color not in _COLOR_ORDERS:
            raise ModelCardError(f"input.color must be one of {_COLOR_ORDERS}, got {self.color!r}")
        if self.resize not in _RESIZE_MODES:
            raise ModelCardError(f"input.resize must be one of {_RESIZE_MODES}, got {self.resize!r}")
        if self.height <= 0 or self.width <= 0:
            raise ModelCardError(f"input size must be positive, got {self.height}x{self.width}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ModelCardError(f"input.mean/std need 3 values with std > 0, got {self.mean}/{self.std}")
        if not self.names:
            raise ModelCardError("input.names is empty")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        try:
            return cls(
                names=tuple(d["names"]),
                height=int(d["height"]),
                width=int(d["width"]),
                color=str(d["color"]),
                scale=float(d["scale"]),
                mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
                resize=str(d["resize"]),
                layout=str(d.get("layout", "NCHW")),
                dtype=str(d.get("dtype", "float32")),
                pair_alignment=str(d.get("pair_alignment", "none")),
            )
        except KeyError as err:
            raise ModelCardError(f"model card input spec lacks {err}") from None


@dataclass(frozen=True)
class OutputSpec:
    """What the single output tensor means."""

    name: str
    meaning: str
    range: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class ModelCard:
    """A parsed card. `extra` keeps every other section (architecture, training, export)."""

    name: str
    file: str
    sha256: str
    input: InputSpec
    output: OutputSpec
    trained: bool
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = {
            "schema": SCHEMA,
            "name": self.name,
            "file": self.file,
            "sha256": self.sha256,
            "trained": self.trained,
            "input": {**asdict(self.input), "names": list(self.input.names)},
            "output": asdict(self.output),
        }
        d.update(self.extra)
        return d


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path_for(onnx_path: Path) -> Path:
    """Cards live beside their model: models/skd_sst_64.onnx -> models/skd_sst_64.json."""
    return onnx_path.with_suffix(".json")


def write_card(card: ModelCard, path: Path) -> None:
    """Write a card as stable, human-diffable JSON."""
    path.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=False) + "\n")


def load_card(path: Path, verify_sha256: bool = True) -> ModelCard:
    """Read and validate a card; with `verify_sha256`, also check the ONNX file it names."""
    if not path.is_file():
        raise ModelCardError(f"model card {path} does not exist")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelCardError(f"model card {path} is not valid JSON: {err}") from None
    if raw.get("schema") != SCHEMA:
        raise ModelCardError(f"model card {path} has schema {raw.get('schema')!r}, expected {SCHEMA!r}")
    known = {"schema", "name", "file", "sha256", "trained", "input", "output"}
    missing = known - raw.keys()
    if missing:
        raise ModelCardError(f"model card {path} lacks {sorted(missing)}")
    out = raw["output"]
    card = ModelCard(
        name=str(raw["name"]),
        file=str(raw["file"]),
        sha256=str(raw["sha256"]),
        input=InputSpec.from_dict(raw["input"]),
        output=OutputSpec(name=str(out["name"]), meaning=str(out["meaning"]),
                          range=tuple(out.get("range", (0.0, 1.0)))),  # type: ignore[arg-type]
        trained=bool(raw["trained"]),
        extra={k: v for k, v in raw.items() if k not in known},
    )
    if verify_sha256:
        onnx_file = path.parent / card.file
        if not onnx_file.is_file():
            raise ModelCardError(f"model card {path} names {card.file}, which does not exist")
        actual = sha256_file(onnx_file)
        if actual != card.sha256:
            raise ModelCardError(
                f"{onnx_file} has sha256 {actual}, but its card says {card.sha256}: "
                "the file was changed or replaced without re-exporting"
            )
    return card
