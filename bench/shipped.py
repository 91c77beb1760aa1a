"""Benchmark: the shipped models in models/ (fp32 and INT8) at batch 1, one and two threads,
next to the scores their cards record, so each quantization step shows its speed and its cost.

Run from the repository root, with no training running:
  .venv/bin/python -m bench.shipped [--seconds 3]
Writes bench/results/shipped.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.models import machine
from saliency_ros.runtime.timing import time_onnx

REPO = Path(__file__).resolve().parents[1]


def scores(card: dict) -> dict[str, float]:
    """DAVIS F-beta max and aerial box scores as the card records them (an INT8 card: its own)."""
    if "quantization" in card:
        return card["quantization"]["scores"]["int8"]
    metrics = card["training"]["metrics"]
    out = {"fbeta_max": metrics["davis2016_val"]["fbeta_max"]}
    out |= {k: metrics["aerial_dev"][k] for k in ("pointing_hit_rate", "box_nss") if "aerial_dev" in metrics}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "shipped.json")
    args = parser.parse_args()
    rows = []
    for path in sorted((REPO / "models").glob("*.onnx")):
        card = json.loads(path.with_suffix(".json").read_text())
        row = {"model": path.name, "int8": "quantization" in card, "mb": round(path.stat().st_size / 1e6, 2),
               "scores": scores(card)}
        for threads in (1, 2):
            t = time_onnx(path, threads, args.seconds)
            row[f"threads_{threads}"] = {"fps": round(t.fps, 1), "p50_ms": round(t.p50_ms, 3), "p95_ms": round(t.p95_ms, 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
    print("| model | MB | FPS 1 thread (p50 ms) | FPS 2 threads (p50 ms) | DAVIS F-max | aerial hit | aerial box-NSS |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["scores"]
        cells = [f"{r[f'threads_{n}']['fps']:,.0f} ({r[f'threads_{n}']['p50_ms']:.3f})" for n in (1, 2)]
        aerial = [f"{s[k]:.3f}" if k in s else "" for k in ("pointing_hit_rate", "box_nss")]
        print(f"| {r['model']} | {r['mb']} | {cells[0]} | {cells[1]} | {s.get('fbeta_max', float('nan')):.3f} | "
              f"{aerial[0]} | {aerial[1]} |")


if __name__ == "__main__":
    main()
