"""`saliency-ros train all` end to end on generated drone scenes: stage 1 -> stage 2 ->
teachers -> Ss/St -> Sst -> ONNX + cards + plots, then a re-run reuses every finished stage
and a size added later costs only its own teachers and students."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from saliency_ros.cli import main
from saliency_ros.runtime.engine import Engine
from saliency_ros.training import skd as skd_module
from saliency_ros.training.common import StoppedEarly
from saliency_ros.training.data import AugmentConfig
from saliency_ros.training.pipeline import (DefaultModelRefused, check_node_defaults, export_trained, load_sequences,
                                            refused_defaults, run_procedure)
from saliency_ros.training.recipe import Recipe, load_recipe
from saliency_ros.training.skd import cache_teachers
from saliency_ros.training.sod import stage1_dataset
from test.sources.test_boxes import write_box_clip

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_all_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, models = tmp_path / "run", tmp_path / "models"
    args = ["train", "all", "--recipe", str(REPO / "config/training/smoke.yaml"),
            "--out", str(out), "--models-dir", str(models)]
    t0 = time.perf_counter()
    assert main(args) == 0
    elapsed = time.perf_counter() - t0
    assert elapsed < 180, f"smoke run took {elapsed:.0f} s (budget 180 s)"

    for stage in ("sod/stage1", "sod/stage2", "skd/32/ss", "skd/32/st", "skd/32/sst"):
        assert (out / stage / "model.pt").is_file() and (out / stage / "log.csv").is_file(), stage
    assert (out / "plots" / "loss_curves.png").stat().st_size > 10_000
    assert (out / "plots" / "val_predictions.png").stat().st_size > 10_000

    exported = sorted(p.name for p in models.glob("*.onnx"))
    assert exported == ["skd_sst_32.onnx", "sod_effl0_64.onnx"]
    for onnx_path in models.glob("*.onnx"):
        engine = Engine(onnx_path)  # checks sha256 and input spec
        card = json.loads(onnx_path.with_suffix(".json").read_text())
        assert card["trained"] and card["training"]["status"] == "trained"
        assert card["training"]["command"] == "saliency-ros train all --recipe config/training/smoke.yaml"
        metrics = card["training"]["metrics"]["val"]
        assert metrics["frames"] == 8 and 0.0 <= metrics["mae"] <= 1.0
        size = engine.card.input.height
        # The Sst card tells the runtime to align pairs, as the students were trained.
        assert engine.card.input.pair_alignment == ("homography" if onnx_path.name.startswith("skd") else "none")
        out_map = engine(**{n: np.zeros((1, 3, size, size), np.float32) for n in engine.card.input.names})
        assert out_map.shape == (1, 1, size, size)

    # Every stage is finished: a second run only re-exports, in seconds, and reuses the
    # recorded metrics and stage times instead of measuring (and overwriting) them again.
    records = {f: json.loads((out / f).read_text()) for f in ("sod/sod.json", "skd/skd.json")}
    t1 = time.perf_counter()
    assert main(args) == 0
    assert time.perf_counter() - t1 < 60
    for f, before in records.items():
        after = json.loads((out / f).read_text())
        assert {k: v for k, v in after.items() if k != "hardware"} == \
            {k: v for k, v in before.items() if k != "hardware"}, f

    # A size added to the finished run: the teachers run for that size alone, and the kept
    # size's stages, record and teacher time carry over.
    passes: list[tuple[int, ...]] = []

    def counted(*a, **kw):
        passes.append(tuple(kw["sizes"] if "sizes" in kw else a[2]))
        return cache_teachers(*a, **kw)

    monkeypatch.setattr(skd_module, "cache_teachers", counted)
    smoke = load_recipe(REPO / "config/training/smoke.yaml")
    two_sizes = replace(smoke, skd=replace(smoke.skd, sizes=(32, 64)))
    kept = (out / "skd/32/sst/model.pt").read_bytes()
    run_procedure("skd", two_sizes, out, tmp_path / "unused", {})
    assert passes == [(64,)]
    assert (out / "skd/32/sst/model.pt").read_bytes() == kept
    grown = json.loads((out / "skd/skd.json").read_text())
    assert grown["sizes"]["32"] == records["skd/skd.json"]["sizes"]["32"]
    assert grown["teacher_seconds"] > records["skd/skd.json"]["teacher_seconds"]
    assert set(grown["sizes"]) == {"32", "64"}

    # With box clips in the recipe, the exported SOD net and Sst are scored on them and the
    # scores (baselines beside) are in the cards as written, checksums and all.
    write_box_clip(tmp_path / "boxes" / "clip", ["28,20,8,8", "0,0,4,4", "NaN,NaN,NaN,NaN", "29.5,21,6.5,6"])
    recipe = load_recipe(REPO / "config/training/smoke.yaml")
    recipe = replace(recipe, data=replace(recipe.data, boxes=(tmp_path / "boxes",)))
    scored = tmp_path / "scored"
    export_trained(recipe, out, scored)
    for onnx_path in scored.glob("*.onnx"):
        Engine(onnx_path)  # the card as written still describes the file
        box = json.loads(onnx_path.with_suffix(".json").read_text())["training"]["metrics"]["boxes"]
        assert box["box_frames"] == (3 if onnx_path.name.startswith("sod") else 2)
        assert box["box_out_of_view"] == 1 and 0.0 <= box["pointing_hit_rate"] <= 1.0
        assert box["baselines"]["centre_prior"]["pointing_hit_rate"] == pytest.approx(2 / 3)

    # --keep-students: the SOD net alone, scored beside the first student already shipped,
    # which stays as it is.
    kept = tmp_path / "kept"
    kept.mkdir()
    shipped = scored / "skd_sst_32.onnx"
    for f in (shipped, shipped.with_suffix(".json")):
        (kept / f.name).write_bytes(f.read_bytes())
    export_trained(recipe, out, kept, with_students=False)
    assert sorted(p.name for p in kept.glob("*.onnx")) == ["skd_sst_32.onnx", "sod_effl0_64.onnx"]
    assert (kept / "skd_sst_32.onnx").read_bytes() == shipped.read_bytes()
    training = json.loads((kept / "sod_effl0_64.json").read_text())["training"]
    assert training["command"].endswith("smoke.yaml --keep-students")
    assert training["metrics"]["boxes"]["box_frames"] == 3


def test_stop_at_checkpoints_and_the_same_command_resumes(tmp_path: Path) -> None:
    args = ["train", "sod", "--recipe", str(REPO / "config/training/smoke.yaml"), "--out", str(tmp_path)]
    assert main([*args, "--stop-at", "stage1=2"]) == 3
    assert (tmp_path / "sod" / "stage1" / "last.pt").is_file()
    assert not (tmp_path / "sod" / "stage1" / "model.pt").exists()
    assert main(args) == 0
    log = (tmp_path / "sod" / "stage1" / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2", "3"]


def _added_before_stage2(recipe: Recipe, out: Path, stage: str) -> dict:
    """Run `recipe`, which adds `stage` before stage 2, over a finished run: refused while the old
    stage 2 (trained from the old trunk) is in the run folder, trained once it is moved aside;
    returns the run's sod.json."""
    with pytest.raises(RuntimeError, match=f"stage2 finished before {stage} was trained again"):
        run_procedure("sod", recipe, out, out / "unused", {})
    (out / "sod/stage2").rename(out / "stale_stage2")
    run_procedure("sod", recipe, out, out / "unused", {})
    return json.loads((out / "sod/sod.json").read_text())


