"""Model registry and factory: `create_model(name, **cfg)`, in the manner of timm.

Each entry also says what its exported ONNX graph takes, so the exporter, the benchmark and
the model cards describe every model the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from saliency_ros.models.skd import SKDWidths, SpatialStudent, SpatioTemporalStudent, TemporalStudent
from saliency_ros.models.sod import SODConfig, SODNet


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: its builder and the interface of its deployed form."""

    name: str
    family: str  # "skd" or "sod"
    builder: Callable[..., nn.Module]
    inputs: tuple[str, ...]  # names of the deployed model's image inputs, in call order
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> None:
    """Add an architecture; names are unique."""
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def list_models() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry of `name`, with the known names in the error."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


def create_model(name: str, **cfg: object) -> nn.Module:
    """Build a registered model. SKD models take `input_size` and `widths`; SOD models take
    the fields of `SODConfig` (backbone, pretrained, channels, temporal)."""
    return get_entry(name).builder(**cfg)


def _sod(backbone: str, default_pretrained: bool) -> Callable[..., nn.Module]:
    def build(**cfg: object) -> nn.Module:
        cfg.setdefault("pretrained", default_pretrained)
        return SODNet(SODConfig(backbone=backbone, **cfg))  # type: ignore[arg-type]

    return build


def _skd(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(input_size: int = 64, widths: SKDWidths | None = None) -> nn.Module:
        if input_size not in (32, 64, 128):
            raise ValueError(f"SKD input_size must be 32, 64 or 128, got {input_size}")
        return cls(input_size=input_size, widths=widths)

    return build


register(ModelEntry("skd_ss", "skd", _skd(SpatialStudent), ("current",),
                    "SKD spatial student Ss (one frame)"))
register(ModelEntry("skd_st", "skd", _skd(TemporalStudent), ("current", "previous"),
                    "SKD temporal student St (frame pair, 6 channels)"))
register(ModelEntry("skd_sst", "skd", _skd(SpatioTemporalStudent), ("current", "previous"),
                    "SKD spatiotemporal student Sst (the drone saliency model)"))
for _digit in "012":
    register(ModelEntry(f"sod_effl{_digit}", "sod", _sod(f"efficientnet_lite{_digit}", True), ("image",),
                        f"Distilled video SOD net, EfficientNet-Lite{_digit} backbone (ImageNet)"))
register(ModelEntry("sod_r50", "sod", _sod("resnet50", False), ("image",),
                    "Distilled video SOD net, ResNet-50 backbone (paper parity, no pretraining)"))
