"""Stopping every process of an idle instance, and letting them run again (idle mode).

A frozen instance uses no CPU at all — its background threads and the processes it
started included — and keeps its memory, so the next request finds it warm. Two ways:

- ``CgroupFreezer``: the instance's cgroup freezer (v1 ``freezer.state``, v2
  ``cgroup.freeze``). The kernel stops every task of the cgroup, those forked meanwhile
  included, and no user code can tell. On v1 a frozen task does not die of SIGKILL before
  it is thawed (``holds_signals``): whoever kills a frozen instance thaws it right after.
- ``SignalFreezer``: SIGSTOP to the instance process and each of its descendants, SIGCONT
  to the same ones on thaw; the fallback without a cgroup freezer. A process may catch
  SIGCONT (and see it was stopped); a stopped process dies of SIGKILL at once.

Freezing takes a while (tasks stop at their next return to user space): ``freeze`` starts
it and ``frozen`` says when it is done. ``thaw`` is one write or a few ``kill`` calls, cheap
enough for the path of a request.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Protocol

_SIGKILL_BIT = 1 << (signal.SIGKILL - 1)
# Task states (/proc/<pid>/task/<tid>/stat) of a thread that runs no more: stopped, traced,
# zombie, dead.
_STOPPED_STATES = frozenset("TtZXx")


class Freezer(Protocol):
    """Stops and resumes every process of one instance."""

    @property
    def holds_signals(self) -> bool:
        """Whether a fatal signal waits for the thaw (cgroup v1): a frozen instance killed
        from outside does not die, and nothing reports it, until it is thawed."""
        ...

    def freeze(self) -> None:
        """Start stopping every process; raises ``OSError`` when it cannot."""
        ...

    def frozen(self) -> bool:
        """Whether every process is stopped now; poll it after ``freeze``."""
        ...

    def thaw(self) -> None:
        """Let every process run again; raises ``OSError`` when it cannot."""
        ...


class CgroupFreezer:
    """The freezer of one cgroup directory, v1 or v2."""

    def __init__(self, path: Path, version: int) -> None:
        self.path = path
        self.version = version
        self.holds_signals = version == 1
        if version == 1:
            self._state = str(path / "freezer.state")
            self._frozen, self._thawed = b"FROZEN", b"THAWED"
        else:
            self._state = str(path / "cgroup.freeze")
            self._frozen, self._thawed = b"1", b"0"

    def freeze(self) -> None:
        _write(self._state, self._frozen)

    def frozen(self) -> bool:
        if self.version == 1:
            # Reading the state is what moves it from FREEZING to FROZEN once every task
            # has stopped.
            return Path(self._state).read_bytes().strip() == b"FROZEN"
        events = (self.path / "cgroup.events").read_text().splitlines()
        return "frozen 1" in events

    def thaw(self) -> None:
        _write(self._state, self._thawed)


def _write(path: str, value: bytes) -> None:
    # os.open/os.write: no buffered file object to build on the path of a request.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value)
    finally:
        os.close(fd)


class SignalFreezer:
    """SIGSTOP and SIGCONT to the process ``pid`` and its descendants."""

    holds_signals = False

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.stopped: list[int] = []  # in the order they were stopped

    def freeze(self) -> None:
        self.stopped = []
        self._stop_new()

    def frozen(self) -> bool:
        # Once every process stopped so far has stopped, none can fork any more: a tree
        # read after that is complete. A process it shows that was not stopped was forked
        # before its parent stopped.
        if not all(_stopped(pid) for pid in self.stopped):
            return False
        return not self._stop_new()

    def thaw(self) -> None:
        stopped, self.stopped = self.stopped, []
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _stop_new(self) -> bool:
        """SIGSTOP every process of the tree not stopped yet; whether there was one."""
        known = set(self.stopped)
        found = False
        for pid in process_tree(self.pid):
            if pid in known:
                continue
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            self.stopped.append(pid)
            found = True
        return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and its living descendants, parents first (empty when ``pid`` is gone)."""
    if not os.path.exists(f"/proc/{pid}"):
        return []
    tree, index = [pid], 0
    while index < len(tree):
        tree.extend(_children(tree[index]))
        index += 1
    return tree


def _children(pid: int) -> list[int]:
    """The children of ``pid``, from each of its threads' ``children`` file (Linux 4.2+,
    CONFIG_PROC_CHILDREN; without it only the instance process itself is stopped)."""
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in threads:
        with contextlib.suppress(OSError, ValueError), \
                open(f"/proc/{pid}/task/{tid}/children", "rb") as children:
            found.extend(int(child) for child in children.read().split())
    return found


def _stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (or the process is gone)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as stat:
                state = stat.read().rpartition(b")")[2].split()[0].decode()
        except (OSError, IndexError):
            continue  # the thread ended
        if state not in _STOPPED_STATES:
            return False
    return True


def fatal_signal_pending(pid: int) -> bool:
    """Whether SIGKILL waits for the process ``pid`` (sent while it was frozen on cgroup v1)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            lines = status.read().splitlines()
    except OSError:
        return False
    for line in lines:
        if line.startswith((b"ShdPnd:", b"SigPnd:")):
            with contextlib.suppress(ValueError):
                if int(line.split()[1], 16) & _SIGKILL_BIT:
                    return True
    return False
