"""WindowStats: rate and percentiles over a sliding window, bounded memory."""

from __future__ import annotations

import math

import pytest

from saliency_ros.stream_stats import StampGaps, WindowStats


class FakeClock:
    """Deterministic time for the window arithmetic (not a mock of any middleware)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_rate_over_window() -> None:
    clock = FakeClock()
    stats = WindowStats(window_s=2.0, clock=clock)
    for _ in range(31):  # 30 Hz for one second
        stats.add()
        clock.t += 1 / 30
    clock.t -= 1 / 30
    assert stats.rate_hz() == pytest.approx(30.0, rel=1e-6)
    clock.t += 5.0  # everything ages out
    assert stats.rate_hz() == 0.0
    assert stats.total == 31


def test_percentiles_of_recent_values_only() -> None:
    clock = FakeClock()
    stats = WindowStats(window_s=1.0, clock=clock)
    stats.add(1000.0)  # old outlier
    clock.t = 2.0
    for v in range(1, 101):
        stats.add(float(v))
    p50, p95 = stats.percentiles(50, 95)
    assert p50 == pytest.approx(50.5) and p95 == pytest.approx(95.05)


def test_empty_and_bounded() -> None:
    stats = WindowStats(window_s=10.0, max_events=8)
    assert all(math.isnan(x) for x in stats.percentiles(50, 95))
    for v in range(100):
        stats.add(float(v))
    assert stats.percentiles(0)[0] == 92.0  # only the newest 8 are kept
    with pytest.raises(ValueError):
        WindowStats(window_s=0)


def test_stamp_gaps_count_frames_missing_from_a_steady_stream() -> None:
    gaps = StampGaps()
    period = 33_333_333
    stamps = [i * period for i in range(10)]  # 10 regular frames
    stamps += [stamps[-1] + 3 * period]  # two frames lost
    stamps += [stamps[-1] + period + 2_000_000]  # jitter is not a loss
    stamps += [stamps[-1] + 2 * period]  # one lost
    assert [gaps.add(s) for s in stamps][-3:] == [2, 0, 1]
    assert gaps.missing == 3 and gaps.gaps == 2
    assert gaps.add(stamps[-1]) == 0  # a repeated stamp is not a step
    assert gaps.add(0) == 0 and gaps.add(period) == 0  # a bag loop starts over ...
    assert gaps.add(period + 3_000_000_000) == 0  # ... and so does a pause
    assert gaps.missing == 3


def test_stamp_gaps_need_a_period_first() -> None:
    gaps = StampGaps()
    assert [gaps.add(s) for s in (0, 10, 100, 110, 120, 130)] == [0, 0, 0, 0, 0, 0]
    assert gaps.add(170) == 3  # median step 10 once three regular steps are known
    with pytest.raises(ValueError):
        StampGaps(tolerance=1.0)
