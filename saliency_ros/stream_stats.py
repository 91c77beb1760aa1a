"""Rates and latency percentiles over a sliding time window, for /diagnostics and the CLI.

Kept out of the nodes so it can be tested without ROS, and bounded so that a node running for
hours keeps constant memory: only events of the last `window_s` seconds are kept, with a hard
cap on their number.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np


class WindowStats:
    """Event times (and an optional value per event, e.g. a latency) in a sliding window."""

    def __init__(self, window_s: float = 5.0, max_events: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._clock = clock
        self._events: deque[tuple[float, float]] = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self.total = 0

    def add(self, value: float = 0.0) -> None:
        """Record one event now, with `value` (milliseconds for latencies)."""
        with self._lock:
            self._events.append((self._clock(), value))
            self.total += 1

    def _recent(self) -> list[tuple[float, float]]:
        horizon = self._clock() - self.window_s
        with self._lock:
            while self._events and self._events[0][0] < horizon:
                self._events.popleft()
            return list(self._events)

    def rate_hz(self) -> float:
        """Events per second over the window (0 when fewer than two events)."""
        events = self._recent()
        if len(events) < 2:
            return 0.0
        span = events[-1][0] - events[0][0]
        return (len(events) - 1) / span if span > 0 else 0.0

    def percentiles(self, *qs: float) -> tuple[float, ...]:
        """Percentiles of the values in the window (NaN when empty)."""
        values = [v for _, v in self._recent()]
        if not values:
            return tuple(float("nan") for _ in qs)
        return tuple(float(p) for p in np.percentile(values, qs))


class StampGaps:
    """Frames missing from a stream, inferred from header stamps.

    Frames lost in transport (a full shared-memory segment, a best-effort reader history that
    overflowed, fragments lost over UDP) never reach a callback, so no counter in the node
    sees them. A camera stamps at a steady rate, though: a step of k typical periods means
    k - 1 frames went missing. The period is the median of recent regular steps; a step back
    (a bag loop) or a pause longer than `pause_s` starts over instead of counting.
    """

    def __init__(self, tolerance: float = 1.5, history: int = 32, pause_s: float = 2.0) -> None:
        if tolerance <= 1.0:
            raise ValueError(f"tolerance must be > 1, got {tolerance}")
        self.tolerance = tolerance
        self.pause_ns = int(pause_s * 1e9)
        self._steps: deque[int] = deque(maxlen=history)
        self._last: int | None = None
        self.missing = 0  # frames inferred missing, in total
        self.gaps = 0  # steps that had frames missing

    def add(self, stamp_ns: int) -> int:
        """Record the next frame's stamp; returns how many frames are missing before it."""
        last, self._last = self._last, stamp_ns
        if last is None or stamp_ns == last:
            return 0
        step = stamp_ns - last
        if step < 0 or step > self.pause_ns:
            self._steps.clear()  # a new stream, or a pause: not losses
            return 0
        period = int(np.median(self._steps)) if len(self._steps) >= 3 else None
        if period is None or step <= self.tolerance * period:
            self._steps.append(step)
            return 0
        missing = max(1, round(step / period) - 1)
        self.missing += missing
        self.gaps += 1
        return missing
