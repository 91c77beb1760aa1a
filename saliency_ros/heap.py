"""Keep freed frame-sized blocks in the process's heap instead of handing them back to the kernel.

Every 720p frame passes through several fresh buffers of its own size: rclpy's copy of the
received message, numpy temporaries, the output's bytes and `array.array`, rclpy's copy into
the outgoing message. glibc serves a block above its mmap threshold (128 KiB, raised on the fly
only to the size last freed) from fresh pages, and trims a heap's free top beyond 128 KiB, so
each frame's buffers fault their pages in anew. Encoding a 3.7 MB 32FC1 map took 3.3 ms that way
and 0.4 ms with the blocks kept (docs/benchmark_history.md, session 29). Fixing both thresholds keeps
them: blocks up to `MMAP_THRESHOLD` come from the heap, and up to `TRIM_THRESHOLD` of free heap
stays mapped, so a node's resident memory settles at the peak of its frame buffers and stays
flat. glibc only; with another C library nothing changes.
"""

from __future__ import annotations

import ctypes

# mallopt's parameter numbers (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# glibc's own ceiling for its dynamic mmap threshold on 64-bit systems; above the largest frame a
# node accepts (`max_image_pixels` 2560 x 1440 as 32FC1: 14.7 MB).
MMAP_THRESHOLD = 32 << 20
# Twice the mmap threshold, the ratio glibc's dynamic thresholds keep.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def keep_freed_frames() -> bool:
    """Set the calling process's malloc thresholds (see the module docstring). Whether they were
    set: False where the C library has no `mallopt` or refuses the values."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
