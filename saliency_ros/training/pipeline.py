"""`saliency-ros train sod | skd | all`: run the procedures of a recipe and, for `all`, export
the results into `models/` with model cards that say how they were made and how good they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import yaml

from saliency_ros.evaluation.baselines import BASELINES
from saliency_ros.models import create_model
from saliency_ros.models.sod import SODNet
from saliency_ros.paths import repo_root, resolve_data_file, share_dirs
from saliency_ros.training.common import plot_losses, seed_everything, setup_runtime
from saliency_ros.training.data import VideoSequence, discover
from saliency_ros.training.data.synthetic import write_synthetic_dataset
from saliency_ros.training.evaluate import preview
from saliency_ros.training.export import export_model, input_spec, is_saliency_model, onnx_file
from saliency_ros.training.recipe import Recipe, paper_loss
from saliency_ros.training.reshape import reshape_models
from saliency_ros.training.skd import train_skd
from saliency_ros.training.sod import deployed_predictor, train_sod


def load_images(recipe: Recipe) -> list[VideoSequence]:
    """The image SOD datasets of a recipe (stage 1 of the SOD net only)."""
    return [seq for root in recipe.data.images for seq in discover(root, "duts")]


def load_sequences(recipe: Recipe, out: Path) -> tuple[list[VideoSequence], list[VideoSequence]]:
    """Train and val sequences of a recipe; synthetic ones are written under `out/synthetic`."""
    data = recipe.data
    train = [seq for root in data.train for seq in discover(root, data.layout)]
    val = discover(data.val, data.layout) if data.val else []
    if data.synthetic is not None:
        s = data.synthetic
        synth = discover(write_synthetic_dataset(out / "synthetic", s.sequences, s.frames,
                                                 s.width, s.height, recipe.seed, s.target_scale), "ours")
        # Hold the last synthetic clip out for validation when the recipe names no val set.
        if val:
            train += synth
        else:
            train, val = train + synth[:-1], synth[-1:]
    if not val:
        raise ValueError("the recipe gives no validation data (data.val)")
    return train, val


def run_sod(recipe: Recipe, out: Path, stop_at: dict[str, int] | None = None):
    seed_everything(recipe.seed)
    run = setup_runtime()
    train, val = load_sequences(recipe, out)
    return train_sod(recipe, train, load_images(recipe), val, run, out / "sod", stop_at)


def run_procedure(procedure: str, recipe: Recipe, out: Path, models_dir: Path,
                  stop_at: dict[str, int], keep_students: bool = False) -> None:
    """`sod`, `skd` (needs a finished SOD run in `out`), `all` (SOD, SKD, export) or
    `reshape` (the models in `models_dir` to the recipe's export shapes, with INT8 copies).
    `keep_students`: `all` trains and exports the SOD net alone and leaves the students' files
    in `models_dir` as they are, for a new SOD net whose students are not to change with it."""
    if procedure == "reshape":
        reshaped = reshape_models(recipe, out / "reshape", models_dir)
        if recipe.export_int8 and reshaped:
            check_node_defaults(quantize_exported(recipe, reshaped, out, models_dir), models_dir)
        return
    try:
        if procedure in ("sod", "all"):
            run_sod(recipe, out, stop_at)
        if procedure == "skd" or (procedure == "all" and not keep_students):
            run_skd(recipe, out, stop_at)
        if procedure == "all" and int(os.environ.get("RANK", "0")) == 0:
            export_trained(recipe, out, models_dir, with_students=not keep_students)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _trained_sod(recipe: Recipe, out: Path) -> SODNet:
    weights = out / "sod" / "stage2" / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist: run `saliency-ros train sod` with this --out first")
    net = create_model(recipe.sod.model, pretrained=False)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net


def skd_sequences(recipe: Recipe, out: Path) -> tuple[list[VideoSequence], list[VideoSequence]]:
    """The students' train and val sequences: the recipe's, plus the students' own drone
    scenes (small moving targets under ego-motion), written under `out/synthetic_skd`."""
    train, val = load_sequences(recipe, out)
    s = recipe.skd.synthetic
    if s is not None:
        train = train + discover(write_synthetic_dataset(
            out / "synthetic_skd", s.sequences, s.frames, s.width, s.height, recipe.seed + 1, s.target_scale), "ours")
    return train, val


def run_skd(recipe: Recipe, out: Path, stop_at: dict[str, int] | None = None):
    seed_everything(recipe.seed)
    run = setup_runtime()
    train, val = skd_sequences(recipe, out)
    images = load_images(recipe) if recipe.skd.images or recipe.skd.paste.probability else None
    return train_skd(recipe, _trained_sod(recipe, out), train, val, run, out / "skd", stop_at, images)


def offline_scores(sst: Path, sod: Path, datasets: list[Path], out: Path, baselines: Sequence[str] = BASELINES,
                   command: str = "") -> dict[str, dict[str, Any]]:
    """The overall scores of an Sst and a SOD net on `datasets` through the offline evaluation
    -- the nodes' code and parameters file with these two models -- by method, `baselines`
    beside; the report goes to `out`."""
    from saliency_ros.evaluation.offline import OfflineOptions, evaluate
    from saliency_ros.evaluation.report import write_report

    params = yaml.safe_load((repo_root() / "config" / "drone.yaml").read_text())
    params["/**/saliency_node"]["ros__parameters"]["model"] = str(sst.resolve())
    # A card records what its model does; the node's motion prior on top is scored in the README.
    params["/**/saliency_node"]["ros__parameters"]["motion_prior"] = 0.0
    params["/**/objects_node"]["ros__parameters"]["model"] = str(sod.resolve())
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.yaml").write_text(yaml.safe_dump(params))
    result, board = evaluate(datasets, OfflineOptions(out / "params.yaml", baselines=baselines))
    write_report(result, out, board.sod_summaries(), dict(board.latency_ms),
                 command or f"saliency-ros eval {' '.join(relative(p) for p in datasets)} (train all)")
    return {m: e.get("overall", {}) for m, e in result["methods"].items()}


def score_boxes(recipe: Recipe, sst: Path, sod: Path, out: Path, command: str = "") -> dict[str, dict[str, Any]]:
    """Score an exported /saliency model (`sst`) and SOD net on the recipe's box clips
    (aerial_dev) and return, for each, the metrics entry its card's training section gets
    (baselines beside)."""
    overall = offline_scores(sst, sod, list(recipe.data.boxes), out, command=command)
    keys = ("pointing_hit_rate", "box_nss", "box_frames", "box_out_of_view")
    scores = {m: {k: v[k] for k in keys} for m, v in overall.items() if "box_nss" in v}
    baselines = {m: v for m, v in scores.items() if m not in ("sod", "sst")}
    data = [relative(p) for p in recipe.data.boxes]
    return {m: {**scores[m], "data": data, "baselines": baselines} for m in ("sod", "sst")}


# A quantized model ships only if it loses at most this much against its fp32 model (issue 13):
# DAVIS F-beta max, and each aerial box score. One-sided: the rule guards against what
# quantization costs; an INT8 copy that scores higher (session 6's SOD net: aerial box-NSS
# +0.16) is not refused for it, and its card records its own scores beside the fp32 ones.
INT8_TOLERANCE = {"fbeta_max": 0.01, "pointing_hit_rate": 0.02, "box_nss": 0.02}


def int8_losses(fp32: dict[str, float], int8: dict[str, float]) -> dict[str, float]:
    """What the INT8 copy scores below its fp32 model, per score (negative where higher)."""
    return {k: fp32[k] - int8[k] for k in fp32}


def int8_qualifies(fp32: dict[str, float], int8: dict[str, float]) -> bool:
    return all(loss <= INT8_TOLERANCE[k] for k, loss in int8_losses(fp32, int8).items())


def quantize_exported(recipe: Recipe, written: list[Path], out: Path, models_dir: Path) -> dict[str, Any]:
    """INT8 copies of the exported models, calibrated on pairs of the recipe's train clips,
    scored against their fp32 models on the val set and the box clips through the offline
    evaluation; each ships into `models_dir` only if no score falls more than INT8_TOLERANCE
    below its fp32 model's. A model not in `written` that the evaluation needs beside them
    (the SOD net, or the first student) is taken from `models_dir`, with its INT8 copy where
    there is one, and not quantized again. Returns the comparison (also in
    `out/quantized/report.json` and in each shipped INT8 card)."""
    from saliency_ros.training.quantize import calibration_pairs, int8_path, quantize_model

    train = [seq for root in recipe.data.train for seq in discover(root, recipe.data.layout)]
    pairs = calibration_pairs(train, recipe.calibration_pairs, recipe.seed)
    staged = out / "quantized"
    calibration = {"data": [relative(p) for p in recipe.data.train], "gap_frames": 1, "seed": recipe.seed}
    int8 = {p: quantize_model(p, pairs, staged, calibration,
                              float_input_convs=(recipe.student_float_inputs and p.name.startswith("skd_"))
                              or (recipe.saliency_float_inputs and p.name.startswith("sod") and is_saliency_model(p)))
            for p in written}
    datasets = [recipe.data.val, *recipe.data.boxes]

    def shipped_pair(fp32: Path) -> tuple[Path, Path]:
        int8_copy = int8_path(fp32)
        return fp32, (int8_copy if int8_copy.is_file() else fp32)

    fp32_sod = next((p for p in written if p.name.startswith("sod") and not is_saliency_model(p)), None)
    sod = (shipped_pair(models_dir / onnx_file(recipe.sod.model, recipe.sod.input_size)) if fp32_sod is None
           else (fp32_sod, int8[fp32_sod]))
    written_ssts = [p for p in written if is_saliency_model(p)]
    ssts = ([(p, int8[p]) for p in written_ssts] if written_ssts
            else [shipped_pair(models_dir / onnx_file("skd_sst", recipe.skd.sizes[0]))])
    report: dict[str, Any] = {"tolerance": INT8_TOLERANCE, "models": {}}
    for sst in ssts:
        for kind, pair in (("fp32", (sst[0], sod[0])), ("int8", (sst[1], sod[1]))):
            scores = offline_scores(*pair, datasets, staged / f"{sst[0].stem}_{kind}", baselines=())
            scored = [(fp32, m) for fp32, m in ((sst[0], "sst"), (fp32_sod, "sod")) if fp32 in int8]
            for fp32, method in scored:  # the SOD net: the same each time
                report["models"].setdefault(fp32.name, {})[kind] = {
                    k: scores[method][k] for k in INT8_TOLERANCE if k in scores[method]}
    shipped = []
    for fp32, q in int8.items():
        entry = report["models"][fp32.name]
        entry["within_tolerance"] = int8_qualifies(entry["fp32"], entry["int8"])
        card = json.loads(q.with_suffix(".json").read_text())
        card["quantization"]["scores"] = {"fp32": entry["fp32"], "int8": entry["int8"], "tolerance": INT8_TOLERANCE}
        q.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
        files = (q, q.with_suffix(".json"))
        if entry["within_tolerance"]:
            for f in files:
                (models_dir / f.name).write_bytes(f.read_bytes())
            shipped.append(q.name)
        else:  # a copy from an earlier run that no longer qualifies must not linger
            for f in files:
                (models_dir / f.name).unlink(missing_ok=True)
            losses = int8_losses(entry["fp32"], entry["int8"])
            print(f"train all: {q.name} is not shipped: it scores below {fp32.name} by {losses} "
                  f"(tolerance {INT8_TOLERANCE})")
    report["shipped"] = shipped
    (staged / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


class DefaultModelRefused(RuntimeError):
    """A node's default model is an INT8 copy this run made and did not ship."""


def refused_defaults(report: dict[str, Any], params_file: Path) -> list[str]:
    """`node.model (file)` for each node whose `model` in `params_file` names an INT8 copy
    that `report` (`quantize_exported`'s) refused."""
    from saliency_ros.evaluation.offline import NodeConfig
    from saliency_ros.training.quantize import int8_path

    refused = {int8_path(Path(name)).name for name, entry in report["models"].items() if not entry["within_tolerance"]}
    nodes = NodeConfig.load(params_file)
    return [f"{node}.model ({cfg['model']})" for node, cfg in (("saliency_node", nodes.saliency),
                                                                ("objects_node", nodes.objects))
            if Path(cfg["model"]).name in refused]


def check_node_defaults(report: dict[str, Any], models_dir: Path) -> None:
    """Raise `DefaultModelRefused` when this run wrote into the folder the nodes read and a
    node's model in config/drone.yaml is a copy it refused: `ros2 launch` would then stop on a
    missing file. Why not fall back to the fp32 file quietly: it is about twice as slow, which
    the user of the default did not choose (session 22 found a rebuild where this happens)."""
    if models_dir.resolve() not in {(d / "models").resolve() for d in share_dirs()}:
        return
    params = resolve_data_file("drone.yaml", "config")
    named = refused_defaults(report, params)
    if named:
        raise DefaultModelRefused(
            f"{params} names {', '.join(named)}, which this run did not ship (its INT8 copy scored below its "
            f"fp32 model by more than the rule allows; see quantized/report.json in the run folder). The nodes "
            "will not start with it: name the fp32 file (drop _int8) in that parameter, or make an INT8 copy "
            "that qualifies and run `saliency-ros train reshape` with this recipe.")


def metric_names(recipe: Recipe) -> tuple[str, str]:
    """The names a card's scores go under: the val set's and the box clips'."""
    val = "davis2016_val" if recipe.data.val and "davis2016" in str(recipe.data.val) else "val"
    return val, "+".join(Path(p).name for p in recipe.data.boxes)


def relative(path: Path) -> str:
    """A path as written from the repository root (data lives in ../shared)."""
    return os.path.relpath(path.resolve(), repo_root())


class _Export(NamedTuple):
    """One trained model to export, with its card's training section; `scored_as` names it in
    the box evaluation (the SOD net and the first Sst are scored there)."""

    model: torch.nn.Module
    name: str
    size: int
    training: dict[str, Any]
    pair_alignment: str
    scored_as: str | None
    aspect: float  # students' width:height (models.skd.student_shape); 1 for the SOD net

    def write(self, folder: Path) -> Path:
        return export_model(self.model, self.name, self.size, folder, self.training,
                            pair_alignment=self.pair_alignment, aspect=self.aspect).onnx_path


def export_trained(recipe: Recipe, out: Path, models_dir: Path, with_students: bool = True) -> list[Path]:
    """Export the SOD net and every Sst of a finished run, with full training sections, and
    draw the loss curves and validation previews into `out/plots`. Without `with_students`, the
    SOD net alone, scored beside the first Sst of `models_dir`."""
    sod_rec = json.loads((out / "sod" / "sod.json").read_text())
    train, val = skd_sequences(recipe, out)
    data = {
        "train": [relative(p) for p in recipe.data.train] + (["synthetic drone scenes"] if recipe.data.synthetic else []),
        "train_sequences": len(train), "train_frames": sum(len(s) for s in train),
        "students_synthetic": (None if recipe.skd.synthetic is None
                               else {"generator": "saliency_ros.sources.synthetic", **asdict(recipe.skd.synthetic)}),
        "sod_stage1_images": [relative(p) for p in recipe.data.images],
        "sod_stage1_image_count": (image_count := sum(len(s) for s in load_images(recipe))),
        "students_still_images": min(recipe.skd.images, image_count),
        "val": relative(recipe.data.val) if recipe.data.val else "held-out synthetic clip",
        "val_sequences": len(val), "val_frames": sum(len(s) for s in val),
        "pairs": f"(current, previous at gap k), k in {list(recipe.data.gap)}",
    }
    command = f"saliency-ros train all --recipe {relative(recipe.path)}" + ("" if with_students else " --keep-students")
    common = {"status": "trained", "command": command,
              "recipe": recipe.source, "data": data}
    val_name, box_name = metric_names(recipe)
    written = []

    sod = _trained_sod(recipe, out)
    stages = sod_rec["stages"]
    # The single-frame stages' ground-truth loss as their records have it.
    lg = {k: "Lg" if v.get("loss", paper_loss(k)) == "bce" else f"{v['loss']} loss" for k, v in stages.items()}
    from_export = ", from its export with re-estimated BatchNorms" if stages.get("finetune", {}).get("from_export") else ""
    def souped(stage: str) -> str:
        seeds = list(stages[stage].get("soup", {}))
        return f", {len(seeds)} runs (seeds {', '.join(seeds)}) averaged into one" if seeds else ""

    finetune = (f" then stage 1 continued at the export shapes (sod.finetune, {lg['finetune']}{from_export}"
                f"{souped('finetune')})" if "finetune" in stages else "")
    extend = (f" then run on by a second decay (sod.extend, {lg['extend']}, {stages['extend']['iterations']} iterations"
              f"{souped('extend')})" if "extend" in stages else "")
    sod_training = {**common, "procedure": f"SOD stage 1 (single frames, {lg['stage1']}){extend}{finetune} then stage 2 (Ls + Lt, alpha "
                    f"{sod_rec['alpha']}, inter-frame encoder), paper 000",
                    "iterations": {k: v["iterations"] for k, v in stages.items()},
                    "wall_time_s": round(sum(v["seconds"] for v in stages.values()), 1),
                    "hardware": sod_rec["hardware"],
                    "metrics": {val_name: stages["stage2"]["val"]},
                    "metrics_by_stage": {k: v["val"] for k, v in stages.items()}}
    exports = [_Export(sod, recipe.sod.model, recipe.sod.input_size, sod_training, "none", "sod", 1.0)]

    students = {}
    sizes = recipe.skd.sizes if with_students else ()
    if sizes:
        skd_rec = json.loads((out / "skd" / "skd.json").read_text())
    for size in sizes:
        rec = skd_rec["sizes"][str(size)]
        sst = create_model("skd_sst", input_size=size, widths=recipe.skd.widths)
        sst.load_state_dict(torch.load(out / "skd" / str(size) / "sst" / "model.pt", map_location="cpu", weights_only=True))
        students[size] = sst.eval()
        training = {**common, "procedure": f"SKD: teachers = the SOD net above (Ts: P2 at full resolution, Tt: P3 "
                    f"from the inter-frame encoder); Ss and St at {size}x{size} with mu {skd_rec['mu']} "
                    "soft/hard normalized L2; Sst built from their first eight layers, fine-tuned with Lhard (Adam), paper 001",
                    "iterations": {k: rec[k]["iterations"] for k in ("ss", "st", "sst")},
                    "wall_time_s": round(skd_rec["teacher_seconds"] + sum(rec[k]["seconds"] for k in ("ss", "st", "sst")), 1),
                    "hardware": skd_rec["hardware"],
                    "metrics": {val_name: rec["sst"]["val"]},
                    "metrics_students": {k: rec[k]["val"] for k in ("ss", "st")}}
        exports.append(_Export(sst, "skd_sst", size, training, recipe.skd.pair_alignment,
                               "sst" if size == recipe.skd.sizes[0] else None, recipe.skd.aspect))

    if recipe.data.boxes:
        # The box scores come from the exported graphs run by the nodes' code, so the models are
        # exported once to score them and then, with the scores in their cards, into models/.
        scored = {e.scored_as: e.write(out / "box_eval" / "models") for e in exports if e.scored_as}
        if "sst" not in scored:
            scored["sst"] = models_dir / onnx_file("skd_sst", recipe.skd.sizes[0])
            if not scored["sst"].is_file():
                raise FileNotFoundError(f"{scored['sst']} does not exist: the SOD net alone is scored beside "
                                        "the shipped first student")
        scores = score_boxes(recipe, scored["sst"], scored["sod"], out / "box_eval")
        for e in exports:
            if e.scored_as:
                e.training["metrics"][box_name] = scores[e.scored_as]
    written = [e.write(models_dir) for e in exports]
    # Rewrites those files in place, and writes the SOD net's /saliency export beside them.
    reshaped = reshape_models(recipe, out / "reshape", models_dir, common["command"])
    written += [p for p in reshaped if p not in written]
    report = quantize_exported(recipe, written, out, models_dir) if recipe.export_int8 else None
    plots = out / "plots"
    logs = {f"SOD {k}": out / "sod" / k / "log.csv" for k in stages}
    logs |= {f"SKD-{s} {k}": out / "skd" / str(s) / k / "log.csv" for s in students for k in ("ss", "st", "sst")}
    # A stage brought into the run folder without its log (rebuilt from an exported file) has no curve.
    plot_losses({k: v for k, v in logs.items() if v.is_file()}, plots / "loss_curves.png")
    predictors = {f"SOD {recipe.sod.input_size}": (deployed_predictor(sod.eval()),
                                                   input_spec(recipe.sod.model, recipe.sod.input_size, shape=recipe.sod_shape))}
    predictors |= {f"Sst-{s}": ((lambda m: lambda f: m(f["current"], f["previous"]))(m),
                                input_spec("skd_sst", s, recipe.skd.pair_alignment,
                                           shape=recipe.export_shape(s)))
                   for s, m in students.items()}
    preview(predictors, val, torch.device("cpu"), plots / "val_predictions.png")
    if report is not None:  # last, so a refusal still leaves the plots and every other file
        check_node_defaults(report, models_dir)
    return written