def test_a_fine_tune_runs_between_the_stages_and_a_stale_stage_2_is_refused(tmp_path: Path) -> None:
    smoke = load_recipe(REPO / "config/training/smoke.yaml")
    run_procedure("sod", smoke, tmp_path, tmp_path / "unused", {})
    stage1 = (tmp_path / "sod/stage1/model.pt").read_bytes()
    # The fine-tune added to the finished run: stage 2 was trained from stage 1's weights, not
    # from the fine-tune's, so reusing it would ship the wrong net.
    finetune = replace(smoke.sod.stage1, iterations=2, shapes=((64, 64), (64, 96)))
    recipe = replace(smoke, sod=replace(smoke.sod, finetune=finetune,
                                        augment={"finetune": AugmentConfig(zoom_out=1.0, border="mean")},
                                        losses={"finetune": "structure"}))
    record = _added_before_stage2(recipe, tmp_path, "finetune")
    assert list(record["stages"]) == ["stage1", "finetune", "stage2"]
    assert record["stages"]["finetune"]["loop"]["shapes"] == [[64, 64], [64, 96]]
    assert [record["stages"][k]["loss"] for k in ("stage1", "finetune", "stage2")] == ["bce", "structure", "distillation"]
    # A finished stage is reused only with the loss it was trained with.
    other = replace(recipe, sod=replace(recipe.sod, losses={"finetune": "bce_iou"}))
    with pytest.raises(RuntimeError, match="finetune was trained with the structure loss, the recipe asks for bce_iou"):
        run_procedure("sod", other, tmp_path, tmp_path / "unused", {})
    # ... and only from the start it was trained from (sod.finetune.from_export).
    assert record["stages"]["finetune"]["from_export"] is False
    exported = replace(recipe, sod=replace(recipe.sod, from_export=frozenset({"finetune"})))
    with pytest.raises(RuntimeError, match="finetune was not started from the export"):
        run_procedure("sod", exported, tmp_path, tmp_path / "unused", {})
    for stage in ("finetune", "stage2"):
        (tmp_path / "sod" / stage).rename(tmp_path / f"plain_{stage}")
    run_procedure("sod", exported, tmp_path, tmp_path / "unused", {})
    assert json.loads((tmp_path / "sod/sod.json").read_text())["stages"]["finetune"]["from_export"] is True
    assert (tmp_path / "sod/stage1/model.pt").read_bytes() == stage1  # reused, not trained again
    log = (tmp_path / "sod/finetune/log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2"]


