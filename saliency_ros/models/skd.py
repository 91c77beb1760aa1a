"""SKD students: spatial Ss, temporal St and the fused spatiotemporal Sst (`../shared/papers/001_*`).

The 13 layers of a student (Fig. 4a/b), SalNet-style, ReLU after every conv:

    1 conv3x3 c1   2 conv3x3 c1   3 maxpool/2   4 conv3x3 c2   5 maxpool/2
    6 conv3x3 c3   7 conv3x3 c3   8 conv3x3 c3                          <- "first eight layers"
    9 conv1x1 c4 (reduce)   10 conv3x3 c5   11 conv3x3 c5                <- high-level cues
    12 deconv4x4/2 c6   13 deconv4x4/2 -> 1 channel (linear, clipped to [0, 1] in eval) <- decoder

Sst keeps layers 1-8 of Ss (3-channel input) and of St (6-channel input) as two streams,
concatenates their features and runs a fusion sub-network shaped like layers 9-13.

Frame pairs are (current, previous): the spatial stream sees the newest frame, so the map
belongs to the newest frame and costs no frame of latency (NOTES.md, "Online frame pairs").
The widths below give Sst 0.30M parameters, the paper's figure; the input size (32/64/128)
only has to be divisible by 4. The students are fully convolutional: `student_shape` gives a
size's input at a camera's aspect ratio, with the pixels of the paper's square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class SKDWidths:
    """Channel widths c1..c6 of the student layers (see the module docstring), and the
    dilations of its 3x3 layers 7, 8, 10 and 11 at a quarter of the input resolution.

    Why dilations: an output pixel of the paper's student depends on 56 x 56 px of its input,
    less than a DAVIS object with its surroundings at 128 px; dilating those four layers by
    2, 4, 2, 4 widens that to 120 x 120 with the same weights and arithmetic. All 1 is the
    paper's student.
    """

    c1: int = 16
    c2: int = 32
    c3: int = 64
    c4: int = 64
    c5: int = 64
    c6: int = 16
    dilations: tuple[int, int, int, int] = (1, 1, 1, 1)

    def __post_init__(self) -> None:
        dilations = tuple(int(d) for d in self.dilations)  # a card's JSON gives a list
        if len(dilations) != 4 or min(dilations) < 1:
            raise ValueError(f"SKD dilations are four positive integers (layers 7, 8, 10, 11), got {self.dilations}")
        object.__setattr__(self, "dilations", dilations)


def _conv(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation), nn.ReLU(inplace=True)]


def encoder_layers(in_channels: int, w: SKDWidths) -> nn.Sequential:
    """Layers 1-8: the feature extractor shared in shape by Ss, St and both Sst streams."""
    return nn.Sequential(
        *_conv(in_channels, w.c1),
        *_conv(w.c1, w.c1),
        nn.MaxPool2d(2),
        *_conv(w.c1, w.c2),
        nn.MaxPool2d(2),
        *_conv(w.c2, w.c3),
        *_conv(w.c3, w.c3, dilation=w.dilations[0]),
        *_conv(w.c3, w.c3, dilation=w.dilations[1]),
    )


def head_layers(in_channels: int, w: SKDWidths) -> nn.Sequential:
    """Layers 9-13: 1x1 reduction, two 3x3 convs, two transposed convs back to input size."""
    return nn.Sequential(
        *_conv(in_channels, w.c4, kernel=1),
        *_conv(w.c4, w.c5, dilation=w.dilations[2]),
        *_conv(w.c5, w.c5, dilation=w.dilations[3]),
        nn.ConvTranspose2d(w.c5, w.c6, 4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(w.c6, 1, 4, stride=2, padding=1),
    )


# Salient objects cover about 8 % of a DAVIS frame; the output starts at that probability.
FOREGROUND_PRIOR = 0.08


def _last_conv(module: nn.Module) -> nn.Module:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]


def he_init(module: nn.Module) -> None:
    """He-normal weights and zero biases for every conv of `module`.

    Why: the students are 13 plain ReLU layers without normalisation; PyTorch's default conv
    init shrinks the signal at every layer until the output is a constant.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)


def _init_output(conv: nn.Module) -> None:
    """Output layer: near-zero weights, bias at the prior, so the map starts near it."""
    nn.init.normal_(conv.weight, std=1e-3)
    nn.init.constant_(conv.bias, FOREGROUND_PRIOR)


