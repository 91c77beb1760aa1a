"""Batch-1 latency of an ONNX model in ONNX Runtime, with random inputs of the graph's shape."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from saliency_ros.runtime.engine import session_options


@dataclass(frozen=True)
class Timing:
    """Per-call latency statistics over `calls` timed calls."""

    calls: int
    p50_ms: float
    p95_ms: float
    mean_ms: float

    @property
    def fps(self) -> float:
        """Frames per second at the mean latency (batch 1, one stream)."""
        return 1000.0 / self.mean_ms


def summarize(latencies_s: list[float]) -> Timing:
    """Percentiles of a list of per-call latencies in seconds."""
    ms = np.asarray(latencies_s) * 1000.0
    return Timing(len(ms), float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), float(ms.mean()))


def time_callable(fn: object, seconds: float, warmup: int = 20) -> Timing:
    """Call `fn()` for `warmup` calls, then for about `seconds`, timing each call."""
    for _ in range(warmup):
        fn()  # type: ignore[operator]
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        if t1 >= end and len(latencies) >= 10:
            return summarize(latencies)


def time_onnx(path: Path, threads: int, seconds: float = 2.0) -> Timing:
    """Latency of `path` at batch 1 on the CPU provider with `threads` intra-op threads."""
    sess = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        i.name: rng.standard_normal([1, *i.shape[1:]]).astype(np.float32) for i in sess.get_inputs()
    }
    return time_callable(lambda: sess.run(None, feeds), seconds)