def test_extend_runs_stage_1_on_from_its_weights(tmp_path: Path) -> None:
    smoke = load_recipe(REPO / "config/training/smoke.yaml")
    run_procedure("sod", smoke, tmp_path, tmp_path / "unused", {})
    stage1 = (tmp_path / "sod/stage1/model.pt").read_bytes()
    recipe = replace(smoke, sod=replace(smoke.sod, extend=replace(smoke.sod.stage1, iterations=2, seed=1)))
    # Stage 2 was trained from stage 1's weights, not from the lengthened stage 1's.
    record = _added_before_stage2(recipe, tmp_path, "extend")
    assert list(record["stages"]) == ["stage1", "extend", "stage2"]
    assert (record["stages"]["extend"]["loop"]["seed"], record["stages"]["extend"]["loss"]) == (1, "bce")
    assert (tmp_path / "sod/stage1/model.pt").read_bytes() == stage1  # reused, not trained again
    log = (tmp_path / "sod/extend/log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2"]
    assert (tmp_path / "sod/extend/model.pt").read_bytes() != stage1
    # Its augmentation is drawn from its own seed: stage 1's draws are not repeated, and stage 1
    # keeps the recipe's (so the shipped recipe rebuilds as before).
    train, _ = load_sequences(recipe, tmp_path)
    first, extended = (stage1_dataset(recipe, train, [], name) for name in ("stage1", "extend"))
    assert (first.seed, extended.seed) == (recipe.seed, 1)
    assert not np.array_equal(first[0]["current"].numpy(), extended[0]["current"].numpy())


