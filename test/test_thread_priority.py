"""thread_priority: the calling thread's nice value moves, no other thread's does."""

from __future__ import annotations

import os
import threading

import pytest

from saliency_ros.thread_priority import NICE_MAX, lower_thread_priority, thread_nice


def in_new_thread(increment: int) -> tuple[int, int, int]:
    """(nice before, value returned, nice after) of a fresh thread that lowers itself."""
    seen: list[int] = []

    def body() -> None:
        tid = threading.get_native_id()
        seen.append(thread_nice(tid))
        seen.append(lower_thread_priority(increment))
        seen.append(thread_nice(tid))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return seen[0], seen[1], seen[2]


def test_lowers_the_calling_thread_only() -> None:
    main_before = thread_nice(threading.get_native_id())
    before, returned, after = in_new_thread(5)
    assert returned == after == min(before + 5, NICE_MAX)
    assert after > before or before == NICE_MAX
    assert thread_nice(threading.get_native_id()) == main_before
    assert thread_nice(os.getpid()) == main_before  # the process's main task too


def test_stops_at_the_lowest_priority() -> None:
    assert in_new_thread(NICE_MAX + 30)[2] == NICE_MAX


def test_zero_is_a_no_op_and_raising_is_refused() -> None:
    before, returned, after = in_new_thread(0)
    assert before == returned == after
    with pytest.raises(ValueError, match="only lowering"):
        lower_thread_priority(-1)
