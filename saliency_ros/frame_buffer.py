"""FramePairBuffer: the (current, previous) pairs Sst needs, from a live or replayed stream.

The gap between the two frames is set in frames, or in milliseconds for cameras whose rate
differs from the training data (DAVIS runs at 24 fps: one frame is about 42 ms). The buffer
starts over, and says why, when pairing would mix unrelated frames: a stamp that goes
backwards (a bag loop), a jump far beyond the expected frame interval (dropped stream), or a
change of size or encoding. Memory is bounded by the gap.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

Frame = TypeVar("Frame")


@dataclass(frozen=True)
class Pair(Generic[Frame]):
    current: Frame
    previous: Frame
    stamp_ns: int
    previous_stamp_ns: int

    @property
    def gap_ms(self) -> float:
        return (self.stamp_ns - self.previous_stamp_ns) / 1e6


class FramePairBuffer(Generic[Frame]):
    """Push frames in arrival order; `push` returns a pair once one is available.

    Exactly one of `gap_frames` and `gap_ms` is set. `reset_after_ms` is the largest stamp
    step still treated as one stream (frames further apart restart the buffer).
    """

    def __init__(self, gap_frames: int | None = 1, gap_ms: float | None = None,
                 reset_after_ms: float = 1000.0, max_frames: int = 64) -> None:
        if (gap_frames is None) == (gap_ms is None):
            raise ValueError("set exactly one of gap_frames and gap_ms")
        if gap_frames is not None and not 1 <= gap_frames < max_frames:
            raise ValueError(f"gap_frames must be in [1, {max_frames - 1}], got {gap_frames}")
        if gap_ms is not None and gap_ms <= 0:
            raise ValueError(f"gap_ms must be > 0, got {gap_ms}")
        if reset_after_ms <= 0:
            raise ValueError(f"reset_after_ms must be > 0, got {reset_after_ms}")
        self.gap_frames, self.gap_ms = gap_frames, gap_ms
        self.reset_after_ns = int(reset_after_ms * 1e6)
        self._frames: deque[tuple[int, Frame]] = deque(maxlen=(gap_frames + 1) if gap_frames else max_frames)
        self._key: object = None
        self.resets: dict[str, int] = {"stamp_backwards": 0, "stamp_jump": 0, "format_change": 0}

    @classmethod
    def from_parameters(cls, gap_frames: int, gap_ms: float, reset_after_ms: float) -> FramePairBuffer[Frame]:
        """The buffer the saliency_node parameters describe: `gap_ms` > 0 selects the gap in
        time, 0 the gap in frames (the node, offline and live evaluation all pair this way)."""
        gap_ms = float(gap_ms)
        return cls(gap_frames=None if gap_ms > 0 else int(gap_frames), gap_ms=gap_ms or None,
                   reset_after_ms=float(reset_after_ms))

    def __len__(self) -> int:
        return len(self._frames)

    def clear(self) -> None:
        self._frames.clear()
        self._key = None

    def push(self, frame: Frame, stamp_ns: int, key: object = None) -> Pair[Frame] | None:
        """Add the newest frame. `key` identifies its format (e.g. (height, width, encoding))."""
        reason = self._reset_reason(stamp_ns, key)
        if reason:
            self.resets[reason] += 1
            self._frames.clear()
        self._key = key
        self._frames.append((stamp_ns, frame))
        previous = self._previous(stamp_ns)
        if previous is None:
            return None
        return Pair(frame, previous[1], stamp_ns, previous[0])

    def _reset_reason(self, stamp_ns: int, key: object) -> str | None:
        if not self._frames:
            return None
        if key != self._key:
            return "format_change"
        last = self._frames[-1][0]
        if stamp_ns <= last:
            return "stamp_backwards"
        if stamp_ns - last > self.reset_after_ns:
            return "stamp_jump"
        return None

    def _previous(self, stamp_ns: int) -> tuple[int, Frame] | None:
        if self.gap_frames is not None:
            return self._frames[0] if len(self._frames) == self.gap_frames + 1 else None
        # Time gap: the newest older frame at least gap_ms back; drop what is older than it.
        target = stamp_ns - int(self.gap_ms * 1e6)  # type: ignore[operator]
        while len(self._frames) > 2 and self._frames[1][0] <= target:
            self._frames.popleft()
        first = self._frames[0]
        if len(self._frames) > 1 and (first[0] <= target or len(self._frames) == self._frames.maxlen):
            # A full buffer (rate x gap_ms > max_frames) pairs with its oldest frame; the
            # pair's gap_ms tells the caller the gap it really got.
            return first
        return None
