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

from jsonschema import Draft202012Validator

SCHEMA = "saliency_ros/model-card/1"
PAIR_ALIGNMENTS = ("none", "homography", "affine")  # runtime.egomotion models, or raw pairs

_TRIPLE = {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}
# Every field the runtime reads, with its type and range. Cards are checked against it when
# written (export) and when read (nodes, evaluation), so a hand-edited or damaged card fails
# at configure with the file and the field named, never later inside preprocessing.
CARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "name", "file", "sha256", "trained", "input", "output"],
    "properties": {
        "schema": {"const": SCHEMA},
        "name": {"type": "string", "minLength": 1},
        "file": {"type": "string", "pattern": r"^[^/\\]+\.onnx$"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "trained": {"type": "boolean"},
        "input": {
            "type": "object",
            "required": ["names", "height", "width", "color", "scale", "mean", "std", "resize"],
            "properties": {
                "names": {"type": "array", "items": {"type": "string", "minLength": 1},
                          "minItems": 1, "maxItems": 2, "uniqueItems": True},
                "height": {"type": "integer", "minimum": 1, "maximum": 4096},
                "width": {"type": "integer", "minimum": 1, "maximum": 4096},
                "color": {"enum": ["RGB", "BGR"]},
                "scale": {"type": "number", "exclusiveMinimum": 0},
                "mean": _TRIPLE,
                "std": {**_TRIPLE, "items": {"type": "number", "exclusiveMinimum": 0}},
                "resize": {"enum": ["area", "bilinear"]},
                "layout": {"const": "NCHW"},
                "dtype": {"const": "float32"},
                "pair_alignment": {"enum": list(PAIR_ALIGNMENTS)},
            },
        },
        "output": {
            "type": "object",
            "required": ["name", "meaning"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "meaning": {"type": "string", "minLength": 1},
                "range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
            },
        },
    },
}
_VALIDATOR = Draft202012Validator(CARD_SCHEMA)


class ModelCardError(ValueError):
    """A card is missing, malformed, or disagrees with its ONNX file."""


def validate_card(raw: Any, where: Path | str) -> None:
    """Raise ModelCardError naming `where` and the first offending field (as a dotted path)."""
    errors = sorted(_VALIDATOR.iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        field = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ModelCardError(f"model card {where}: field {field}: {err.message}{more}")


@dataclass(frozen=True)
class InputSpec:
    """How a camera frame becomes one of the model's input tensors."""

    names: tuple[str, ...]  # ONNX input names, in call order (e.g. current, previous)
    height: int
    width: int
    color: str  # channel order the network expects: RGB | BGR
    scale: float  # multiply uint8 by this before mean/std
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str  # OpenCV interpolation used to reach (height, width): area | bilinear
    layout: str = "NCHW"
    dtype: str = "float32"
    # Frame-pair models: the previous frame is warped onto the current one by the camera's
    # ego-motion (runtime.egomotion) before inference, as in training.
    pair_alignment: str = "none"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        """From a validated card's `input` section."""
        return cls(names=tuple(d["names"]), height=d["height"], width=d["width"], color=d["color"],
                   scale=float(d["scale"]), mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
                   std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
                   resize=d["resize"], layout=d.get("layout", "NCHW"), dtype=d.get("dtype", "float32"),
                   pair_alignment=d.get("pair_alignment", "none"))


@dataclass(frozen=True)
class OutputSpec:
    """What the single output tensor means."""

    name: str
    meaning: str
    range: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class ModelCard:
    """A parsed card. `extra` keeps every other section (architecture, training, export).

    What the card protects: `sha256` ties it to the exact bytes of one ONNX file, and the
    engine hashes the bytes it hands to ONNX Runtime, so a changed, truncated or swapped model
    is refused. What it does not: the card is not signed, so whoever can write both files can
    change both consistently; it says nothing about how good the model is beyond its metrics.
    """

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
            "input": {**asdict(self.input), "names": list(self.input.names),
                      "mean": list(self.input.mean), "std": list(self.input.std)},
            "output": {**asdict(self.output), "range": list(self.output.range)},
        }
        d.update(self.extra)
        return d

    def verify_bytes(self, data: bytes, source: Path) -> None:
        """Refuse model bytes (read from `source`) that are not the ones this card describes."""
        actual = hashlib.sha256(data).hexdigest()
        if actual != self.sha256:
            raise ModelCardError(
                f"{source} has sha256 {actual}, but its card says {self.sha256} (for {self.file}): "
                "the model was changed or replaced without re-exporting"
            )


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
    """Write a card as stable, human-diffable JSON, after checking it against the schema."""
    d = card.to_dict()
    validate_card(d, path)
    path.write_text(json.dumps(d, indent=2, sort_keys=False) + "\n")


def load_card(path: Path, verify_sha256: bool = True) -> ModelCard:
    """Read a card and check it against the schema; with `verify_sha256`, also hash the ONNX
    file it names (the engine instead hashes the bytes it actually loads)."""
    if not path.is_file():
        raise ModelCardError(f"model card {path} does not exist")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelCardError(f"model card {path} is not valid JSON: {err}") from None
    validate_card(raw, path)
    known = {"schema", "name", "file", "sha256", "trained", "input", "output"}
    out = raw["output"]
    card = ModelCard(
        name=raw["name"],
        file=raw["file"],
        sha256=raw["sha256"],
        input=InputSpec.from_dict(raw["input"]),
        output=OutputSpec(name=out["name"], meaning=out["meaning"],
                          range=tuple(out.get("range", (0.0, 1.0)))),  # type: ignore[arg-type]
        trained=raw["trained"],
        extra={k: v for k, v in raw.items() if k not in known},
    )
    if verify_sha256:
        onnx_file = path.parent / card.file
        if not onnx_file.is_file():
            raise ModelCardError(f"model card {path} names {card.file}, which does not exist")
        card.verify_bytes(onnx_file.read_bytes(), onnx_file)
    return card
