"""Comparisons of recipe levers, each variant a dictionary merged into a base recipe.

    python -m saliency_ros.training.sweep config/training/sweeps/sod_stage1.yaml [--only NAME ...]
    python -m saliency_ros.training.sweep config/training/sweeps/sod_stage2.yaml --sod-run runs/drone
    python -m saliency_ros.training.sweep config/training/sweeps/skd.yaml --sod-run runs/drone

`kind: sod_stage1` compares SOD stage 1 at equal wall time: each variant is first timed over a
few iterations, then given the iteration count that fills the budget, with its own schedule
completing, and scored on the validation set; a variant with `iterations:` trains for that
many instead (no probe), to compare at equal samples seen. `kind: sod_stage2` fine-tunes stage 2 of each
variant from the stage 1 of one finished SOD run, exports the one-frame net and scores it on the
validation set and, as the objects map, on the recipe's box clips; a variant with `stage1_only`
scores that stage-1 net itself. `kind: skd` trains the students of each variant
from one finished SOD run (the teacher), exports them and scores Sst on the validation set and
on the recipe's box clips (aerial_dev) next to the baselines, exactly as `train all` does.

One row per variant is appended to `results.jsonl` in the run folder and the sweep's Markdown
table (`table:` in the sweep file, or `--table`) is rewritten from all rows, so a sweep can be
continued over several sessions.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from saliency_ros.models import create_model
from saliency_ros.paths import repo_root
from saliency_ros.runtime.model_card import card_path_for
from saliency_ros.training.common import fit, seed_everything, setup_runtime
from saliency_ros.training.pipeline import (load_images, load_sequences, metric_names, relative, run_procedure, run_sod,
                                            score_boxes)
from saliency_ros.training.recipe import Recipe, load_recipe
from saliency_ros.training.sod import deployed_predictor, stage1_dataset, stage1_loss
from saliency_ros.training.evaluate import evaluate
from saliency_ros.training.export import export_model, input_spec, onnx_file

PROBE_ITERATIONS = 16
PROBE_WARMUP = 6  # iterations left out of the timing: loader start-up, first allocations


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in, recursively for dictionaries."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def variant_recipe(base_path: Path, override: dict[str, Any], folder: Path) -> Recipe:
    raw = merged(yaml.safe_load(base_path.read_text()), override)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    # Relative data paths in the copy are resolved against the repository, as in the original.
    return load_recipe(path)


def run_variant(name: str, recipe: Recipe, budget_s: float, out: Path, val_every: int,
                iterations: int | None = None) -> dict[str, Any]:
    """Stage 1 of one variant for the iterations that fill `budget_s` (timed by a probe), or for
    a fixed number of `iterations` (a variant's `iterations:`: the same samples seen as another
    variant's), then scored on the validation set."""
    seed_everything(recipe.seed)
    run = setup_runtime()
    train, val = load_sequences(recipe, out)
    dataset = stage1_dataset(recipe, train, load_images(recipe))
    loop, loss = recipe.sod.stage1, stage1_loss(recipe.sod.stage_loss("stage1"))
    per_iteration = None
    if iterations is None:
        with tempfile.TemporaryDirectory() as probe_dir:
            torch.manual_seed(recipe.seed)
            probe = fit(create_model(recipe.sod.model), dataset, loss,
                        replace(loop, iterations=PROBE_ITERATIONS, checkpoint_every=10**9), run,
                        Path(probe_dir), f"{name} timing")
        times = [row["seconds"] for row in probe.history]
        per_iteration = (times[-1] - times[PROBE_WARMUP - 1]) / (PROBE_ITERATIONS - PROBE_WARMUP)
        iterations = max(int(budget_s / per_iteration), 1)
    torch.manual_seed(recipe.seed)
    net = create_model(recipe.sod.model)
    t0 = time.perf_counter()
    result = fit(net, dataset, loss, replace(loop, iterations=iterations), run, out / "stage1", name)
    train_s = time.perf_counter() - t0
    net.eval()
    metrics = evaluate(deployed_predictor(net), val, input_spec(recipe.sod.model, recipe.sod.input_size),
                       run.device, every=val_every, desc=f"{name} val")
    return {"variant": name, "iterations": iterations, "batch_size": loop.batch_size,
            "train_seconds": round(train_s, 1),
            "seconds_per_iteration": round(train_s / iterations if per_iteration is None else per_iteration, 3),
            "samples": len(dataset), "final_loss": result.last_loss, "val_every": val_every,
            "val": {k: metrics[k] for k in ("fbeta_max", "mae", "smeasure", "fbeta_mean")}}


def run_skd_variant(name: str, recipe: Recipe, out: Path, sod_run: Path) -> dict[str, Any]:
    """Students of one variant from the SOD net of `sod_run`, exported and scored."""
    teacher = out / "sod"
    if not teacher.exists():
        out.mkdir(parents=True, exist_ok=True)
        teacher.symlink_to((sod_run / "sod").resolve(), target_is_directory=True)
    run_procedure("all", recipe, out, out / "models", {})
    skd = json.loads((out / "skd" / "skd.json").read_text())
    size = recipe.skd.sizes[0]
    card = json.loads(card_path_for(out / "models" / onnx_file("skd_sst", size)).read_text())
    val_name, _ = metric_names(recipe)
    boxes = {k: v for k, v in card["training"]["metrics"].items() if k != val_name}
    # Training time as recorded by the run (teachers + every student of every size), so a
    # re-run that reuses finished stages reports the same figure.
    train_s = skd["teacher_seconds"] + sum(r[k]["seconds"] for r in skd["sizes"].values() for k in ("ss", "st", "sst"))
    return {"variant": name, "size": size, "wall_seconds": round(train_s, 1),
            "teacher_seconds": skd["teacher_seconds"],
            "val": skd["sizes"][str(size)]["sst"]["val"], "boxes": boxes}


def run_sod_stage2_variant(name: str, recipe: Recipe, out: Path, sod_run: Path, stage1_only: bool) -> dict[str, Any]:
    """Stage 2 of one variant, fine-tuned from the stage 1 of `sod_run` (linked, never written),
    scored like the shipped SOD net: DAVIS val by the training code, the box clips through the
    offline evaluation (the objects map, with the shipped /saliency model beside it)."""
    stage1 = out / "sod" / "stage1"
    if not stage1.exists():
        stage1.parent.mkdir(parents=True, exist_ok=True)
        stage1.symlink_to((sod_run / "sod" / "stage1").resolve(), target_is_directory=True)
    if stage1_only:
        stage = json.loads((stage1 / "stage.json").read_text())
        net = create_model(recipe.sod.model, pretrained=False)
        net.load_state_dict(torch.load(stage1 / "model.pt", map_location="cpu", weights_only=True))
    else:
        net, record = run_sod(recipe, out)
        stage = record["stages"]["stage2"]
    sod = export_model(net.eval(), recipe.sod.model, recipe.sod.input_size, out / "models").onnx_path
    sst = repo_root() / "models" / onnx_file("skd_sst", recipe.skd.sizes[0])
    boxes = score_boxes(recipe, sst, sod, out / "box_eval", command=f"sweep variant {name}")["sod"]
    return {"variant": name, "iterations": 0 if stage1_only else stage["iterations"],
            "train_seconds": 0.0 if stage1_only else stage["seconds"],
            "val": {k: stage["val"][k] for k in ("fbeta_max", "mae", "smeasure", "fbeta_mean")}, "boxes": boxes}


def write_table(rows: list[dict[str, Any]], sweep: dict[str, Any], path: Path) -> None:
    writer = {"skd": _skd_table, "sod_stage2": _sod_stage2_table}.get(sweep.get("kind", ""), _sod_stage1_table)
    title, intro, columns, body = writer(rows, sweep)
    lines = [f"# {title}", "", intro, "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|", *body]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


Table = tuple[str, str, list[str], list[str]]  # title, introduction, column names, Markdown rows
_OFFLINE = "through the offline evaluation (the nodes' code and parameters)"


def _generated(sweep: dict[str, Any], teacher: bool) -> str:
    """The table's first sentence: the command and the rows it was written from."""
    return (f"Generated by `python -m saliency_ros.training.sweep {sweep['_file']}{' --sod-run ...' if teacher else ''}` "
            f"from its rows in `{sweep['_results']}`.")


def _box_cells(scores: dict[str, float], baselines: list[dict[str, float]]) -> str:
    """A model's pointing hit and box-NSS, then the best baseline's of each (any baseline)."""
    return (f"| {scores['pointing_hit_rate']:.3f} | {scores['box_nss']:.2f} "
            f"| {max(b['pointing_hit_rate'] for b in baselines):.3f} / {max(b['box_nss'] for b in baselines):.2f} |")


def _sod_stage1_table(rows: list[dict[str, Any]], sweep: dict[str, Any]) -> Table:
    intro = (f"{_generated(sweep, False)} Each variant trains SOD stage 1 for the same wall time "
             f"(about {sweep['budget_minutes']} min) on this machine, then is scored on DAVIS-2016 val "
             f"(1 frame in {rows[0]['val_every'] if rows else '?'}) through the runtime's preprocessing.")
    columns = ["variant", "setting", "iterations", "train wall time", "F-beta max", "MAE", "S", "F-beta mean"]
    body = [f"| {r['variant']} | {r['setting']} | {r['iterations']} x {r['batch_size']} "
            f"| {r['train_seconds'] / 60:.1f} min | {r['val']['fbeta_max']:.3f} | {r['val']['mae']:.3f} "
            f"| {r['val']['smeasure']:.3f} | {r['val']['fbeta_mean']:.3f} |" for r in rows]
    return "SOD stage-1 recipe sweep", intro, columns, body


def _sod_stage2_table(rows: list[dict[str, Any]], sweep: dict[str, Any]) -> Table:
    intro = (f"{_generated(sweep, True)} Every variant fine-tunes the same stage-1 net; the exported "
             "one-frame net is scored on DAVIS-2016 val (every frame) and, as the objects map, on the box "
             f"clips {_OFFLINE}.")
    columns = ["variant", "setting", "stage-2 iterations", "stage-2 wall time", "DAVIS F-beta max", "MAE", "S",
               "aerial pointing hit", "aerial box-NSS", "best baseline hit / box-NSS"]
    body = []
    for r in rows:
        v, boxes = r["val"], r["boxes"]
        body.append(f"| {r['variant']} | {r['setting']} | {r['iterations']} | {r['train_seconds'] / 60:.1f} min "
                    f"| {v['fbeta_max']:.3f} | {v['mae']:.3f} | {v['smeasure']:.3f} "
                    + _box_cells(boxes, list(boxes["baselines"].values())))
    return "SOD stage-2 levers", intro, columns, body


def _skd_table(rows: list[dict[str, Any]], sweep: dict[str, Any]) -> Table:
    intro = (f"{_generated(sweep, True)} Every variant distils the same SOD run; Sst is scored on "
             f"DAVIS-2016 val (every frame) and on the box clips {_OFFLINE}.")
    columns = ["variant", "setting", "Sst DAVIS F-beta max", "MAE", "S", "aerial pointing hit", "aerial box-NSS",
               "best baseline hit / box-NSS", "SKD wall time"]
    body = []
    for r in rows:
        v = r["val"]
        (boxes,) = r["boxes"].values()
        body.append(f"| {r['variant']} | {r['setting']} (Sst-{r['size']}) | {v['fbeta_max']:.3f} | {v['mae']:.3f} "
                    f"| {v['smeasure']:.3f} " + _box_cells(boxes, list(boxes["baselines"].values()))
                    + f" {r['wall_seconds'] / 60:.1f} min |")
    return "SKD student levers", intro, columns, body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="sweep file (config/training/sweeps/*.yaml)")
    parser.add_argument("--only", nargs="*", help="run only these variants")
    parser.add_argument("--out", type=Path, default=repo_root() / "runs" / "sweep")
    parser.add_argument("--sod-run", type=Path, help="kinds skd and sod_stage2: a run folder with a finished sod/")
    parser.add_argument("--table-only", action="store_true", help="rewrite the table from the rows so far")
    parser.add_argument("--table", type=Path, help="Markdown table to write instead of the sweep file's `table:` "
                        "(e.g. the same levers distilled from another teacher)")
    args = parser.parse_args(argv)
    sweep = yaml.safe_load(args.sweep.read_text())
    base = (repo_root() / sweep["base"]).resolve()
    results = args.out / "results.jsonl"
    sweep["_file"] = relative(args.sweep)
    sweep["_results"] = results
    done = {json.loads(line)["variant"] for line in results.read_text().splitlines()} if results.exists() else set()
    for name in [] if args.table_only else (args.only or list(sweep["variants"])):
        spec = sweep["variants"][name]
        if name in done:
            continue
        recipe = variant_recipe(base, spec.get("override", {}), args.out / name)
        if sweep.get("kind") in ("skd", "sod_stage2") and args.sod_run is None:
            parser.error(f"a {sweep['kind']} sweep needs --sod-run")
        if sweep.get("kind") == "skd":
            row = run_skd_variant(name, recipe, args.out / name, args.sod_run)
        elif sweep.get("kind") == "sod_stage2":
            row = run_sod_stage2_variant(name, recipe, args.out / name, args.sod_run, spec.get("stage1_only", False))
        else:
            row = run_variant(name, recipe, 60.0 * sweep["budget_minutes"], args.out / name, sweep.get("val_every", 1),
                              spec.get("iterations"))
        row["setting"] = spec["setting"]
        results.parent.mkdir(parents=True, exist_ok=True)
        with results.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row))
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    order = list(sweep["variants"])
    write_table(sorted(rows, key=lambda r: order.index(r["variant"]) if r["variant"] in order else len(order)),
                sweep, args.table or repo_root() / sweep["table"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
