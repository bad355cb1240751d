"""The freezers of idle mode on real processes: SIGSTOP to a process tree, and the cgroup
freezer where this machine has one (skipped, saying why, where it does not)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.sandbox import CgroupSandboxFactory, CgroupUnavailable, Limits
from ember.sandbox.freezer import (
    CgroupFreezer,
    Freezer,
    SignalFreezer,
    fatal_signal_pending,
    process_tree,
)
from tests.sandbox.test_cgroups import _close
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

# A process that spins in a thread and in a child it forks, and says when both run.
SPINNERS = """
import subprocess, sys, threading
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
subprocess.Popen([sys.executable, "-c", "while True: pass"])
print("spinning", flush=True)
spin()
"""


@pytest.fixture
def spinners() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", SPINNERS], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"spinning\n"
    try:
        yield process
    finally:
        for pid in reversed(process_tree(process.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()


def ticks(pid: int) -> int:
    """utime + stime of every thread of ``pid`` and its descendants."""
    total = 0
    for member in process_tree(pid):
        for tid in os.listdir(f"/proc/{member}/task"):
            fields = Path(f"/proc/{member}/task/{tid}/stat").read_text().rpartition(")")[2]
            total += int(fields.split()[11]) + int(fields.split()[12])
    return total


def uses_no_cpu(freezer: Freezer, pid: int) -> None:
    freezer.freeze()
    wait_until(freezer.frozen, message="every process stopped")
    frozen = ticks(pid)
    threading.Event().wait(0.3)  # real time passes: not one tick more
    assert ticks(pid) == frozen
    freezer.thaw()
    wait_until(lambda: ticks(pid) > frozen, message="the thawed processes run again")


def test_sigstop_stops_a_process_and_its_descendants(
    spinners: subprocess.Popen[bytes],
) -> None:
    tree = process_tree(spinners.pid)
    assert len(tree) == 2 and tree[0] == spinners.pid
    freezer = SignalFreezer(spinners.pid)
    uses_no_cpu(freezer, spinners.pid)
    assert freezer.stopped == []
    assert not freezer.holds_signals


def test_the_cgroup_freezer_stops_the_cgroup_and_holds_a_kill(
    spinners: subprocess.Popen[bytes],
) -> None:
    try:
        factory = CgroupSandboxFactory.probe()
    except CgroupUnavailable as exc:
        pytest.skip(f"cgroups cannot bound memory here: {exc}")
    try:
        if "freezer" not in factory.directories:
            pytest.skip("the cgroup freezer is not available here")
        assert "freezer" in factory.enforced
        sandbox = factory.create("frozen", Limits(memory_mb=256))
        sandbox.attach(spinners.pid)
        for child in process_tree(spinners.pid)[1:]:  # forked before the attach
            sandbox.attach(child)
        freezer = sandbox.freezer()
        assert isinstance(freezer, CgroupFreezer)
        uses_no_cpu(freezer, spinners.pid)
        sandbox.set_limits(Limits(memory_mb=128))  # the freezer has no limit to write
        freezer.freeze()
        wait_until(freezer.frozen, message="frozen")
        spinners.kill()
        if freezer.holds_signals:  # cgroup v1: the kill waits for the thaw
            assert fatal_signal_pending(spinners.pid)
            assert spinners.poll() is None
        assert sandbox.kill_all() == 2  # and thaws, so that they die
        assert spinners.wait() == -signal.SIGKILL
        wait_until(lambda: sandbox.kill_all() == 0, message="every process ended")
        sandbox.close()
    finally:
        _close(factory)


def test_a_pending_kill_is_seen_only_when_there_is_one(
    spinners: subprocess.Popen[bytes],
) -> None:
    assert not fatal_signal_pending(spinners.pid)
    assert not fatal_signal_pending(2**22 + 1)  # no such process
