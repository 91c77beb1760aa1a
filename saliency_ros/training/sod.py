"""SOD net training (paper 000): stage 1 on single frames, stage 2 with spatial distillation,
the inter-frame encoder and temporal distillation, fine-tuned from stage 1.

Stage 2 feeds pairs as (frame = previous, adjacent = current): P3, the encoder's output, is
then the current frame's map informed by the previous one, which is exactly the temporal
teacher the SKD students learn from (`training/skd.py`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from saliency_ros.models import create_model
from saliency_ros.models.losses import GROUND_TRUTH_LOSSES, spatial_distillation_loss, temporal_distillation_loss
from saliency_ros.models.sod import SODNet
from saliency_ros.training.common import LoopConfig, LoopResult, Runtime, StoppedEarly, fit, read_stage, stage_done, write_json
from saliency_ros.training.data import FramePairDataset, VideoSequence
from saliency_ros.training.evaluate import evaluate
from saliency_ros.training.export import input_spec
from saliency_ros.training.recipe import Recipe, paper_loss


def stage1_loss(kind: str = "bce"):
    """Single frames: sum_i L(P_i, G) over the three units, L the ground-truth loss `kind`."""
    if kind not in GROUND_TRUTH_LOSSES:
        raise ValueError(f"loss must be one of {sorted(GROUND_TRUTH_LOSSES)}, got {kind!r}")
    lg = GROUND_TRUTH_LOSSES[kind]

    def loss(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        out = model(batch["current"])
        return sum(lg(p, batch["mask"]) for p in out["frame"])  # type: ignore[return-value]

    return loss


def stage2_loss(alpha: float):
    """Ls on the previous frame + Lt on the current (adjacent) frame (NOTES.md eq. 3, 6)."""

    def loss(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        out = model(batch["previous"], batch["current"])
        ls = spatial_distillation_loss(out["frame"], batch["previous_mask"], alpha)
        lt = temporal_distillation_loss(out["adjacent"], batch["mask"], out["frame"][2], alpha)
        return ls + lt

    return loss


def deployed_predictor(net: SODNet):
    """Predict function for `evaluate`: the exported one-frame path, in eval mode."""
    deployed = net.deploy().eval()
    return lambda feeds: deployed(feeds["image"])


def _pairs(recipe: Recipe, sequences: list[VideoSequence], stage: str, seed: int | None = None) -> FramePairDataset:
    spec = input_spec(recipe.sod.model, recipe.sod.input_size)
    # The stage's loop seed (the recipe's unless the loop names one; a soup's run's own) also
    # draws the augmentation: a stage that runs on over the same data (sod.extend) would
    # otherwise repeat stage 1's draws.
    return FramePairDataset(sequences, spec, gap=recipe.data.gap, augment=recipe.sod.stage_augment(stage),
                            seed=dict(recipe.sod.stages())[stage].seed if seed is None else seed)


def stage1_dataset(recipe: Recipe, train: list[VideoSequence], images: list[VideoSequence],
                   stage: str = "stage1", seed: int | None = None) -> FramePairDataset:
    """Stage 1 (and the stages that continue it: extend, finetune) learns single frames: the
    image datasets (DUTS) and the video frames, the latter listed `video_repeat` times to set
    the mix."""
    return _pairs(recipe, images + train * recipe.sod.video_repeat, stage, seed)


def soup(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform average of `states`: every float tensor (weights and BatchNorm statistics);
    integer ones (BatchNorm batch counters) are the first state's."""
    return {k: sum(s[k] for s in states) / len(states) if v.is_floating_point() else v  # type: ignore[misc]
            for k, v in states[0].items()}


