"""Video salient-object detection with spatial self-distillation and temporal distillation.

The network of `../shared/papers/000_*` as fixed by NOTES.md: a backbone's four side outputs
plus ASPP give S1..S5; L = Gamma(Cat(S1, S2)) and H = Gamma(Cat(S3, S4, S5)); three
saliency-guided feature embedding units give logits P0, P1, P2. In training, a mutual-attention
inter-frame encoder and a third embedding unit give P3 for an adjacent frame. Deployment runs
one frame to sigmoid(P2) and carries no encoder (`SODNet.deploy`).

Decisions the paper leaves open (recorded in the model card by the exporter):
- ASPP runs at stride 32 on an 8-11 px map at our input sizes, so its dilations are (2, 4, 6)
  rather than DeepLab's (6, 12, 18) at stride 16 on 473 px crops.
- Gamma is a 1x1 conv to the working width then a 3x3 conv (BN + ReLU after each): the 1x1
  keeps the stride-4 low-level block cheap on a CPU.
- Each embedding unit joins a P with features of another stride. The P is resampled to the
  features' size, Phi runs there, and the residual R is resampled back to the P's size, so P2
  keeps the stride-4 detail of P1 while unit 2 reads the stride-16 H.
- Phi is conv3x3-BN-PReLU twice and a plain conv3x3 to one channel (R is a logit residual).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saliency_ros.models.attention import InterFrameEncoder
from saliency_ros.models.backbones import build_backbone


@dataclass(frozen=True)
class SODConfig:
    """Hyper-parameters of the SOD net; defaults are the shipped drone configuration."""

    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    low_channels: int = 32
    high_channels: int = 64
    aspp_channels: int = 64
    aspp_rates: tuple[int, ...] = (2, 4, 6)
    phi_channels: int = 32
    temporal: bool = True


def _resize(x: Tensor, like: Tensor) -> Tensor:
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, dilated 3x3 branches and image pooling."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        branches = [_conv_bn_relu(cin, cout, 1)]
        branches += [_conv_bn_relu(cin, cout, 3, dilation=r) for r in rates]
        self.branches = nn.ModuleList(branches)
        # No BatchNorm on the pooled branch: it sees one value per channel and image.
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True)
        )
        self.project = _conv_bn_relu(cout * (len(branches) + 1), cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        feats = [branch(x) for branch in self.branches]
        feats.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(feats, dim=1))


class Gamma(nn.Module):
    """Gamma(Cat(...)): fuse side outputs resampled to the first one's size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn_relu(cin, cout, 1), _conv_bn_relu(cout, cout, 3))

    def forward(self, feats: list[Tensor]) -> Tensor:
        ref = feats[0]
        return self.body(torch.cat([ref] + [_resize(f, ref) for f in feats[1:]], dim=1))


class EmbeddingUnit(nn.Module):
    """Saliency-guided feature embedding: P_j = P_{j-1} + Phi_j(Cat(P_{j-1}, M))."""

    def __init__(self, feat_channels: int, hidden: int) -> None:
        super().__init__()
        self.phi = nn.Sequential(
            nn.Conv2d(feat_channels + 1, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, 1, 3, padding=1),
        )

    def forward(self, p_prev: Tensor, feat: Tensor) -> Tensor:
        residual = self.phi(torch.cat([_resize(p_prev, feat), feat], dim=1))
        return p_prev + _resize(residual, p_prev)


@dataclass
class SODFeatures:
    """One frame's fused features and logits (at feature resolution)."""

    low: Tensor
    high: Tensor
    logits: list[Tensor]


class SODTrunk(nn.Module):
    """Everything one frame needs to reach P2: backbone, ASPP, Gamma blocks, units 1 and 2."""

    def __init__(self, cfg: SODConfig) -> None:
        super().__init__()
        self.backbone = build_backbone(cfg.backbone, cfg.pretrained)
        c1, c2, c3, c4 = self.backbone.spec.channels
        self.aspp = ASPP(c4, cfg.aspp_channels, cfg.aspp_rates)
        self.gamma_low = Gamma(c1 + c2, cfg.low_channels)
        self.gamma_high = Gamma(c3 + c4 + cfg.aspp_channels, cfg.high_channels)
        self.p0_head = nn.Conv2d(cfg.high_channels, 1, 3, padding=1)
        self.unit1 = EmbeddingUnit(cfg.low_channels, cfg.phi_channels)
        self.unit2 = EmbeddingUnit(cfg.high_channels, cfg.phi_channels)

    def forward(self, x: Tensor) -> SODFeatures:
        s1, s2, s3, s4 = self.backbone(x)
        low = self.gamma_low([s1, s2])
        high = self.gamma_high([s3, s4, self.aspp(s4)])
        p0 = self.p0_head(high)
        p1 = self.unit1(_resize(p0, low), low)
        p2 = self.unit2(p1, high)
        return SODFeatures(low=low, high=high, logits=[p0, p1, p2])


def _upsample(p: Tensor, size: torch.Size) -> Tensor:
    return F.interpolate(p, size=size, mode="bilinear", align_corners=False)


class SODNet(nn.Module):
    """Training-time SOD net. `forward` returns logits upsampled to the input size.

    `forward(frame)` gives {"frame": [P0, P1, P2]}; `forward(frame, adjacent)` adds
    {"adjacent": [P0, P1, P2, P3]} of the adjacent frame, P3 from the inter-frame encoder.
    The adjacent frame goes through the same trunk (shared Phi1/Phi2), P3 through its own unit.
    """

    def __init__(self, config: SODConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or SODConfig()
        self.trunk = SODTrunk(cfg)
        self.encoder: InterFrameEncoder | None = None
        self.unit3: EmbeddingUnit | None = None
        if cfg.temporal:
            self.encoder = InterFrameEncoder(cfg.high_channels)
            self.unit3 = EmbeddingUnit(cfg.high_channels, cfg.phi_channels)

    def forward(self, frame: Tensor, adjacent: Tensor | None = None) -> dict[str, list[Tensor]]:
        size = frame.shape[-2:]
        cur = self.trunk(frame)
        out = {"frame": [_upsample(p, size) for p in cur.logits]}
        if adjacent is not None:
            if self.encoder is None or self.unit3 is None:
                raise RuntimeError("this SODNet was built with temporal=False: no inter-frame encoder")
            adj = self.trunk(adjacent)
            p3 = self.unit3(adj.logits[2], self.encoder(cur.high, adj.high))
            out["adjacent"] = [_upsample(p, size) for p in adj.logits + [p3]]
        return out

    def deploy(self) -> "SODInference":
        """The one-frame network that flies: shares this net's trunk, drops the encoder."""
        return SODInference(self.trunk)


class SODInference(nn.Module):
    """sigmoid(P2) at the input size: the exported SOD model (no inter-frame encoder)."""

    def __init__(self, trunk: SODTrunk) -> None:
        super().__init__()
        self.trunk = trunk

    def forward(self, image: Tensor) -> Tensor:
        p2 = self.trunk(image).logits[2]
        return torch.sigmoid(_upsample(p2, image.shape[-2:]))
