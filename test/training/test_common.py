"""Training loop mechanics: poly schedule, sharded resumable sampler, exact resume."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from saliency_ros.training.common import (LoopConfig, ResumableSampler, Runtime, ShapedBatches, fit, param_groups,
                                         poly_lr, read_log, scheduled_lr)

CPU = Runtime(device=torch.device("cpu"), amp=False)


def test_poly_lr() -> None:
    assert poly_lr(1e-3, 0, 100) == pytest.approx(1e-3)
    assert poly_lr(1e-3, 50, 100) == pytest.approx(1e-3 * 0.5**0.9)
    assert poly_lr(1e-3, 100, 100) == 0.0


def test_sampler_is_deterministic_sharded_and_resumable() -> None:
    a, b = ResumableSampler(10, seed=3, rank=0, world_size=2), ResumableSampler(10, seed=3, rank=1, world_size=2)
    assert sorted(list(a) + list(b)) == list(range(10))
    assert list(a) == list(ResumableSampler(10, seed=3, rank=0, world_size=2))
    full = list(a)
    a.set_position(epoch=0, start=2)
    assert list(a) == full[2:] and len(a) == 3
    a.set_position(epoch=1, start=0)
    assert list(a) != full


class Toy(Dataset):
    """y = 3x + 1 with noise; a dataset of 32 samples."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(32, 1, generator=gen)
        self.y = 3 * self.x + 1 + 0.1 * torch.randn(32, 1, generator=gen)

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


def _loss(model: nn.Module, b: dict) -> torch.Tensor:
    return nn.functional.mse_loss(model(b["x"]), b["y"])


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(1, 1)


def test_resume_from_checkpoint_gives_the_same_next_steps(tmp_path: Path) -> None:
    cfg = LoopConfig(iterations=12, batch_size=4, lr=0.05, checkpoint_every=5, workers=0)
    straight = fit(_model(), Toy(), _loss, cfg, CPU, tmp_path / "a", "a")
    first = fit(_model(), Toy(), _loss, cfg, CPU, tmp_path / "b", "b", stop_at=7)
    assert first.reached == 7 and (tmp_path / "b" / "last.pt").is_file()
    # A fresh process would build a fresh model; the checkpoint restores weights and momentum.
    second = fit(_model(), Toy(), _loss, cfg, CPU, tmp_path / "b", "b")
    assert second.iterations == 5 and second.reached == 12
    resumed = [r["loss"] for r in second.history]
    expected = [r["loss"] for r in straight.history[7:]]
    assert resumed == pytest.approx(expected, rel=1e-6)
    assert [r["iteration"] for r in read_log(tmp_path / "b" / "log.csv")] == list(range(1, 13))
    assert straight.history[-1]["loss"] < straight.history[0]["loss"]


def _slow_loss(model: nn.Module, b: dict) -> torch.Tensor:
    time.sleep(0.01)
    return _loss(model, b)


def test_resume_after_a_kill_logs_each_iteration_once_and_keeps_the_time(tmp_path: Path) -> None:
    """A run killed after its checkpoint (iteration 5) had logged iterations 6-7; they are
    dropped on resume, the log's seconds carry on, and the stage's training time counts both
    calls. Each step sleeps 10 ms, so a clock restarted at 0 would show."""
    cfg = LoopConfig(iterations=12, batch_size=4, lr=0.05, checkpoint_every=5, workers=0)
    fit(_model(), Toy(), _slow_loss, cfg, CPU, tmp_path, "a", stop_at=5)
    at5 = (tmp_path / "last.pt").read_bytes()
    first = fit(_model(), Toy(), _slow_loss, cfg, CPU, tmp_path, "a", stop_at=7)
    (tmp_path / "last.pt").write_bytes(at5)  # killed at 7 before its next checkpoint
    logged = read_log(tmp_path / "log.csv")
    assert [r["iteration"] for r in logged] == list(range(1, 8))
    second = fit(_model(), Toy(), _slow_loss, cfg, CPU, tmp_path, "a")
    assert second.iterations == 7 and second.reached == 12
    rows = read_log(tmp_path / "log.csv")
    assert [r["iteration"] for r in rows] == list(range(1, 13))
    seconds = [r["seconds"] for r in rows]
    assert seconds[4] == logged[4]["seconds"]  # kept as written
    assert seconds == sorted(seconds) and seconds[5] > seconds[4] + 0.005
    assert second.seconds >= logged[4]["seconds"] and second.seconds >= seconds[-1]
    assert first.seconds >= logged[4]["seconds"]


