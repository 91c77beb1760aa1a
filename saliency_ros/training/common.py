"""What every training procedure shares: device and AMP, distributed set-up, a resumable
sampler, the iteration loop with checkpoints, and the CSV/JSON logs and loss plot.

One command runs on a CPU-only machine, on one GPU (with AMP), and under `torchrun` on several
GPUs or machines (DistributedDataParallel; each rank reads its shard of every epoch).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm import tqdm


@dataclass(frozen=True)
class Runtime:
    """Where training runs: device, AMP, and this process's place among the ranks."""

    device: torch.device
    amp: bool
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """Hardware as recorded in model cards."""
        info: dict[str, Any] = {"device": str(self.device), "world_size": self.world_size,
                                "amp": self.amp, "cpu_threads": torch.get_num_threads(),
                                "host": platform.node(), "torch": torch.__version__}
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        else:
            info["cpu"] = _cpu_model()
        return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def setup_runtime(prefer_cuda: bool = True) -> Runtime:
    """Pick CUDA (with AMP) when present, and join the process group under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = prefer_cuda and torch.cuda.is_available()
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Runtime(device=device, amp=use_cuda, rank=rank, world_size=world_size)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def poly_lr(base_lr: float, iteration: int, max_iterations: int, power: float = 0.9) -> float:
    """The papers' poly schedule: base * (1 - iter / max_iter) ** power."""
    return base_lr * (1.0 - min(iteration, max_iterations) / max_iterations) ** power


