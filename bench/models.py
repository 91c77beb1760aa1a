"""Benchmark: batch-1 latency/FPS of every model in torch and ONNX Runtime, 1 and 2 threads,
next to OpenCV's SpectralResidual and FineGrained static saliency timed in the same run.

Run: .venv/bin/python bench/models.py [--seconds 2] [--out bench/results/models.json]
Prints a Markdown table (pasted into the README) and writes the JSON with the machine it ran on.
Weights are random: latency does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
from tqdm import tqdm

from saliency_ros.runtime.timing import Timing, time_callable, time_onnx
from saliency_ros.training.export import deployable, example_inputs, export_untrained

MODELS = [
    ("skd_sst", 32), ("skd_sst", 64), ("skd_sst", 128), ("skd_ss", 64), ("skd_st", 64),
    ("sod_effl0", 256), ("sod_effl0", 320), ("sod_r50", 320),
]
OPENCV_SIZES = [(64, 64), (256, 256), (640, 360)]


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__,
        "onnxruntime": ort.__version__, "opencv": cv2.__version__,
    }


def time_torch(name: str, size: int, threads: int, seconds: float, model: torch.nn.Module) -> Timing:
    torch.set_num_threads(threads)
    inputs = tuple(x[:1] for x in example_inputs(name, size))
    with torch.inference_mode():
        return time_callable(lambda: model(*inputs), seconds, warmup=5)


def time_opencv(kind: str, size: tuple[int, int], seconds: float) -> Timing:
    cv2.setNumThreads(1)
    create = {"spectral_residual": cv2.saliency.StaticSaliencySpectralResidual_create,
              "fine_grained": cv2.saliency.StaticSaliencyFineGrained_create}[kind]
    algo = create()
    img = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return time_callable(lambda: algo.computeSaliency(img), seconds, warmup=5)


def row(label: str, size: str, backend: str, threads: int, t: Timing, extra: dict | None = None) -> dict:
    return {"model": label, "input": size, "backend": backend, "threads": threads,
            "p50_ms": round(t.p50_ms, 4), "p95_ms": round(t.p95_ms, 4),
            "fps": round(t.fps, 1), "calls": t.calls, **(extra or {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing window per row")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "models.json")
    args = parser.parse_args()

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in tqdm(MODELS, desc="models"):
            result = export_untrained(name, size, Path(tmp))
            extra = {"params": result.parameters, "mflops": round(result.flops / 1e6, 1)}
            model = deployable(_rebuild(name, size)).eval()
            for threads in (1, 2):
                rows.append(row(name, f"{size}x{size}", "onnxruntime", threads,
                                time_onnx(result.onnx_path, threads, args.seconds), extra))
                rows.append(row(name, f"{size}x{size}", "torch", threads,
                                time_torch(name, size, threads, args.seconds, model), extra))
    for kind in tqdm(("spectral_residual", "fine_grained"), desc="opencv"):
        for w, h in OPENCV_SIZES:
            rows.append(row(f"opencv_{kind}", f"{w}x{h}", "opencv", 1, time_opencv(kind, (w, h), args.seconds)))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
    print(markdown(rows))
    print(f"\nwritten {args.out}")


def _rebuild(name: str, size: int) -> torch.nn.Module:
    from saliency_ros.models import create_model, get_entry

    cfg = {"input_size": size} if get_entry(name).family == "skd" else {}
    return create_model(name, **cfg)


def markdown(rows: list[dict]) -> str:
    """One line per model and input: FPS (p50 ms) per backend and thread count."""
    keys = [("onnxruntime", 1), ("onnxruntime", 2), ("torch", 1), ("torch", 2), ("opencv", 1)]
    groups: dict[tuple[str, str], dict] = {}
    for r in rows:
        g = groups.setdefault((r["model"], r["input"]), {"params": r.get("params"), "mflops": r.get("mflops")})
        g[(r["backend"], r["threads"])] = f"{r['fps']:,.0f} ({r['p50_ms']:.3f})"
    head = "| model | input | params | MFLOPs | ORT 1 thr | ORT 2 thr | torch 1 thr | torch 2 thr | OpenCV 1 thr |"
    lines = [head, "|" + "---|" * 9]
    for (model, size), g in groups.items():
        cells = [g.get(k, "") for k in keys]
        params = f"{g['params']:,}" if g["params"] else ""
        lines.append(f"| {model} | {size} | {params} | {g['mflops'] or ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