def test_resume_refuses_a_checkpoint_of_another_schedule(tmp_path: Path) -> None:
    """More iterations change a poly decay's rates: resuming would mix two schedules. Bookkeeping
    (checkpoint interval, loader workers) may change between sessions."""
    cfg = LoopConfig(iterations=12, batch_size=4, lr=0.05, checkpoint_every=5, workers=0)
    fit(_model(), Toy(), _loss, cfg, CPU, tmp_path, "a", stop_at=5)
    longer = dataclasses.replace(cfg, iterations=24)
    with pytest.raises(ValueError, match=r"another schedule.*'iterations': \(12, 24\)"):
        fit(_model(), Toy(), _loss, longer, CPU, tmp_path, "a")
    bookkeeping = dataclasses.replace(cfg, checkpoint_every=3)
    assert fit(_model(), Toy(), _loss, bookkeeping, CPU, tmp_path, "a").reached == 12


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_ema_returns_the_moving_average_of_the_steps_and_resumes_to_the_same(tmp_path: Path) -> None:
    """With `ema` d the stage returns E = d * E + (1 - d) * W after every step (E = W after the
    first), W being the weights a plain run reaches step by step; stopped and resumed, the
    average comes back from the checkpoint and ends the same."""
    cfg = LoopConfig(iterations=6, batch_size=4, lr=0.05, checkpoint_every=4, workers=0)
    plain, steps = _model(), []
    for i in range(1, 7):
        fit(plain, Toy(), _loss, cfg, CPU, tmp_path / "plain", "plain", stop_at=i)
        steps.append(_flat(plain).clone())
    expected = steps[0]
    for w in steps[1:]:
        expected = 0.5 * expected + 0.5 * w
    ema = dataclasses.replace(cfg, ema=0.5)
    straight = _model()
    fit(straight, Toy(), _loss, ema, CPU, tmp_path / "ema", "ema")
    assert _flat(straight) == pytest.approx(expected, abs=1e-6)
    assert (_flat(straight) - steps[-1]).abs().max() > 1e-3  # not the last step
    fit(_model(), Toy(), _loss, ema, CPU, tmp_path / "resumed", "resumed", stop_at=3)
    resumed = _model()  # a fresh process: weights and average both from the checkpoint
    fit(resumed, Toy(), _loss, ema, CPU, tmp_path / "resumed", "resumed")
    assert _flat(resumed) == pytest.approx(_flat(straight), abs=1e-7)
    with pytest.raises(ValueError, match=r"another schedule.*'ema': \(0.5, None\)"):
        fit(_model(), Toy(), _loss, cfg, CPU, tmp_path / "resumed", "resumed")


def test_non_finite_loss_stops_with_the_iteration(tmp_path: Path) -> None:
    cfg = LoopConfig(iterations=3, batch_size=4, lr=0.05, workers=0)
    with pytest.raises(FloatingPointError, match="iteration 0"):
        fit(_model(), Toy(), lambda m, b: _loss(m, b) * float("nan"), cfg, CPU, tmp_path, "nan")


