"""SKD students: sizes, parameter budget, pair order and the Sst build from trained students."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from saliency_ros.models.skd import (
    SKDWidths,
    SpatialStudent,
    SpatioTemporalStudent,
    TemporalStudent,
    build_sst_from_students,
    student_shape,
)


def _layers(seq: nn.Sequential) -> list[nn.Module]:
    """Layers as the paper counts them: convs, pools and transposed convs (not ReLUs)."""
    return [m for m in seq if not isinstance(m, nn.ReLU)]


def test_sst_has_paper_parameter_budget() -> None:
    params = sum(p.numel() for p in SpatioTemporalStudent().parameters())
    assert abs(params - 300_000) / 300_000 <= 0.15, params


def _field_of_view(widths: SKDWidths) -> tuple[int, int]:
    """Rows and columns of the input pair that the centre output pixel of a 128 Sst depends on."""
    torch.manual_seed(0)
    net = SpatioTemporalStudent(128, widths).train()  # linear output: no clipped gradient
    x, y = (torch.rand(1, 3, 128, 128, requires_grad=True) for _ in range(2))
    net(x, y)[0, 0, 64, 64].backward()
    touched = (x.grad.abs().sum(dim=(0, 1)) + y.grad.abs().sum(dim=(0, 1))) > 0
    rows, cols = touched.any(1).nonzero(), touched.any(0).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_dilations_widen_the_field_of_view_with_the_same_weights() -> None:
    dilated = SKDWidths(dilations=(2, 4, 2, 4))
    assert _field_of_view(SKDWidths()) == (56, 56)
    assert _field_of_view(dilated) == (120, 120)
    count = [sum(p.numel() for p in SpatioTemporalStudent(128, w).parameters()) for w in (SKDWidths(), dilated)]
    assert count[0] == count[1]
    assert SKDWidths(dilations=[2, 4, 2, 4]) == dilated  # as a card's JSON gives them
    for bad in ((1, 2), (0, 1, 1, 1)):
        with pytest.raises(ValueError, match="four positive integers"):
            SKDWidths(dilations=bad)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_output_is_probability_map_at_input_size(size: int) -> None:
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, size, size), torch.rand(2, 3, size, size)
    with torch.no_grad():
        outs = (SpatialStudent(size).eval()(x), TemporalStudent(size).eval()(x, y),
                SpatioTemporalStudent(size).eval()(x, y))
    for out in outs:
        assert out.shape == (2, 1, size, size)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("aspect", [1.75, 16 / 9, 4 / 3, 0.75])
def test_student_shape_keeps_the_pixels_at_the_aspect_on_a_grid_of_four(size: int, aspect: float) -> None:
    h, w = student_shape(size, aspect)
    assert h % 4 == 0 and w % 4 == 0
    assert abs(h * w / size**2 - 1) < 0.12  # sides rounded to 4 px: 24 x 44 for 32 at 1.75
    assert abs(w / h / aspect - 1) < 0.1
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        assert SpatioTemporalStudent(size).eval()(x, x).shape == (1, 1, h, w)  # fully convolutional


def test_student_shape_of_the_shipped_aspect_and_the_square() -> None:
    assert student_shape(128, 1.75) == (96, 168) and student_shape(64, 1.75) == (48, 84)
    assert student_shape(128) == (128, 128)
    with pytest.raises(ValueError, match="aspect must be positive"):
        student_shape(64, 0.0)


def test_students_have_thirteen_layers_with_pools_at_three_and_five() -> None:
    ss = SpatialStudent()
    layers = _layers(ss.encoder) + _layers(ss.head)
    assert len(layers) == 13
    assert isinstance(layers[2], nn.MaxPool2d) and isinstance(layers[4], nn.MaxPool2d)
    assert layers[8].kernel_size == (1, 1)  # layer 9 reduces channels
    assert all(isinstance(m, nn.ConvTranspose2d) for m in layers[11:])
    assert len(_layers(ss.encoder)) == 8
    assert TemporalStudent().encoder[0].in_channels == 6


def test_pair_order_is_current_then_previous() -> None:
    """The spatial stream sees the first input: only it changes the spatial features."""
    torch.manual_seed(0)
    sst = SpatioTemporalStudent().eval()
    cur, prev = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    spatial_in = []
    sst.spatial.register_forward_hook(lambda _m, inp, _o: spatial_in.append(inp[0]))
    sst(cur, prev)
    torch.testing.assert_close(spatial_in[0], cur)
    assert not torch.allclose(sst(cur, prev), sst(prev, cur))


def test_build_sst_copies_first_eight_layers_and_reinitialises_fusion() -> None:
    torch.manual_seed(0)
    ss, st = SpatialStudent(), TemporalStudent()
    sst = build_sst_from_students(ss, st)
    for a, b in zip(sst.spatial.state_dict().values(), ss.encoder.state_dict().values()):
        torch.testing.assert_close(a, b)
    for a, b in zip(sst.temporal.state_dict().values(), st.encoder.state_dict().values()):
        torch.testing.assert_close(a, b)
    # The copy is deep: training Sst must not change the students.
    with torch.no_grad():
        sst.spatial[0].weight.add_(1.0)
    assert not torch.allclose(sst.spatial[0].weight, ss.encoder[0].weight)
    # Fusion weights follow the truncated normal: within two He deviations.
    conv = sst.fusion[0]
    bound = 2 * (2.0 / conv.weight[0].numel()) ** 0.5
    assert float(conv.weight.detach().abs().max()) <= bound + 1e-6


def test_build_sst_rejects_students_of_different_shapes() -> None:
    with pytest.raises(ValueError, match="Sst needs students of one shape"):
        build_sst_from_students(SpatialStudent(64), TemporalStudent(32))


def test_input_sides_must_divide_by_four() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        SpatialStudent()(torch.rand(1, 3, 62, 64))


@pytest.mark.parametrize("cls", [SpatialStudent, TemporalStudent, SpatioTemporalStudent])
def test_fresh_students_start_at_the_prior_without_vanishing(cls) -> None:
    """The default PyTorch init collapsed the 13-layer students to a constant output."""
    from saliency_ros.models.skd import FOREGROUND_PRIOR

    torch.manual_seed(0)
    model = cls(64)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.encoder(x) if cls is SpatialStudent else (
            model.encoder(torch.cat([x, x], 1)) if cls is TemporalStudent else model.spatial(x))
        out = model(x) if cls is SpatialStudent else model(x, x)
    assert float(feats.std()) > 0.1, "layer-8 features vanish"
    assert float(out.mean()) == pytest.approx(FOREGROUND_PRIOR, abs=0.02)


def test_map_is_linear_in_training_and_clipped_in_eval() -> None:
    """L2 through a sigmoid froze the students at "all background" on DAVIS; train linear."""
    torch.manual_seed(0)
    ss = SpatialStudent(32)
    with torch.no_grad():
        ss.head[-1].bias.fill_(-0.5)  # push the raw map below zero
        x = torch.rand(1, 3, 32, 32)
        raw = ss.train()(x)
        clipped = ss.eval()(x)
    assert float(raw.max()) < 0.0
    assert float(clipped.min()) == 0.0 and float(clipped.max()) == 0.0