class ResumableSampler(Sampler[int]):
    """Shuffled indices per epoch from (seed, epoch), sharded by rank, startable mid-epoch.

    Resuming at iteration i of an epoch starts at batch i, so a resumed run sees exactly the
    samples an uninterrupted one would.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def shard(self) -> list[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start :])

    def __len__(self) -> int:
        return max(len(self.shard()) - self.start, 0)


class ShapedBatches(Sampler[list[tuple[int, tuple[int, int]]]]):
    """Batches of `sampler`'s indices, each index paired with the batch's (height, width),
    drawn from `shapes` per (seed, epoch, batch number): a resumed run draws what an
    uninterrupted one would. A dataset that takes `(index, shape)` items builds every sample
    of a batch at its shape, so the batch stacks. Incomplete last batches are dropped."""

    def __init__(self, sampler: ResumableSampler, batch_size: int, shapes: tuple[tuple[int, int], ...],
                 seed: int) -> None:
        if not shapes:
            raise ValueError("ShapedBatches needs at least one shape")
        self.sampler, self.batch_size, self.shapes, self.seed = sampler, batch_size, shapes, seed

    def __iter__(self) -> Iterator[list[tuple[int, tuple[int, int]]]]:
        indices = list(self.sampler)
        first = self.sampler.start // self.batch_size
        for k in range(len(indices) // self.batch_size):
            rng = np.random.default_rng((self.seed, self.sampler.epoch, first + k))
            shape = tuple(self.shapes[int(rng.integers(len(self.shapes)))])
            yield [(i, shape) for i in indices[k * self.batch_size : (k + 1) * self.batch_size]]

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size


class StoppedEarly(RuntimeError):
    """A stage stopped at its `stop_at`; its checkpoint lets the same command resume."""


@dataclass
class LoopConfig:
    """An iteration-based stage: optimiser settings, schedule and bookkeeping."""

    iterations: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"  # "sgd" (momentum, weight decay) or "adam"
    schedule: str = "poly"  # "poly" (the papers' decay to 0) or "constant"
    head_lr_mult: float = 1.0  # lr of parameters outside a pretrained `backbone`, relative to lr
    momentum: float = 0.9
    weight_decay: float = 0.0
    checkpoint_every: int = 200
    workers: int = 1
    seed: int = 0
    # Fine-tuning on few clips (SOD stage 2: DAVIS pairs, batch 8) can undo what the stage before
    # learned: `frozen` submodules (e.g. "trunk") keep their weights and BatchNorm statistics;
    # `freeze_bn` keeps every BatchNorm's running statistics while the weights still train.
    frozen: tuple[str, ...] = ()
    freeze_bn: bool = False
    # A stage that ends at a constant rate returns its last noisy step; with `ema` (the decay,
    # e.g. 0.99: about the last 100 steps) it returns an exponential moving average of its
    # weights instead (torch's AveragedModel, buffers included). 0 = off.
    ema: float = 0.0
    # (height, width) shapes the batches are drawn at, one per batch from (seed, epoch, batch):
    # a net that flies at other shapes than its training square (the SOD net at 224 x 320 for
    # the mask, 128 x 256 for /saliency) sees objects at the scales and aspects it will meet.
    # Empty: every batch at the dataset's own shape. Measured, not kept (docs/training_levers.md §5).
    shapes: tuple[tuple[int, int], ...] = ()
    # Train with the batch and the weights in NHWC (torch.channels_last), the layout oneDNN's CPU
    # convolutions work in, so no reorder runs around each one: the same arithmetic summed in
    # another order, 1.3-1.7x faster per step here. Floats round differently, so a run resumes
    # only under the setting it started with (the checkpoint's schedule records it).
    # Measured: docs/training_levers.md §27.
    channels_last: bool = False


@dataclass
class LoopResult:
    iterations: int  # run by this call
    reached: int  # iteration the stage stands at now (== LoopConfig.iterations when done)
    seconds: float  # training time of the stage so far, over every call that resumed it
    last_loss: float
    history: list[dict[str, float]] = field(default_factory=list)


SCHEDULES = ("poly", "constant")


def param_groups(model: nn.Module, head_lr_mult: float) -> list[dict[str, Any]]:
    """Backbone parameters at the base rate, the rest (new, randomly initialised) at
    `head_lr_mult` times it. Each group carries its `lr_mult` for the schedule."""
    backbone, head = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if "backbone." in f".{name}" else head).append(p)
    groups = [{"params": backbone, "lr_mult": 1.0}, {"params": head, "lr_mult": head_lr_mult}]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, cfg: LoopConfig) -> torch.optim.Optimizer:
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
    groups = param_groups(model, cfg.head_lr_mult)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")


def scheduled_lr(cfg: LoopConfig, iteration: int) -> float:
    """The base rate at `iteration` (groups scale it by their `lr_mult`)."""
    return poly_lr(cfg.lr, iteration, cfg.iterations) if cfg.schedule == "poly" else cfg.lr


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# LoopConfig fields that do not change what a stage learns: a run may resume with others.
_BOOKKEEPING = ("checkpoint_every", "workers")
# Keys added after checkpoints were first written: recorded only when set, so a checkpoint
# written before them (without them) still resumes under a recipe that leaves them unset.
_OPTIONAL = {"frozen": (), "freeze_bn": False, "ema": 0.0, "shapes": (), "channels_last": False}


def _schedule(cfg: LoopConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(cfg).items()
            if k not in _BOOKKEEPING and not (k in _OPTIONAL and v == _OPTIONAL[k])}


def freeze(model: nn.Module, cfg: LoopConfig) -> list[nn.Parameter]:
    """Apply `cfg.frozen` and `cfg.freeze_bn` to a model in train mode; returns the parameters
    it stopped, which `fit` lets train again when the stage ends."""
    stopped = []
    for name in cfg.frozen:
        try:
            module = model.get_submodule(name)
        except AttributeError as err:
            raise ValueError(f"frozen: {type(model).__name__} has no submodule {name!r}") from err
        module.eval()
        stopped += [p for p in module.parameters() if p.requires_grad]
    for p in stopped:
        p.requires_grad_(False)
    if cfg.freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return stopped


def folded_batchnorms(model: nn.Module) -> list[str]:
    """Names of the BatchNorms that hold a folded identity: the exporter folds every BatchNorm
    into its convolution, and `training.reshape.sod_from_onnx` reads each back as mean 0,
    variance 1 - eps (a fresh layer has variance 1), scale 1, shift = the folded bias."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None and m.weight is not None
            and bool((m.running_mean == 0).all()) and bool((m.running_var == 1.0 - m.eps).all())
            and bool((m.weight == 1).all())]