def test_head_learning_rate_and_schedules(tmp_path: Path) -> None:
    """Parameters under a `backbone` keep the base rate; the rest get head_lr_mult times it;
    poly decays both, constant keeps them."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Linear(1, 1)
            self.head = nn.Linear(1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.backbone(x))

    groups = param_groups(Net(), 10.0)
    assert [len(g["params"]) for g in groups] == [2, 2] and [g["lr_mult"] for g in groups] == [1.0, 10.0]
    assert len(param_groups(_model(), 10.0)) == 1  # no backbone: one group at the head rate
    for schedule, optimizer in (("poly", "adam"), ("constant", "sgd")):
        cfg = LoopConfig(iterations=4, batch_size=4, lr=0.01, optimizer=optimizer, schedule=schedule,
                         head_lr_mult=10.0, workers=0)
        net = Net()
        fit(net, Toy(), _loss, cfg, CPU, tmp_path / schedule, schedule)
        rates = [r["lr"] for r in read_log(tmp_path / schedule / "log.csv")]
        assert rates == ([pytest.approx(poly_lr(0.01, i, 4)) for i in range(4)] if schedule == "poly" else [0.01] * 4)
        assert [scheduled_lr(cfg, 3) * g for g in (1.0, 10.0)] == [pytest.approx(rates[3]), pytest.approx(10 * rates[3])]
    with pytest.raises(ValueError, match="schedule must be one of"):
        fit(Net(), Toy(), _loss, LoopConfig(iterations=1, batch_size=4, lr=0.1, schedule="cosine", workers=0),
            CPU, tmp_path / "bad", "bad")


class _NormNet(nn.Module):
    """A trunk with BatchNorm under a head: what SOD stage 2 fine-tunes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4))
        self.head = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def test_frozen_submodules_keep_weights_and_statistics_and_train_again_afterwards(tmp_path: Path) -> None:
    net = _NormNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = LoopConfig(iterations=4, batch_size=8, lr=0.05, optimizer="adam", workers=0, frozen=("trunk",))
    fit(net, Toy(), _loss, cfg, CPU, tmp_path / "trunk", "trunk")
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("head.") for k in changed)  # running stats included
    assert "head.0.running_mean" in changed and "head.1.weight" in changed
    assert all(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="no submodule 'encoder'"):
        fit(_NormNet(), Toy(), _loss, dataclasses.replace(cfg, frozen=("encoder",)), CPU, tmp_path / "bad", "bad")


def test_freeze_bn_keeps_running_statistics_while_weights_train(tmp_path: Path) -> None:
    net = _NormNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = LoopConfig(iterations=4, batch_size=8, lr=0.05, optimizer="adam", workers=0, freeze_bn=True)
    fit(net, Toy(), _loss, cfg, CPU, tmp_path, "bn")
    after = net.state_dict()
    stats = [k for k in before if "running" in k or "num_batches" in k]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    assert not torch.equal(before["trunk.0.weight"], after["trunk.0.weight"])
    assert not torch.equal(before["head.0.weight"], after["head.0.weight"])  # BN affine still trains


def test_checkpoints_without_the_freezing_keys_still_resume(tmp_path: Path) -> None:
    """Checkpoints written before `frozen`/`freeze_bn` existed hold a loop without them."""
    cfg = LoopConfig(iterations=6, batch_size=4, lr=0.05, checkpoint_every=3, workers=0)
    fit(_model(), Toy(), _loss, cfg, CPU, tmp_path, "a", stop_at=3)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert "frozen" not in state["loop"] and "freeze_bn" not in state["loop"]
    with pytest.raises(ValueError, match="another schedule"):
        fit(_model(), Toy(), _loss, dataclasses.replace(cfg, freeze_bn=True), CPU, tmp_path, "a")
    assert fit(_model(), Toy(), _loss, cfg, CPU, tmp_path, "a").reached == 6