def _output(model: nn.Module, raw: Tensor) -> Tensor:
    """The saliency map: linear while training, clipped to [0, 1] in eval and export.

    Why linear: the students learn with an L2 loss (eq. 3-4). Through a sigmoid, sparse
    masks push the logits negative until S(1 - S) vanishes and no pixel gets a gradient
    again; on DAVIS this froze every student at "all background" within 100 iterations.
    SalNet, which the students follow, also regresses its map linearly.
    """
    return raw if model.training else raw.clamp(0.0, 1.0)


def student_shape(size: int, aspect: float = 1.0) -> tuple[int, int]:
    """(height, width) of a student input of about size x size pixels at width:height `aspect`,
    both sides multiples of 4 (two poolings). Aspect 1 is the paper's square; a 16:9 camera
    squeezed into a square shows its objects 1.8x narrower than they are, so at aspect 1.75 a
    128 student reads 96 x 168 at the same cost."""
    if aspect <= 0:
        raise ValueError(f"aspect must be positive, got {aspect}")
    if aspect == 1.0:
        return size, size
    side = math.sqrt(aspect)
    return max(4, round(size / side / 4) * 4), max(4, round(size * side / 4) * 4)


def _check_size(x: Tensor) -> None:
    if x.shape[-1] % 4 or x.shape[-2] % 4:
        raise ValueError(f"SKD inputs must have sides divisible by 4, got {tuple(x.shape[-2:])}")


class _Student(nn.Module):
    """Layers 1-13 on an input of `in_channels`; Ss and St differ only in what they stack."""

    def __init__(self, in_channels: int, input_size: int, widths: SKDWidths | None) -> None:
        super().__init__()
        self.input_size = input_size
        self.widths = w = widths or SKDWidths()
        self.encoder = encoder_layers(in_channels, w)
        self.head = head_layers(w.c3, w)
        he_init(self)
        _init_output(_last_conv(self.head))

    def _saliency(self, x: Tensor) -> Tensor:
        _check_size(x)
        return _output(self, self.head(self.encoder(x)))


class SpatialStudent(_Student):
    """Ss: one RGB frame -> saliency probabilities at the same resolution."""

    def __init__(self, input_size: int = 64, widths: SKDWidths | None = None) -> None:
        super().__init__(3, input_size, widths)

    def forward(self, current: Tensor) -> Tensor:
        return self._saliency(current)


class TemporalStudent(_Student):
    """St: the frame pair as one 6-channel input (current first, previous second)."""

    def __init__(self, input_size: int = 64, widths: SKDWidths | None = None) -> None:
        super().__init__(6, input_size, widths)

    def forward(self, current: Tensor, previous: Tensor) -> Tensor:
        return self._saliency(torch.cat([current, previous], dim=1))


class SpatioTemporalStudent(nn.Module):
    """Sst: spatial stream on the current frame, temporal stream on the pair, fusion head."""

    def __init__(self, input_size: int = 64, widths: SKDWidths | None = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.widths = w = widths or SKDWidths()
        self.spatial = encoder_layers(3, w)
        self.temporal = encoder_layers(6, w)
        self.fusion = head_layers(2 * w.c3, w)
        he_init(self.spatial)
        he_init(self.temporal)
        self.reset_fusion()

    def reset_fusion(self) -> None:
        """Truncated-normal init of the fusion sub-network, as the paper prescribes.

        The standard deviation is He's sqrt(2 / fan_in), cut at two deviations, so the
        five-layer ReLU head does not vanish; the output layer starts at the prior.
        """
        for m in self.fusion.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight[:, 0].numel()
                std = math.sqrt(2.0 / fan_in)
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(m.bias)
        _init_output(_last_conv(self.fusion))

    def forward(self, current: Tensor, previous: Tensor) -> Tensor:
        _check_size(current)
        fs = self.spatial(current)
        ft = self.temporal(torch.cat([current, previous], dim=1))
        return _output(self, self.fusion(torch.cat([fs, ft], dim=1)))


def build_sst_from_students(ss: SpatialStudent, st: TemporalStudent) -> SpatioTemporalStudent:
    """Sst whose streams start as copies of the first eight layers of trained Ss and St.

    The fusion sub-network is freshly initialised (truncated normal); the students are left
    untouched.
    """
    if ss.widths != st.widths or ss.input_size != st.input_size:
        raise ValueError(
            f"Ss and St differ (widths {ss.widths} vs {st.widths}, input "
            f"{ss.input_size} vs {st.input_size}); Sst needs students of one shape"
        )
    sst = SpatioTemporalStudent(ss.input_size, ss.widths)
    sst.spatial.load_state_dict(ss.encoder.state_dict())
    sst.temporal.load_state_dict(st.encoder.state_dict())
    return sst
