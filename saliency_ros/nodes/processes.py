"""One process per node under `saliency-ros run`, as `ros2 launch` starts them.

With both perception nodes in one process they share its interpreter lock and its DDS
participant. Measured here at 720p@30 Hz (docs/benchmark_history.md, session 37; three A/B
sets, 7 runs of one process against 9 of one process per node, interleaved), `/saliency` in
mono8 came back 1.2 ms later at p50 on average in one process (17.0 against 15.8 ms; in two
sets 1.2-2.5 ms later run against run, in the third level), for about 200 MiB less memory. So
`saliency-ros run` starts each node in a child process of its own (`saliency-ros run --node
NAME`, the same parameters files), and `--one-process` keeps the one-process bring-up for
boards where memory counts more, or several cameras.

This module is the supervisor in the parent, which imports no ROS: it starts the children,
passes a stop on, and ends the bring-up when a node fails.

- The children run in a process group of their own, so Ctrl-C in a terminal reaches only this
  process. It sends each child one SIGTERM (the nodes treat SIGTERM as SIGINT; a second signal
  while a node shuts down would interrupt its shutdown), waits `grace_s`, then kills what is
  left. A second Ctrl-C kills at once.
- A child that exits with an error (a node that did not configure) stops the others, and its
  status is the bring-up's. A node's stop that the supervisor asked for is not an error.
- If the supervisor itself dies without passing a stop on (SIGKILL), the kernel sends each child
  SIGTERM (Linux `PR_SET_PDEATHSIG`), so no node is left running without it.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

NODES = ("camera_source", "objects_node", "saliency_node")  # what `saliency-ros run --node` runs
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Child:
    """A node's process: its name (for messages) and its command line."""

    name: str
    argv: Sequence[str]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: 128 + N for a death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run_children(children: Sequence[Child], grace_s: float = 20.0, poll_s: float = 0.05,
                 echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> int:
    """Start `children`, wait until every one has ended and return the bring-up's status: 0, or
    the first error: a child that failed on its own, one that failed while it stopped, or 1 for
    one that had to be killed after `grace_s`. SIGINT or SIGTERM to this process stops the
    children (module docstring); a second one kills them, and that is no error."""
    procs: dict[str, subprocess.Popen] = {}
    stopped_at: float | None = None  # when the supervisor passed a stop on
    killed: dict[str, bool] = {}  # child -> whether its kill is an error (not asked for by a signal)
    status = 0

    def stop() -> None:
        nonlocal stopped_at
        stopped_at = time.monotonic()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def kill(why: str, error: bool) -> None:
        for name, proc in procs.items():
            if proc.poll() is None:
                echo(f"saliency-ros run: {name} killed ({why})")
                killed[name] = error
                proc.kill()

    def on_signal(signum: int, frame: object) -> None:
        if stopped_at is None:
            stop()
        else:
            kill(f"{signal.Signals(signum).name} again", error=False)

    def failed(name: str, returncode: int) -> int | None:
        """The status a child's end gives the bring-up, or None if it is none of its errors."""
        if returncode == 0:
            return None
        if name in killed:
            return 1 if killed[name] else None
        if stopped_at is not None and returncode == -signal.SIGTERM:
            return None  # stopped before its handlers were in place
        return exit_status(returncode)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        for child in children:
            procs[child.name] = subprocess.Popen(list(child.argv), process_group=0, preexec_fn=_die_with_parent)
            if stopped_at is not None:  # a signal came while the others started
                procs[child.name].send_signal(signal.SIGTERM)
        ended: set[str] = set()
        while len(ended) < len(procs):
            for name, proc in procs.items():
                if name in ended or proc.poll() is None:
                    continue
                ended.add(name)
                code = failed(name, proc.returncode)
                if code is not None and status == 0:
                    status = code
                    if stopped_at is None:
                        echo(f"saliency-ros run: {name} exited with status {code}; stopping the other nodes")
                        stop()
            if stopped_at is not None and not killed and time.monotonic() - stopped_at > grace_s:
                kill(f"still running {grace_s:g} s after SIGTERM", error=True)
            time.sleep(poll_s)
    finally:
        for proc in procs.values():  # an exception here must not leave nodes running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return status
