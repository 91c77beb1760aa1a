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
