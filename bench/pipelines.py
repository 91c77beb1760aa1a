"""Benchmark: the on-board pipelines (preprocess -> ONNX Runtime -> resize to camera size) on
real 720p drone frames, with the shipped models. No DDS: this is the floor under the nodes.
The saliency row prepares both frames (a stream prepares each frame once) and, for the default
single-frame model, includes the motion prior at the shipped strength; the ego-motion row is
what a stream adds per frame when the Sst card asks for aligned pairs (grey working image,
estimate, warp of the previous input).

Run from the repository root: .venv/bin/python -m bench.pipelines [--video FILE]
Writes bench/results/pipelines.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2

from bench.models import machine
from saliency_ros.evaluation.offline import SALIENCY_DEFAULTS
from saliency_ros.runtime import egomotion
from saliency_ros.runtime.engine import Engine
from saliency_ros.runtime.pipelines import ObjectsPipeline, SaliencyPipeline
from saliency_ros.runtime.timing import time_callable

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=REPO.parent / "shared" / "data" / "aerial" / "Vehicle_00083.avi")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "pipelines.json")
    args = parser.parse_args()
    cap = cv2.VideoCapture(str(args.video))
    ok0, previous = cap.read()
    ok1, current = cap.read()
    if not (ok0 and ok1):
        raise SystemExit(f"cannot read two frames from {args.video}")
    rows = []
    for threads in (1, 2):
        sal = SaliencyPipeline(Engine(REPO / "models" / SALIENCY_DEFAULTS["model"], threads=threads),
                               motion_prior=SALIENCY_DEFAULTS["motion_prior"])
        obj = ObjectsPipeline(Engine(REPO / "models" / "sod_effl0_256_int8.onnx", threads=threads))
        aligned = ", aligned pair" if sal.motion is not None else ", motion prior" if sal.prior is not None else ""
        for name, fn in ((f"saliency ({sal.engine.path.name}{aligned})", lambda: sal(current, previous)),
                         (f"objects ({obj.engine.path.name})", lambda: obj(current))):
            t = time_callable(fn, args.seconds)
            rows.append({"pipeline": name, "threads": threads, "frame": f"{current.shape[1]}x{current.shape[0]}",
                         "p50_ms": round(t.p50_ms, 3), "p95_ms": round(t.p95_ms, 3), "fps": round(t.fps, 1)})
    motion = egomotion.MotionConfig()
    prev_gray, prev_input = egomotion.working_gray(previous, motion), sal.prepare(previous).input

    def align() -> None:
        egomotion.align_previous(prev_input, prev_gray, egomotion.working_gray(current, motion), motion)

    t = time_callable(align, args.seconds)
    rows.append({"pipeline": f"ego-motion alignment ({motion.model}, {motion.width} px grey)", "threads": 1,
                 "frame": f"{current.shape[1]}x{current.shape[0]}", "p50_ms": round(t.p50_ms, 3),
                 "p95_ms": round(t.p95_ms, 3), "fps": round(t.fps, 1)})
    args.out.write_text(json.dumps({"machine": machine(), "video": args.video.name, "rows": rows}, indent=2) + "\n")
    print("| pipeline | frame | threads | p50 ms | p95 ms | FPS |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['pipeline']} | {r['frame']} | {r['threads']} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['fps']:,.0f} |")


if __name__ == "__main__":
    main()
