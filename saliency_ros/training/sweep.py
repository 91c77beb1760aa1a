"""Comparisons of recipe levers, each variant a dictionary merged into a base recipe.

    python -m saliency_ros.training.sweep config/training/sweeps/sod_stage1.yaml [--only NAME ...]
    python -m saliency_ros.training.sweep config/training/sweeps/skd.yaml --sod-run runs/drone

`kind: sod_stage1` compares SOD stage 1 at equal wall time: each variant is first timed over a
few iterations, then given the iteration count that fills the budget, with its own schedule
completing, and scored on the validation set. `kind: skd` trains the students of each variant
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
from saliency_ros.training.common import fit, seed_everything, setup_runtime
from saliency_ros.training.pipeline import load_images, load_sequences, run_procedure
from saliency_ros.training.recipe import Recipe, load_recipe
from saliency_ros.training.sod import deployed_predictor, stage1_dataset, stage1_loss
from saliency_ros.training.evaluate import evaluate
from saliency_ros.training.export import input_spec

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


def run_variant(name: str, recipe: Recipe, budget_s: float, out: Path, val_every: int) -> dict[str, Any]:
    seed_everything(recipe.seed)
    run = setup_runtime()
    train, val = load_sequences(recipe, out)
    dataset = stage1_dataset(recipe, train, load_images(recipe))
    loop = recipe.sod.stage1
    with tempfile.TemporaryDirectory() as probe_dir:
        torch.manual_seed(recipe.seed)
        probe = fit(create_model(recipe.sod.model), dataset, stage1_loss,
                    replace(loop, iterations=PROBE_ITERATIONS, checkpoint_every=10**9), run,
                    Path(probe_dir), f"{name} timing")
    times = [row["seconds"] for row in probe.history]
    per_iteration = (times[-1] - times[PROBE_WARMUP - 1]) / (PROBE_ITERATIONS - PROBE_WARMUP)
    iterations = max(int(budget_s / per_iteration), 1)
    torch.manual_seed(recipe.seed)
    net = create_model(recipe.sod.model)
    t0 = time.perf_counter()
    result = fit(net, dataset, stage1_loss, replace(loop, iterations=iterations), run, out / "stage1", name)
    train_s = time.perf_counter() - t0
    net.eval()
    metrics = evaluate(deployed_predictor(net), val, input_spec(recipe.sod.model, recipe.sod.input_size),
                       run.device, every=val_every, desc=f"{name} val")
    return {"variant": name, "iterations": iterations, "batch_size": loop.batch_size,
            "train_seconds": round(train_s, 1), "seconds_per_iteration": round(per_iteration, 3),
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
    card = json.loads((out / "models" / f"skd_sst_{size}.json").read_text())
    boxes = {k: v for k, v in card["training"]["metrics"].items() if k != "davis2016_val"}
    # Training time as recorded by the run (teachers + every student of every size), so a
    # re-run that reuses finished stages reports the same figure.
    train_s = skd["teacher_seconds"] + sum(r[k]["seconds"] for r in skd["sizes"].values() for k in ("ss", "st", "sst"))
    return {"variant": name, "size": size, "wall_seconds": round(train_s, 1),
            "teacher_seconds": skd["teacher_seconds"],
            "val": skd["sizes"][str(size)]["sst"]["val"], "boxes": boxes}


def write_table(rows: list[dict[str, Any]], sweep: dict[str, Any], path: Path) -> None:
    if sweep.get("kind") == "skd":
        _write_skd_table(rows, sweep, path)
        return
    lines = [
        "# SOD stage-1 recipe sweep",
        "",
        f"Generated by `python -m saliency_ros.training.sweep {sweep['_file']}` from its rows in "
        f"`{sweep['_results']}`. Each variant trains SOD stage 1 for the same wall time "
        f"(about {sweep['budget_minutes']} min) on this machine, then is scored on DAVIS-2016 val "
        f"(1 frame in {rows[0]['val_every'] if rows else '?'}) through the runtime's preprocessing.",
        "",
        "| variant | setting | iterations | train wall time | F-beta max | MAE | S | F-beta mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = r["val"]
        lines.append(f"| {r['variant']} | {r['setting']} | {r['iterations']} x {r['batch_size']} "
                     f"| {r['train_seconds'] / 60:.1f} min | {v['fbeta_max']:.3f} | {v['mae']:.3f} "
                     f"| {v['smeasure']:.3f} | {v['fbeta_mean']:.3f} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _write_skd_table(rows: list[dict[str, Any]], sweep: dict[str, Any], path: Path) -> None:
    lines = [
        "# SKD student levers",
        "",
        f"Generated by `python -m saliency_ros.training.sweep {sweep['_file']} --sod-run ...` from its "
        f"rows in `{sweep['_results']}`. Every variant distils the same SOD run; Sst is scored on "
        "DAVIS-2016 val (every frame) and on the box clips through the offline evaluation (the "
        "nodes' code and parameters).",
        "",
        "| variant | setting | Sst DAVIS F-beta max | MAE | S | aerial pointing hit | aerial box-NSS "
        "| best baseline hit / box-NSS | SKD wall time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = r["val"]
        (boxes,) = r["boxes"].values()
        base = boxes["baselines"]
        best_hit = max(b["pointing_hit_rate"] for b in base.values())
        best_nss = max(b["box_nss"] for b in base.values())
        lines.append(f"| {r['variant']} | {r['setting']} (Sst-{r['size']}) | {v['fbeta_max']:.3f} | {v['mae']:.3f} "
                     f"| {v['smeasure']:.3f} | {boxes['pointing_hit_rate']:.3f} | {boxes['box_nss']:.2f} "
                     f"| {best_hit:.3f} / {best_nss:.2f} | {r['wall_seconds'] / 60:.1f} min |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="sweep file (config/training/sweeps/*.yaml)")
    parser.add_argument("--only", nargs="*", help="run only these variants")
    parser.add_argument("--out", type=Path, default=repo_root() / "runs" / "sweep")
    parser.add_argument("--sod-run", type=Path, help="kind skd: a run folder with a finished sod/")
    parser.add_argument("--table-only", action="store_true", help="rewrite the table from the rows so far")
    parser.add_argument("--table", type=Path, help="Markdown table to write instead of the sweep file's `table:` "
                        "(e.g. the same levers distilled from another teacher)")
    args = parser.parse_args(argv)
    sweep = yaml.safe_load(args.sweep.read_text())
    base = (repo_root() / sweep["base"]).resolve()
    results = args.out / "results.jsonl"
    sweep["_file"] = args.sweep.relative_to(repo_root()) if args.sweep.is_absolute() else args.sweep
    sweep["_results"] = results
    done = {json.loads(line)["variant"] for line in results.read_text().splitlines()} if results.exists() else set()
    for name in [] if args.table_only else (args.only or list(sweep["variants"])):
        spec = sweep["variants"][name]
        if name in done:
            continue
        recipe = variant_recipe(base, spec.get("override", {}), args.out / name)
        if sweep.get("kind") == "skd":
            if args.sod_run is None:
                parser.error("a skd sweep needs --sod-run")
            row = run_skd_variant(name, recipe, args.out / name, args.sod_run)
        else:
            row = run_variant(name, recipe, 60.0 * sweep["budget_minutes"], args.out / name, sweep.get("val_every", 1))
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
