"""Sweep variants merge into the base recipe; the table is rebuilt from the recorded rows, in the
sweep file's order, where `--table` says."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from saliency_ros.training.sweep import main, merged

REPO = Path(__file__).resolve().parents[2]
SWEEP = REPO / "config" / "training" / "sweeps" / "skd.yaml"


def _row(variant: str, hit: float) -> dict:
    boxes = {"pointing_hit_rate": hit, "box_nss": 1.5,
             "baselines": {"spectral_residual": {"pointing_hit_rate": 0.02, "box_nss": 0.7},
                           "fine_grained": {"pointing_hit_rate": 0.25, "box_nss": 0.8}}}
    return {"variant": variant, "size": 128, "wall_seconds": 1200.0, "teacher_seconds": 300.0,
            "val": {"fbeta_max": 0.5, "mae": 0.09, "smeasure": 0.65}, "boxes": {"aerial_dev": boxes},
            "setting": f"setting of {variant}"}


def test_merged_is_recursive_and_leaves_the_base_alone() -> None:
    base = {"skd": {"sizes": [64], "mu": 0.5}, "seed": 0}
    out = merged(base, {"skd": {"sizes": [128]}, "seed": 1})
    assert out == {"skd": {"sizes": [128], "mu": 0.5}, "seed": 1}
    assert base == {"skd": {"sizes": [64], "mu": 0.5}, "seed": 0}


def test_table_only_writes_the_rows_to_the_given_table(tmp_path: Path) -> None:
    rows = [_row("davis_aspect_128", 0.2), _row("davis_raw_128", 0.1)]  # recorded out of the file's order
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = tmp_path / "table.md"
    assert main([str(SWEEP), "--table-only", "--out", str(tmp_path), "--table", str(table)]) == 0
    lines = [line for line in table.read_text().splitlines() if line.startswith("| davis")]
    assert [line.split(" | ")[0] for line in lines] == ["| davis_raw_128", "| davis_aspect_128"]
    cells = lines[1].split(" | ")
    assert cells[2:7] == ["0.500", "0.090", "0.650", "0.200", "1.50"]
    assert cells[7] == "0.250 / 0.80" and cells[8] == "20.0 min |"


def test_sod_stage2_table_shows_the_objects_map_beside_the_best_baseline(tmp_path: Path) -> None:
    boxes = {"pointing_hit_rate": 0.195, "box_nss": 2.29,
             "baselines": {"fine_grained": {"pointing_hit_rate": 0.221, "box_nss": 0.81},
                           "centre_prior": {"pointing_hit_rate": 0.0, "box_nss": 1.28}}}
    rows = [{"variant": "short", "iterations": 100, "train_seconds": 240.0, "setting": "100 iterations",
             "val": {"fbeta_max": 0.805, "mae": 0.05, "smeasure": 0.85, "fbeta_mean": 0.7}, "boxes": boxes},
            {"variant": "stage1_only", "iterations": 0, "train_seconds": 0.0, "setting": "no stage 2",
             "val": {"fbeta_max": 0.81, "mae": 0.046, "smeasure": 0.853, "fbeta_mean": 0.73}, "boxes": boxes}]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = tmp_path / "table.md"
    sweep = REPO / "config" / "training" / "sweeps" / "sod_stage2.yaml"
    assert main([str(sweep), "--table-only", "--out", str(tmp_path), "--table", str(table)]) == 0
    lines = [line for line in table.read_text().splitlines() if line.startswith(("| short", "| stage1"))]
    assert [line.split(" | ")[0] for line in lines] == ["| stage1_only", "| short"]
    assert lines[1].split(" | ")[2:] == ["100", "4.0 min", "0.805", "0.050", "0.850", "0.195", "2.29",
                                         "0.221 / 1.28 |"]


def test_a_variant_with_fixed_iterations_trains_that_many_without_a_probe(tmp_path: Path) -> None:
    """`iterations:` compares at equal samples seen (a larger backbone gets fewer iterations in a
    budget): no timing probe runs, the stage trains exactly that many and its row says so."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "base": str(REPO / "config" / "training" / "smoke.yaml"), "kind": "sod_stage1", "budget_minutes": 60,
        "table": str(tmp_path / "unused.md"),
        "variants": {"lite1_fixed": {"setting": "Lite1, 2 iterations", "iterations": 2,
                                     "override": {"sod": {"model": "sod_effl1"}}}}}))
    table = tmp_path / "table.md"
    assert main([str(sweep), "--out", str(tmp_path / "out"), "--table", str(table)]) == 0
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert (row["variant"], row["iterations"], row["batch_size"]) == ("lite1_fixed", 2, 2)
    log = (tmp_path / "out" / "lite1_fixed" / "stage1" / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2"]
    assert yaml.safe_load((tmp_path / "out" / "lite1_fixed" / "recipe.yaml").read_text())["sod"]["model"] == "sod_effl1"
    assert "| lite1_fixed | Lite1, 2 iterations | 2 x 2 |" in table.read_text()