@torch.no_grad()
def unfold_batchnorms(model: nn.Module, dataset: Dataset, loss_fn: Callable[[nn.Module, dict[str, Any]], torch.Tensor],
                      batch_size: int, device: torch.device, batches: int = 48, seed: int = 0) -> list[str]:
    """Give each folded BatchNorm (`folded_batchnorms`) the mean and variance of its input over
    `batches` batches of `dataset`, and the scale and shift that keep its eval-mode output as
    it was (scale sqrt(var + eps), shift + mean). Why: in train mode a BatchNorm normalises by
    its batch, so a folded identity would rescale every activation and the first steps would
    undo the trained net (session 15: DAVIS F-max 0.81 -> 0.64 after 1,000 steps). The batches
    run through `loss_fn` in eval mode, where a folded layer is exactly the identity it
    replaces, so every layer's statistics come from one pass. Returns the names unfolded."""
    names = set(folded_batchnorms(model))
    sums: dict[str, list[Any]] = {}

    def collect(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].double().transpose(0, 1).flatten(1)
            acc = sums.setdefault(name, [0.0, 0.0, 0])
            acc[0], acc[1], acc[2] = acc[0] + x.sum(1), acc[1] + (x * x).sum(1), acc[2] + x.shape[1]
        return hook

    modules = dict(model.named_modules())
    hooks = [modules[n].register_forward_pre_hook(collect(n)) for n in names]
    modes = {m: m.training for m in modules.values()}  # frozen submodules stay in eval mode after
    model.eval()
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    loader = DataLoader(Subset(dataset, order[: batches * batch_size]), batch_size=batch_size, drop_last=True)
    try:
        for batch in loader:
            loss_fn(model, {k: _to(v, device, torch.contiguous_format) for k, v in batch.items()})
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes.items():
            m.training = training
    for name, (total, squares, count) in sums.items():  # a layer the loss never reaches stays folded
        m = modules[name]
        mean = total / count
        var = (squares / count - mean * mean).clamp(min=0)
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.weight.copy_(torch.sqrt(var + m.eps))
        m.bias.add_(mean.to(m.bias.dtype))
    return sorted(sums)


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, iteration: int, cfg: LoopConfig,
                    averaged: AveragedModel | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    state = {"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
             "scaler": scaler.state_dict(), "iteration": iteration,
             "torch_rng": torch.get_rng_state(), "loop": _schedule(cfg)}
    if averaged is not None:
        state["averaged"] = averaged.state_dict()
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a killed run never leaves half a checkpoint


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, cfg: LoopConfig, averaged: AveragedModel | None = None) -> int:
    """Restore a checkpoint written by `save_checkpoint`; returns the iteration to resume at.

    A checkpoint written under another schedule (say, more iterations: a poly decay then runs
    at other rates) is refused: resuming would give weights no recipe describes.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved, now = state.get("loop"), _schedule(cfg)  # checkpoints before this check hold no loop
    if saved is not None and saved != now:
        changed = {k: (saved.get(k), now.get(k)) for k in now.keys() | saved.keys() if saved.get(k) != now.get(k)}
        raise ValueError(f"{path} was written with another schedule (checkpoint, recipe): {changed}; "
                         "resume with the recipe it was started with, or train into a new run folder")
    _unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    if averaged is not None:  # the schedule check above guarantees the checkpoint holds one
        averaged.load_state_dict(state["averaged"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["iteration"])


def fit(
    model: nn.Module,
    dataset: Dataset,
    loss_fn: Callable[[nn.Module, dict[str, Any]], torch.Tensor],
    cfg: LoopConfig,
    run: Runtime,
    out_dir: Path,
    desc: str,
    stop_at: int | None = None,
) -> LoopResult:
    """Train for `cfg.iterations` batches, checkpointing to `out_dir/last.pt` and resuming from
    it when present; logs every iteration to `out_dir/log.csv`.

    `stop_at` ends the call early (with a checkpoint) without changing the schedule, so a long
    run can be split over several sessions and continue exactly where it stopped. With
    `cfg.ema`, the model ends the stage holding the average (the checkpoint keeps both).
    """
    end = min(stop_at, cfg.iterations) if stop_at is not None else cfg.iterations
    out_dir.mkdir(parents=True, exist_ok=True)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(run.device, memory_format=memory_format).train()
    stopped = freeze(model, cfg)
    ckpt = out_dir / "last.pt"
    folded = [n for n in folded_batchnorms(model) if model.get_submodule(n).training]
    if folded and not ckpt.is_file():  # a checkpoint holds trained statistics already
        unfolded = unfold_batchnorms(model, dataset, loss_fn, cfg.batch_size, run.device, seed=cfg.seed)
        tqdm.write(f"{desc}: {len(unfolded)} BatchNorms read back from an export got the statistics of "
                   f"their inputs before training (training.common.unfold_batchnorms)")
    if run.world_size > 1:
        # Stage 1 of the SOD net leaves the inter-frame encoder unused.
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[run.device.index] if run.device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    optimizer = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(run.device.type, enabled=run.amp)
    averaged = (AveragedModel(_unwrap(model), multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
                if cfg.ema else None)
    start = load_checkpoint(ckpt, model, optimizer, scaler, cfg, averaged) if ckpt.is_file() else 0
    sampler = ResumableSampler(len(dataset), cfg.seed, run.rank, run.world_size)
    per_epoch = max(len(sampler.shard()) // cfg.batch_size, 1)
    log_path = out_dir / "log.csv"
    history: list[dict[str, float]] = []
    offset = _resume_log(log_path, start)
    t0 = time.perf_counter() - offset  # the log's seconds run on across resumes
    it = start
    loss_value = float("nan")
    with tqdm(total=cfg.iterations, initial=start, desc=desc, disable=not run.is_main,
              dynamic_ncols=True) as bar:
        while it < end:
            epoch, offset = divmod(it, per_epoch)
            sampler.set_position(epoch, offset * cfg.batch_size)
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            batching: dict[str, Any] = (
                {"batch_sampler": ShapedBatches(sampler, cfg.batch_size, cfg.shapes, cfg.seed)} if cfg.shapes
                else {"batch_size": cfg.batch_size, "sampler": sampler, "drop_last": True})
            loader = DataLoader(dataset, **batching, num_workers=cfg.workers,
                                persistent_workers=False, pin_memory=run.device.type == "cuda")
            for batch in loader:
                lr = scheduled_lr(cfg, it)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_mult"]
                batch = {k: _to(v, run.device, memory_format) for k, v in batch.items()}
                with torch.autocast(run.device.type, enabled=run.amp):
                    loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{desc}: loss became {loss.item()} at iteration {it}")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if averaged is not None:
                    averaged.update_parameters(_unwrap(model))
                it += 1
                loss_value = float(loss.detach())
                row = {"iteration": it, "epoch": epoch, "loss": loss_value, "lr": lr,
                       "seconds": round(time.perf_counter() - t0, 3)}
                history.append(row)
                if run.is_main:
                    _append_csv(log_path, row)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
                    if it % cfg.checkpoint_every == 0 or it == end:
                        save_checkpoint(ckpt, model, optimizer, scaler, it, cfg, averaged)
                if it >= end:
                    break
    for p in stopped:
        p.requires_grad_(True)
    if averaged is not None and it >= cfg.iterations:  # the stage's weights are the average
        _unwrap(model).load_state_dict(averaged.module.state_dict())
    model.to(memory_format=torch.contiguous_format)  # what the next stage and the export expect
    return LoopResult(it - start, it, time.perf_counter() - t0, loss_value, history)


def _to(value: Any, device: torch.device, memory_format: torch.memory_format) -> Any:
    """A batch entry on `device`; images (4-D) in `memory_format`, other tensors as they are."""
    if not torch.is_tensor(value):
        return value
    value = value.to(device, non_blocking=True)
    return value.contiguous(memory_format=memory_format) if value.dim() == 4 else value


def _resume_log(path: Path, start: int) -> float:
    """Make the log end at the checkpoint's iteration `start` and return its elapsed seconds.

    A run killed between checkpoints logged iterations the checkpoint does not hold; they are
    dropped, so the resumed run logs each iteration once. The kept seconds carry on, so a stage
    trained over several sessions reports its whole training time.
    """
    if not path.exists():
        return 0.0
    if start == 0:
        path.unlink()
        return 0.0
    with path.open() as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    kept = [row for row in rows if int(row["iteration"]) <= start]
    if len(kept) < len(rows):  # rewritten at once, atomically as the checkpoints are
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields or [])
            writer.writeheader()
            writer.writerows(kept)  # as written: the values stay the strings they were
        tmp.replace(path)
    return float(kept[-1]["seconds"]) if kept else 0.0


def _append_csv(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def read_log(path: Path) -> list[dict[str, float]]:
    with path.open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def stage_done(stage_dir: Path) -> bool:
    """A stage is finished when both its weights and its record (metrics, time) are written."""
    return (stage_dir / "model.pt").is_file() and (stage_dir / "stage.json").is_file()


def read_stage(stage_dir: Path) -> dict[str, Any]:
    """The record a finished stage wrote: re-runs reuse it instead of measuring again."""
    return json.loads((stage_dir / "stage.json").read_text())


def plot_losses(logs: dict[str, Path], out: Path) -> None:
    """One panel per stage: loss per iteration and its running mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(logs), 4)
    rows_n = -(-len(logs) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False)
    for ax in axes.flat[len(logs):]:
        ax.axis("off")
    for ax, (name, path) in zip(axes.flat, logs.items()):
        rows = read_log(path)
        its = np.array([r["iteration"] for r in rows])
        loss = np.array([r["loss"] for r in rows])
        window = max(len(loss) // 50, 1)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(its, loss, alpha=0.3, lw=0.8, label="batch")
        ax.plot(its[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