def _finish(net: SODNet, recipe: Recipe, name: str, loop: LoopConfig, result: LoopResult, val: list[VideoSequence],
            run: Runtime, folder: Path, desc: str, **extra: Any) -> dict[str, Any]:
    """Score the trained `net` on `val` and write its weights and record (`model.pt`,
    `stage.json`) into `folder`: how a stage, and each run of a soup, ends. Returns the record;
    its seconds are the training's over every resume (the log's) plus this validation."""
    cfg = recipe.sod
    t0 = time.perf_counter()
    metrics = evaluate(deployed_predictor(net.eval()), val, input_spec(cfg.model, cfg.input_size), run.device,
                       desc=f"{desc} val")
    recorded = {"loop": asdict(loop), "loss": cfg.stage_loss(name), "from_export": name in cfg.from_export,
                "iterations": loop.iterations, "final_loss": result.last_loss,
                "seconds": round(result.seconds + time.perf_counter() - t0, 1), "val": metrics, **extra}
    if run.is_main:
        torch.save(net.state_dict(), folder / "model.pt")
        write_json(folder / "stage.json", recorded)
    return recorded


def _fit_soup(net: SODNet, recipe: Recipe, name: str, datasets: Callable[[int], FramePairDataset], loss: Any,
              val: list[VideoSequence], run: Runtime, stage_dir: Path, stop_at: int | None) -> tuple[LoopResult, dict[str, Any]]:
    """Train stage `name` once per seed of its soup, each run from `net` as it is now, into
    `stage_dir/seed<n>` (each resumable, each scored on `val`), and leave `net` holding the
    average of the runs' weights. `stop_at` stops the first unfinished run at that iteration.
    Returns the runs together as one result, and their records."""
    cfg = recipe.sod
    loop = dict(cfg.stages())[name]
    start = {k: v.clone() for k, v in net.state_dict().items()}
    # Every run starts from the same random state too (its checkpoints keep it from there), so a
    # run is the same whether the runs before it were trained in this call or earlier.
    rng = torch.get_rng_state()
    states, runs = [], {}
    for seed in cfg.soups[name]:
        run_dir = stage_dir / f"seed{seed}"
        if stage_done(run_dir):
            recorded = read_stage(run_dir)
            made = (recorded["loop"]["seed"], recorded.get("loss", paper_loss(name)), recorded.get("from_export", False))
            if made != (seed, cfg.stage_loss(name), name in cfg.from_export):
                raise RuntimeError(f"{run_dir} holds a run of seed, loss, from_export {made}, not the recipe's "
                                   f"({seed}, {cfg.stage_loss(name)}, {name in cfg.from_export}): move it out of "
                                   "the run folder and run the same command again")
            states.append(torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True))
        else:
            net.load_state_dict(start)
            torch.set_rng_state(rng)
            seeded = replace(loop, seed=seed)
            result = fit(net, datasets(seed), loss, seeded, run, run_dir, f"SOD {name} seed {seed}", stop_at=stop_at)
            if result.reached < loop.iterations:
                raise StoppedEarly(f"SOD {name} (seed {seed}) stopped at its stop_at; run the same command to resume")
            recorded = _finish(net, recipe, name, seeded, result, val, run, run_dir, f"SOD {name} seed {seed}")
            states.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        runs[str(seed)] = {k: recorded[k] for k in ("final_loss", "seconds", "val")}
    net.load_state_dict(soup(states))
    together = LoopResult(0, loop.iterations, sum(r["seconds"] for r in runs.values()),
                          sum(r["final_loss"] for r in runs.values()) / len(runs))
    return together, runs


def exported_weights(net: SODNet, model: str, input_size: int) -> SODNet:
    """`net` as its ONNX export holds it: exported and read back (`reshape.sod_from_onnx`), so
    every BatchNorm of the trunk comes back folded into its convolution (`fit` then re-estimates
    them); the parts the export leaves out (the inter-frame encoder, unit 3) stay `net`'s own.
    Through the real exporter, not a folding of our own, so that the digits are those the
    shipped fine-tune started from: the stage is chaotic enough that last-bit differences change
    which INT8 copies pass the rule (docs/training_levers.md §11, §14)."""
    from saliency_ros.training.export import export_model
    from saliency_ros.training.reshape import sod_from_onnx

    # Forked: building the read-back net draws random numbers the stage itself would draw next.
    with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng():
        exported = export_model(net.eval(), model, input_size, Path(tmp),
                                {"status": "trained", "procedure": "the stage before, read back to start the next"})
        back = sod_from_onnx(exported.onnx_path)
    back.load_state_dict({**back.state_dict(), **{k: v for k, v in net.state_dict().items() if not k.startswith("trunk.")}})
    return back


