"""Stop signals in the nodes' processes (nodes.base): each raises KeyboardInterrupt in the main
thread and is remembered, so a RuntimeError that pybind11 put in its place while spinning is
read as the stop it was."""

from __future__ import annotations

import signal
import threading

import pytest

from saliency_ros.nodes import base


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_interrupts_and_is_remembered(monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    monkeypatch.setattr(base, "_SIGNALLED", threading.Event())
    assert not base.interrupted()
    with pytest.raises(KeyboardInterrupt, match=f"signal {int(signum)}"):
        base._interrupt(signum, None)
    assert base.interrupted()