def test_a_soup_fine_tune_averages_runs_that_each_equal_a_plain_fine_tune(tmp_path: Path) -> None:
    smoke = load_recipe(REPO / "config/training/smoke.yaml")
    finetune = replace(smoke.sod.stage1, iterations=2)
    plain = replace(smoke, sod=replace(smoke.sod, finetune=finetune, from_export=frozenset({"finetune"})))
    run_procedure("sod", plain, tmp_path / "plain", tmp_path / "unused", {})
    seeded = replace(plain, sod=replace(plain.sod, finetune=replace(finetune, seed=1)))
    (tmp_path / "seeded/sod").mkdir(parents=True)
    shutil.copytree(tmp_path / "plain/sod/stage1", tmp_path / "seeded/sod/stage1")
    run_procedure("sod", seeded, tmp_path / "seeded", tmp_path / "unused", {})
    # The soup, stopped inside its first run and resumed by the same command.
    souped = replace(plain, sod=replace(plain.sod, soups={"finetune": (0, 1)}))
    out = tmp_path / "soup"
    (out / "sod").mkdir(parents=True)
    shutil.copytree(tmp_path / "plain/sod/stage1", out / "sod/stage1")
    with pytest.raises(StoppedEarly, match=r"finetune \(seed 0\) stopped"):
        run_procedure("sod", souped, out, tmp_path / "unused", {"finetune": 1})
    run_procedure("sod", souped, out, tmp_path / "unused", {})
    # Each run is the plain fine-tune at its seed, to the bit, resumed or not ...
    runs = {seed: torch.load(out / f"sod/finetune/seed{seed}/model.pt", weights_only=True) for seed in (0, 1)}
    for seed, folder in ((0, "plain"), (1, "seeded")):
        alone = torch.load(tmp_path / folder / "sod/finetune/model.pt", weights_only=True)
        assert all(torch.equal(alone[k], runs[seed][k]) for k in alone), seed
    # ... and the stage keeps their average, which differs from both.
    averaged = torch.load(out / "sod/finetune/model.pt", weights_only=True)
    floats = [k for k, v in averaged.items() if v.is_floating_point()]
    assert any(not torch.equal(runs[0][k], runs[1][k]) for k in floats)
    for k in floats:
        torch.testing.assert_close(averaged[k], (runs[0][k] + runs[1][k]) / 2)
    record = json.loads((out / "sod/sod.json").read_text())["stages"]["finetune"]
    assert sorted(record["soup"]) == ["0", "1"] and record["soup"]["1"]["val"]["fbeta_max"] >= 0
    # A run trained under another seed is not taken for this one.
    other = replace(souped, sod=replace(souped.sod, soups={"finetune": (0, 2)}))
    shutil.copytree(out / "sod/finetune/seed1", out / "sod/finetune/seed2")
    for stage in ("finetune", "stage2"):
        (out / "sod" / stage / "model.pt").unlink()
    with pytest.raises(RuntimeError, match=r"seed2 holds a run of seed, loss, from_export \(1, 'bce', True\)"):
        run_procedure("sod", other, out, tmp_path / "unused", {})


@pytest.mark.slow
def test_torchrun_two_ranks_on_cpu(tmp_path: Path) -> None:
    """The same command under torchrun: two gloo ranks over loopback train one stage with DDP."""
    import os
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "saliency_ros.cli", "train", "sod",
           "--recipe", str(REPO / "config/training/smoke.yaml"), "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "sod" / "sod.json").read_text())
    assert record["hardware"]["world_size"] == 2
    assert (tmp_path / "sod" / "stage2" / "model.pt").is_file()


def test_a_refused_int8_copy_that_a_node_runs_by_default_stops_train_all(tmp_path: Path) -> None:
    """Session 22: a rebuilt net's /saliency INT8 copy missed the rule, so `train all` would have
    left out the file config/drone.yaml starts saliency_node with. That must be an error, not a
    launch that fails later on a missing file."""
    params = tmp_path / "params.yaml"
    params.write_text("saliency_node:\n  ros__parameters:\n    model: sod_effl0_256_128x256_int8.onnx\n"
                      "objects_node:\n  ros__parameters:\n    model: sod_effl0_256.onnx\n")
    report = {"models": {"sod_effl0_256_128x256.onnx": {"within_tolerance": False},
                         "sod_effl0_256.onnx": {"within_tolerance": False},
                         "skd_sst_64.onnx": {"within_tolerance": True}}}
    # objects_node runs the fp32 file, so its refused copy is not needed.
    assert refused_defaults(report, params) == ["saliency_node.model (sod_effl0_256_128x256_int8.onnx)"]
    report["models"]["sod_effl0_256_128x256.onnx"]["within_tolerance"] = True
    assert refused_defaults(report, params) == []
    refused = {"models": {"sod_effl0_256_128x256.onnx": {"within_tolerance": False}}}
    check_node_defaults(refused, tmp_path / "models")  # a run into another folder leaves the nodes' files alone
    with pytest.raises(DefaultModelRefused, match=r"saliency_node\.model \(sod_effl0_256_128x256_int8\.onnx\)"):
        check_node_defaults(refused, REPO / "models")  # the shipped config/drone.yaml names that copy