class Squares(Dataset):
    """3-channel 8 x 8 images, each with a bright square at its own place, and the square's mask."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = torch.zeros(3, 8, 8)
        r, c = divmod(i, 4)
        x[:, r:r + 4, c:c + 4] = 1.0
        return {"x": x, "y": x[:1].clone()}


def _conv_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))


def test_channels_last_trains_the_same_steps_in_nhwc_and_hands_back_nchw(tmp_path: Path) -> None:
    """`channels_last` runs the batch and the convolutions' weights in NHWC: the same loss step
    by step, to rounding; the net leaves `fit` in the usual layout for the export; a run is
    resumed only with the setting it started with."""
    layouts: list[tuple[bool, bool]] = []

    def loss(model: nn.Module, b: dict) -> torch.Tensor:
        nhwc = torch.channels_last
        layouts.append((b["x"].is_contiguous(memory_format=nhwc), model[0].weight.is_contiguous(memory_format=nhwc)))
        return nn.functional.binary_cross_entropy_with_logits(model(b["x"]), b["y"])

    cfg = LoopConfig(iterations=8, batch_size=4, lr=0.01, optimizer="adam", checkpoint_every=4, workers=0)
    plain = fit(_conv_model(), Squares(), loss, cfg, CPU, tmp_path / "nchw", "nchw")
    assert layouts == [(False, False)] * 8
    layouts.clear()
    nhwc_cfg = dataclasses.replace(cfg, channels_last=True)
    model = _conv_model()
    nhwc = fit(model, Squares(), loss, nhwc_cfg, CPU, tmp_path / "nhwc", "nhwc")
    assert layouts == [(True, True)] * 8
    assert [r["loss"] for r in nhwc.history] == pytest.approx([r["loss"] for r in plain.history], rel=1e-5)
    assert plain.history[-1]["loss"] < plain.history[0]["loss"]
    assert all(p.is_contiguous() for p in model.parameters())
    fit(_conv_model(), Squares(), loss, nhwc_cfg, CPU, tmp_path / "resumed", "resumed", stop_at=4)
    with pytest.raises(ValueError, match=r"another schedule.*'channels_last': \(True, None\)"):
        fit(_conv_model(), Squares(), loss, cfg, CPU, tmp_path / "resumed", "resumed")
    assert fit(_conv_model(), Squares(), loss, nhwc_cfg, CPU, tmp_path / "resumed", "resumed").reached == 8


class ShapedToy(Dataset):
    """Items are (index, (height, width)): a constant image of the index at that shape."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, item: tuple[int, tuple[int, int]]) -> dict[str, torch.Tensor]:
        i, (h, w) = item
        return {"x": torch.full((1, h, w), float(i) / 32), "y": torch.full((1,), 3.0 * i / 32 + 1)}


def _shaped_loss(model: nn.Module, b: dict) -> torch.Tensor:
    return nn.functional.mse_loss(model(b["x"].mean(dim=(2, 3))), b["y"])


def test_shaped_batches_draw_one_shape_per_batch_and_resume_to_the_same_draws() -> None:
    shapes = ((4, 4), (2, 6), (3, 5))
    sampler = ResumableSampler(10, seed=1)
    batches = list(ShapedBatches(sampler, 3, shapes, seed=7))
    assert len(batches) == 3 == len(ShapedBatches(sampler, 3, shapes, seed=7))  # the last 1 dropped
    assert [i for b in batches for i, _ in b] == list(sampler)[:9]
    for b in batches:
        assert len({s for _, s in b}) == 1 and b[0][1] in shapes
    sampler.set_position(epoch=0, start=3)  # resumed at batch 1
    assert list(ShapedBatches(sampler, 3, shapes, seed=7)) == batches[1:]
    draws = []
    for epoch in range(8):
        sampler.set_position(epoch, 0)
        draws += [b[0][1] for b in ShapedBatches(sampler, 3, shapes, seed=7)]
    assert set(draws) == set(shapes)  # 24 draws reach every shape
    with pytest.raises(ValueError, match="at least one shape"):
        ShapedBatches(sampler, 3, (), seed=7)


def test_fit_with_shapes_feeds_each_batch_at_its_shape_and_resumes_exactly(tmp_path: Path) -> None:
    seen: list[tuple[int, ...]] = []

    def loss(model: nn.Module, b: dict) -> torch.Tensor:
        seen.append(tuple(b["x"].shape))
        return _shaped_loss(model, b)

    cfg = LoopConfig(iterations=10, batch_size=4, lr=0.05, checkpoint_every=4, workers=0, shapes=((4, 4), (2, 6)))
    straight = fit(_model(), ShapedToy(), loss, cfg, CPU, tmp_path / "a", "a")
    assert {s[2:] for s in seen} == {(4, 4), (2, 6)} and all(s[0] == 4 for s in seen)
    fit(_model(), ShapedToy(), _shaped_loss, cfg, CPU, tmp_path / "b", "b", stop_at=4)
    resumed = fit(_model(), ShapedToy(), _shaped_loss, cfg, CPU, tmp_path / "b", "b")
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in straight.history[4:]], rel=1e-6)
    with pytest.raises(ValueError, match="another schedule"):  # the shapes are part of the schedule
        fit(_model(), ShapedToy(), _shaped_loss, dataclasses.replace(cfg, shapes=((4, 4),)), CPU, tmp_path / "b", "b")