def train_sod(
    recipe: Recipe, train: list[VideoSequence], images: list[VideoSequence], val: list[VideoSequence],
    run: Runtime, out: Path, stop_at: dict[str, int] | None = None,
) -> tuple[SODNet, dict[str, Any]]:
    """Every stage (stage 1, extend and the fine-tune where the recipe has them, stage 2);
    returns the trained net and the record written to `out/sod.json`. Stage 2 needs real
    temporal pairs: video only."""
    cfg = recipe.sod
    datasets = {name: (stage1_dataset(recipe, train, images, name) if name != "stage2" else _pairs(recipe, train, name))
                for name, _ in cfg.stages()}
    losses = {name: stage2_loss(cfg.alpha) if name == "stage2" else stage1_loss(cfg.stage_loss(name))
              for name, _ in cfg.stages()}
    torch.manual_seed(recipe.seed)
    net: SODNet = create_model(cfg.model)  # type: ignore[assignment]
    record: dict[str, Any] = {"model": cfg.model, "input_size": cfg.input_size, "alpha": cfg.alpha,
                              "train_frames": sum(len(s) for s in train), "train_pairs": len(datasets["stage2"]),
                              "stage1_images": sum(len(s) for s in images), "stage1_samples": len(datasets["stage1"]),
                              "hardware": run.describe(), "stages": {}}
    trained = None  # the first stage trained by this call: every later one starts from its weights
    for name, loop in cfg.stages():
        loss, dataset = losses[name], datasets[name]
        stage_dir = out / name
        done = stage_dir / "model.pt"
        if stage_done(stage_dir):  # finished earlier: reuse, so `train all` can be re-run after a stop
            if trained is not None:  # e.g. a fine-tune added to a recipe whose stage 2 had finished
                raise RuntimeError(f"{stage_dir} finished before {trained} was trained again here, so it holds "
                                   "other weights: move it out of the run folder and run the same command again")
            recorded = read_stage(stage_dir)
            if recorded.get("from_export", False) != (name in cfg.from_export):  # records before it: False
                raise RuntimeError(f"{stage_dir} was {'' if recorded.get('from_export') else 'not '}started from the "
                                   f"export, the recipe's sod.{name}.from_export says otherwise: move it out of the "
                                   "run folder and run the same command again")
            trained_with = recorded.get("loss", paper_loss(name))
            if trained_with != cfg.stage_loss(name):
                raise RuntimeError(f"{stage_dir} was trained with the {trained_with} loss, the recipe asks for "
                                   f"{cfg.stage_loss(name)}: move it out of the run folder and run the same command again")
            net.load_state_dict(torch.load(done, map_location="cpu", weights_only=True))
            record["stages"][name] = recorded
            continue
        trained = trained or name
        seeds = cfg.soups.get(name)
        # A checkpoint holds the start already; a soup's runs each start from it anew.
        if name in cfg.from_export and (seeds or not (stage_dir / "last.pt").is_file()):
            net = exported_weights(net, cfg.model, cfg.input_size)
        runs = None
        if seeds:
            result, runs = _fit_soup(net, recipe, name, lambda seed: stage1_dataset(recipe, train, images, name, seed),
                                     loss, val, run, stage_dir, (stop_at or {}).get(name))
        else:
            result = fit(net, dataset, loss, loop, run, stage_dir, f"SOD {name}", stop_at=(stop_at or {}).get(name))
        if result.reached < loop.iterations:
            raise StoppedEarly(f"SOD {name} stopped at its stop_at; run the same command to resume")
        # A soup's record keeps its runs' own scores beside their average's.
        record["stages"][name] = _finish(net, recipe, name, loop, result, val, run, stage_dir, f"SOD {name}",
                                         **({"soup": runs} if runs is not None else {}))
    if run.is_main:
        write_json(out / "sod.json", record)
    return net, record
