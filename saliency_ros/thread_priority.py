"""Lower the CPU priority of the calling thread only.

On a two-core board the saliency and objects models compete for the same cores; `/saliency`
has the tighter latency target (15 ms against the mask's 30 ms at 720p), so the objects
node's inference thread yields to it (docs/benchmark_history.md, session 19). Linux schedules
threads as tasks with their own nice value, so `setpriority` on the thread's native id moves
that thread alone: the node's executor and DDS threads, and every other node in the process,
keep theirs. Raising a nice value needs no privileges; lowering it again would, so a node
sets it once, on the thread it starts, and never undoes it.
"""

from __future__ import annotations

import os
import threading

NICE_MAX = 19


def thread_nice(native_id: int) -> int:
    """The nice value of one thread of this process (`threading.Thread.native_id`)."""
    return os.getpriority(os.PRIO_PROCESS, native_id)


def lower_thread_priority(increment: int) -> int:
    """Add `increment` (>= 0) to the calling thread's nice value, up to 19; the new value."""
    if increment < 0:
        raise ValueError(f"only lowering is allowed (an increment >= 0), got {increment}")
    tid = threading.get_native_id()
    nice = min(thread_nice(tid) + increment, NICE_MAX)
    os.setpriority(os.PRIO_PROCESS, tid, nice)
    return nice
