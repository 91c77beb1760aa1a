"""Stop signals in the nodes' processes (nodes.base): each raises KeyboardInterrupt in the main
thread and is remembered, so a RuntimeError that pybind11 put in its place while spinning is
read as the stop it was; any other RuntimeError still propagates."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from rclpy.executors import ExternalShutdownException

from saliency_ros.nodes import base


@pytest.fixture
def no_signal_yet(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    event = threading.Event()
    monkeypatch.setattr(base, "_SIGNALLED", event)
    return event


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_interrupts_and_is_remembered(no_signal_yet: threading.Event, signum: int) -> None:
    with pytest.raises(KeyboardInterrupt, match=f"signal {int(signum)}"):
        base._interrupt(signum, None)
    assert no_signal_yet.is_set()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, ExternalShutdownException])
def test_spinning_ends_quietly_on_a_stop(no_signal_yet: threading.Event, stop: type[BaseException]) -> None:
    with base.stopped_by_signal():
        raise stop()


def test_a_runtime_error_is_a_stop_only_after_a_signal(no_signal_yet: threading.Event) -> None:
    with pytest.raises(RuntimeError, match="broken"), base.stopped_by_signal():
        raise RuntimeError("broken")
    with pytest.raises(KeyboardInterrupt):
        base._interrupt(signal.SIGINT, None)
    with base.stopped_by_signal():
        raise RuntimeError("Unable to convert call argument")


def test_other_errors_propagate(no_signal_yet: threading.Event) -> None:
    no_signal_yet.set()
    with pytest.raises(ValueError), base.stopped_by_signal():
        raise ValueError("not a stop")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_a_node_loads_is_noted_not_raised(no_signal_yet: threading.Event, signum: int) -> None:
    """`saliency-ros run --node`: a node that is loading when the supervisor stops it finishes
    and reports whether it configured; the stop is then read from `stop_signalled`."""
    before = signal.getsignal(signum)
    with base.signals_held():
        os.kill(os.getpid(), signum)
        time.sleep(0.05)  # the handler runs in the main thread between bytecodes
        assert base.stop_signalled()
    assert signal.getsignal(signum) is before
