"""The plain process sandbox: resource limits applied to the instance from outside.

Limits are set with ``prlimit`` on the instance's pid (Linux), so the same code serves
zygote-forked instances and fresh interpreters and nothing has to run inside the child.
Memory is bounded by RLIMIT_AS (see ``base.py`` for the headroom): an allocation past it
fails and the handler sees a ``MemoryError``, which the launcher reports as
``FunctionOutOfMemory``. That is a weaker guarantee than a cgroup — memory that is mapped
but never touched counts, and C code may crash instead of raising — and is the fallback
when cgroups cannot be used.

A process of another user — an instance forked from its version's preloader, which holds
the version's user id from birth (``ember.pool.preload``) — cannot be given rlimits
without CAP_SYS_RESOURCE, which a root server may lack: it keeps the ones it inherited
from its preloader, which was given the same ones while it was still root. Those are
left as they are (``inherited``) rather than failing the start.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
from pathlib import Path

from ember.sandbox.base import Limits
from ember.sandbox.freezer import process_tree

_MIB = 1024 * 1024


def mapped_bytes(pid: int) -> int | None:
    """The address space ``pid`` has mapped (``VmSize``), or ``None`` when unknown."""
    return _status_bytes(pid, "VmSize:")


def resident_bytes(pid: int) -> int | None:
    """The memory ``pid`` has resident (``VmRSS``), or ``None`` when unknown."""
    return _status_bytes(pid, "VmRSS:")


def _status_bytes(pid: int, field: str) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return None


def inherited(pid: int) -> bool:
    """Whether ``pid`` runs as another user than this process, so keeps the rlimits it
    inherited (see the module's docstring)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1]) != os.geteuid()
    return False


def limit_open_files(pid: int, open_files: int) -> None:
    """Set RLIMIT_NOFILE of ``pid``; never above the hard limit it already has; nothing
    for a process that keeps its ``inherited`` limits."""
    if not hasattr(resource, "prlimit"):
        return
    try:
        _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    except PermissionError:
        if inherited(pid):
            return
        raise
    value = open_files if hard == resource.RLIM_INFINITY else min(open_files, hard)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (value, value))


def limit_address_space(pid: int, memory_mb: int) -> int | None:
    """Set RLIMIT_AS of ``pid`` to what it has mapped plus ``memory_mb``; the limit or None."""
    if not hasattr(resource, "prlimit"):
        return None
    baseline = mapped_bytes(pid)
    if baseline is None:
        return None
    limit = baseline + memory_mb * _MIB
    try:
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
    except PermissionError:
        if inherited(pid):
            return None
        raise
    return limit


class ProcessSandbox:
    """Resource limits on one instance process (memory by RLIMIT_AS)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.address_space_limit: int | None = None
        self._pid: int | None = None
        self._started: bytes | None = None  # the pid's start time: a reused pid differs
        self._baseline: int | None = None

    def attach(self, pid: int) -> None:
        """Apply RLIMIT_NOFILE and RLIMIT_AS to ``pid``."""
        self._pid = pid
        self._started = _start_time(pid)
        limit_open_files(pid, self.limits.open_files)
        self.address_space_limit = limit_address_space(pid, self.limits.memory_mb)
        if self.address_space_limit is not None:
            self._baseline = self.address_space_limit - self.limits.memory_mb * _MIB

    def set_limits(self, limits: Limits) -> None:
        """Re-apply the limits; raising a hard rlimit needs privileges (else ``OSError``)."""
        previous, self.limits = self.limits, limits
        if self._pid is None or (previous.memory_mb == limits.memory_mb
                                 and previous.open_files == limits.open_files):
            return  # nothing this sandbox enforces changed (the cpu share is not one)
        limit_open_files(self._pid, limits.open_files)
        if self._baseline is not None:
            # Measured at attach: what the interpreter had mapped before any user code.
            limit = self._baseline + limits.memory_mb * _MIB
            resource.prlimit(self._pid, resource.RLIMIT_AS, (limit, limit))
            self.address_space_limit = limit

    def kill_all(self) -> int:
        """SIGKILL the instance process's descendants (found through ``/proc``: those it
        started and that did not leave it, and only while it lives — the instance kills
        them before itself). How many were signalled."""
        if self._pid is None or self._started is None or _start_time(self._pid) != self._started:
            return 0  # gone, or its pid is another process's now
        killed = 0
        for pid in process_tree(self._pid)[1:]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        return killed

    def out_of_memory(self) -> bool:
        """Always ``False``: under RLIMIT_AS memory shows as a ``MemoryError`` in the handler."""
        return False

    def memory_used(self) -> int | None:
        """The resident memory of the instance's own process (``VmRSS``)."""
        return None if self._pid is None else resident_bytes(self._pid)

    def freezer(self) -> None:
        """None: the instance is frozen by signal (``SignalFreezer``)."""
        return None

    def close(self) -> None:
        """Nothing to release: the limits die with the process."""


class ProcessSandboxFactory:
    """Makes ``ProcessSandbox``es; works wherever ``prlimit`` does (Linux)."""

    name = "rlimit"

    def __init__(self) -> None:
        self.supported = sys.platform.startswith("linux") and hasattr(resource, "prlimit")

    def create(self, instance_id: str, limits: Limits) -> ProcessSandbox:
        """A sandbox applying ``limits``; ``instance_id`` is not needed here."""
        return ProcessSandbox(limits)

    def close(self) -> None:
        """Nothing to release."""


def _start_time(pid: int) -> bytes | None:
    """When ``pid`` started (``/proc/<pid>/stat`` field 22), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None
