"""The supervisor of `saliency-ros run` (nodes/processes.py) with real child processes: small
Python programs that behave as a node does (stop cleanly on SIGTERM, fail at start, ignore a
stop), so the signal handling is exercised without ROS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from saliency_ros.nodes.processes import Child, exit_status, run_children

# A node: writes its pid, then runs until SIGTERM, which it answers by writing "stopped" and
# exiting 0, as the nodes' handlers (base.init_ros) do.
NODE = textwrap.dedent("""
    import pathlib, signal, sys, time
    out = pathlib.Path(sys.argv[1])
    def stop(signum, frame):
        out.with_suffix(".stopped").write_text(signal.Signals(signum).name)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    out.write_text(str(__import__("os").getpid()))
    while True:
        time.sleep(0.05)
""")


def node(tmp_path: Path, name: str, program: str = NODE) -> Child:
    script = tmp_path / f"{name}.py"
    script.write_text(program)
    return Child(name, [sys.executable, str(script), str(tmp_path / f"{name}.pid")])


def wait_for(path: Path, timeout: float = 10.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.is_file() and (text := path.read_text()):
            return text
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written within {timeout} s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Starts run_children in a process of its own, as `saliency-ros run` runs it, so that
    signals can be sent to it; it prints its status on its last line. Whatever a test leaves
    running (it failed half-way) is killed afterwards."""
    started: list[subprocess.Popen] = []

    def start(children: list[Child], grace_s: float = 20.0) -> subprocess.Popen:
        program = textwrap.dedent(f"""
            from saliency_ros.nodes.processes import Child, run_children
            children = [Child(n, a) for n, a in {[(c.name, list(c.argv)) for c in children]!r}]
            print(run_children(children, grace_s={grace_s}), flush=True)
        """)
        started.append(subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2]))
        return started[-1]

    yield start
    for pid_file in tmp_path.glob("*.pid"):  # first: the children hold the supervisor's pipes open
        if (text := pid_file.read_text()) and alive(int(text)):
            os.kill(int(text), signal.SIGKILL)
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_a_stop_reaches_every_child_once_as_sigterm_and_the_status_is_zero(tmp_path: Path, supervise: Callable[..., subprocess.Popen]) -> None:
    children = [node(tmp_path, "a"), node(tmp_path, "b")]
    sup = supervise(children)
    pids = [int(wait_for(tmp_path / f"{c.name}.pid")) for c in children]
    assert all(os.getpgid(p) == p for p in pids)  # groups of their own: a terminal's Ctrl-C reaches the supervisor only
    sup.send_signal(signal.SIGINT)
    out, err = sup.communicate(timeout=15)
    assert out.strip() == "0", err
    assert [(tmp_path / f"{c.name}.stopped").read_text() for c in children] == ["SIGTERM", "SIGTERM"]
    assert not any(alive(p) for p in pids)


def test_a_failing_child_stops_the_others_and_its_status_is_the_bring_ups(tmp_path: Path,
        supervise: Callable[..., subprocess.Popen]) -> None:
    good = node(tmp_path, "good")
    failing = node(tmp_path, "bad", textwrap.dedent(f"""
        import pathlib, sys, time
        while not pathlib.Path({str(tmp_path / "good.pid")!r}).exists():  # the other node is up
            time.sleep(0.02)
        print("did not configure")
        sys.exit(3)
    """))
    sup = supervise([good, failing])
    out, err = sup.communicate(timeout=15)
    assert out.splitlines() == ["did not configure", "3"]  # the child's own output, then the status
    assert "bad exited with status 3; stopping the other nodes" in err
    assert (tmp_path / "good.stopped").read_text() == "SIGTERM"


def test_a_child_that_ignores_the_stop_is_killed_after_the_grace_and_that_is_an_error(tmp_path: Path,
        supervise: Callable[..., subprocess.Popen]) -> None:
    stubborn = node(tmp_path, "stubborn", NODE.replace("signal.signal(signal.SIGTERM, stop)",
                                                       "signal.signal(signal.SIGTERM, signal.SIG_IGN)"))
    sup = supervise([stubborn], grace_s=1.0)
    pid = int(wait_for(tmp_path / "stubborn.pid"))
    start = time.monotonic()
    sup.send_signal(signal.SIGTERM)
    out, err = sup.communicate(timeout=15)
    assert 1.0 <= time.monotonic() - start < 10
    assert out.strip() == "1" and "stubborn killed (still running 1 s after SIGTERM)" in err
    assert not alive(pid)


def test_a_second_signal_kills_at_once_and_is_no_error(tmp_path: Path,
        supervise: Callable[..., subprocess.Popen]) -> None:
    stubborn = node(tmp_path, "stubborn", NODE.replace("signal.signal(signal.SIGTERM, stop)",
                                                       "signal.signal(signal.SIGTERM, signal.SIG_IGN)"))
    sup = supervise([stubborn])
    pid = int(wait_for(tmp_path / "stubborn.pid"))
    sup.send_signal(signal.SIGINT)
    time.sleep(0.3)
    start = time.monotonic()
    sup.send_signal(signal.SIGINT)
    out, err = sup.communicate(timeout=15)
    assert time.monotonic() - start < 5
    assert out.strip() == "0" and "stubborn killed (SIGINT again)" in err
    assert not alive(pid)


def test_children_get_sigterm_when_the_supervisor_is_killed(tmp_path: Path, supervise: Callable[..., subprocess.Popen]) -> None:
    children = [node(tmp_path, "a"), node(tmp_path, "b")]
    sup = supervise(children)
    pids = [int(wait_for(tmp_path / f"{c.name}.pid")) for c in children]
    sup.kill()
    sup.wait()
    for c in children:
        assert wait_for(tmp_path / f"{c.name}.stopped") == "SIGTERM"
    end = time.monotonic() + 10
    while any(alive(p) for p in pids) and time.monotonic() < end:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def test_children_that_end_on_their_own_end_the_bring_up(tmp_path: Path) -> None:
    """`--duration`: every node stops by itself; a node that starts nothing (objects_node under
    shared inference) ends at once with 0."""
    done = node(tmp_path, "done", "import time; time.sleep(0.3)")
    empty = node(tmp_path, "empty", "pass")
    assert run_children([done, empty]) == 0


@pytest.mark.parametrize("returncode, status", [(0, 0), (1, 1), (-signal.SIGTERM, 143), (-signal.SIGKILL, 137)])
def test_exit_status_reads_a_death_by_signal_as_a_shell_does(returncode: int, status: int) -> None:
    assert exit_status(returncode) == status
