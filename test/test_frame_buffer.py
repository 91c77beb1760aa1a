"""FramePairBuffer: gaps in frames and milliseconds, every reset rule, bounded memory."""

from __future__ import annotations

import pytest

from saliency_ros.frame_buffer import FramePairBuffer

MS = 1_000_000
KEY = (480, 640, "bgr8")


def test_gap_in_frames_pairs_current_with_k_back() -> None:
    buf: FramePairBuffer[str] = FramePairBuffer(gap_frames=2)
    out = [buf.push(f"f{i}", i * 33 * MS, KEY) for i in range(5)]
    assert out[:2] == [None, None]
    assert [(p.current, p.previous) for p in out[2:]] == [("f2", "f0"), ("f3", "f1"), ("f4", "f2")]
    assert len(buf) == 3  # bounded by the gap


def test_gap_in_ms_picks_the_newest_frame_at_least_that_old() -> None:
    buf: FramePairBuffer[int] = FramePairBuffer(gap_frames=None, gap_ms=100)
    period = 1e9 / 30
    pairs = [buf.push(i, int(i * period), KEY) for i in range(8)]
    assert pairs[:3] == [None, None, None]
    assert [(p.current, p.previous) for p in pairs[3:]] == [(3, 0), (4, 1), (5, 2), (6, 3), (7, 4)]
    assert all(p.gap_ms == pytest.approx(100, abs=0.01) for p in pairs[3:])
    assert len(buf) <= 4


def test_full_buffer_pairs_with_its_oldest_frame_and_reports_the_gap() -> None:
    buf: FramePairBuffer[int] = FramePairBuffer(gap_frames=None, gap_ms=100, max_frames=3)
    pairs = [buf.push(i, i * 10 * MS, KEY) for i in range(5)]
    assert pairs[2] is not None and pairs[2].previous == 0 and pairs[2].gap_ms == 20


@pytest.mark.parametrize("stamp,key,reason", [
    (3 * 33 * MS - 50 * MS, KEY, "stamp_backwards"),  # a bag loop
    (2 * 33 * MS, KEY, "stamp_backwards"),  # a repeated stamp
    (2 * 33 * MS + 5_000 * MS, KEY, "stamp_jump"),  # the stream stalled
    (3 * 33 * MS, (720, 1280, "bgr8"), "format_change"),
    (3 * 33 * MS, (480, 640, "rgb8"), "format_change"),
])
def test_resets(stamp: int, key: tuple, reason: str) -> None:
    buf: FramePairBuffer[int] = FramePairBuffer(gap_frames=1, reset_after_ms=1000)
    for i in range(3):
        buf.push(i, i * 33 * MS, KEY)
    assert buf.push(99, stamp, key) is None  # starts over: no pair across the break
    assert buf.resets[reason] == 1 and sum(buf.resets.values()) == 1
    nxt = buf.push(100, stamp + 33 * MS, key)
    assert nxt is not None and (nxt.current, nxt.previous) == (100, 99)


@pytest.mark.parametrize("kwargs,match", [
    ({"gap_frames": None}, "exactly one"),
    ({"gap_frames": 1, "gap_ms": 50}, "exactly one"),
    ({"gap_frames": 0}, "gap_frames"),
    ({"gap_frames": None, "gap_ms": -1}, "gap_ms"),
    ({"reset_after_ms": 0}, "reset_after_ms"),
])
def test_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FramePairBuffer(**kwargs)


def test_from_parameters_follows_the_node_rule() -> None:
    """gap_ms > 0 selects a gap in time; 0 (the default) the gap in frames."""
    by_frames = FramePairBuffer.from_parameters(gap_frames=2, gap_ms=0.0, reset_after_ms=500.0)
    by_time = FramePairBuffer.from_parameters(gap_frames=2, gap_ms=40.0, reset_after_ms=500.0)
    assert (by_frames.gap_frames, by_frames.gap_ms) == (2, None)
    assert (by_time.gap_frames, by_time.gap_ms) == (None, 40.0)
    assert by_time.reset_after_ns == 500_000_000
