"""NewestSlot: hand the newest frame from the executor thread to an inference thread.

A node that queued every frame would fall further behind each time inference is slower than
the camera, and its latency and memory would grow without bound. The slot holds one item:
a new frame replaces an unprocessed one, and the replaced frame is counted as dropped, so the
worker always works on the freshest frame and nothing is lost silently.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

Item = TypeVar("Item")


class NewestSlot(Generic[Item]):
    """One-item, thread-safe mailbox. `put` never blocks; `take` waits for an item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Item | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: Item) -> bool:
        """Store `item`; True when it replaced one the worker had not taken (a drop)."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> Item | None:
        """The newest item, or None on timeout or once the slot is closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        """Forget a pending item (on deactivate); it counts as dropped, like a replaced one."""
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = None

    @property
    def pending(self) -> int:
        """1 while an item waits for the worker, else 0."""
        with self._cond:
            return int(self._item is not None)

    def close(self) -> None:
        """Wake the worker so it can exit; later `take` calls return None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
