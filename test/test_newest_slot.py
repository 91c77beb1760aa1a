"""NewestSlot: newest item wins, replaced items are counted, close wakes the worker."""

from __future__ import annotations

import threading
import time

from saliency_ros.newest_slot import NewestSlot


def test_newest_replaces_and_counts_drops() -> None:
    slot: NewestSlot[int] = NewestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.take(0.1) == 3
    assert slot.dropped == 2
    assert slot.take(0.01) is None  # empty after take: nothing is delivered twice


def test_take_waits_for_a_producer_thread() -> None:
    slot: NewestSlot[str] = NewestSlot()
    threading.Timer(0.05, slot.put, args=("frame",)).start()
    t0 = time.monotonic()
    assert slot.take(2.0) == "frame"
    assert time.monotonic() - t0 < 1.0


def test_close_wakes_a_waiting_worker_and_reopen_restores() -> None:
    slot: NewestSlot[int] = NewestSlot()
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(slot.take()))
    worker.start()
    slot.close()
    worker.join(1.0)
    assert not worker.is_alive() and got == [None]
    slot.reopen()
    slot.put(5)
    assert slot.take(0.1) == 5


def test_clear_counts_the_forgotten_item_as_dropped() -> None:
    slot: NewestSlot[int] = NewestSlot()
    slot.put(1)
    assert slot.pending == 1
    slot.clear()
    assert slot.take(0.01) is None and slot.dropped == 1 and slot.pending == 0
    slot.clear()  # nothing pending: nothing counted
    assert slot.dropped == 1
