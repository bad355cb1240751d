"""Process helpers of the runtime: libc, dying with the parent, yielding to the server.

A leaf module (standard library only, nothing of the runtime imported) so that the
instance main loop, the zygote and the custom-runtime server all use it without importing
each other.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


@functools.cache
def libc() -> Any:
    """The C library, through ``ctypes``; cached so that the zygote loads it once and its
    forks find it ready."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def set_parent_death_signal(expected_parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit if it already has.

    The check after ``prctl`` closes the race where the parent died between the fork and
    the call: the process was then re-parented and the signal would never come.
    ``expected_parent`` 0 skips that check: in a PID namespace of its own (the sandboxed
    zygote) the parent is the namespace's init, whose pid says nothing.
    """
    if sys.platform.startswith("linux"):
        # Without prctl the instance only notices its parent's death when its socket closes.
        with contextlib.suppress(OSError, AttributeError):
            libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if expected_parent and os.getppid() != expected_parent:
        os._exit(1)


def yield_to_the_server() -> None:
    """Run this process, and every process it forks, under ``SCHED_BATCH``.

    Instances are woken by the server's frames. Under the default policy a woken process
    preempts the one that woke it: the server, mid-way through its event loop, handed the
    CPU to each instance it had just written to and came back for the next request after
    a context switch each way. A batch process waits for its turn instead (its share of
    the CPU is the same): at 32 connections on 2 cores the server then made ~25 % fewer
    system calls' worth of switching and served ~10 % more warm invocations; at one
    connection nothing changes (the server is waiting, the instance runs at once).
    Linux only; elsewhere, or refused, nothing changes."""
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is None:
        return
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, batch, os.sched_param(0))


def connect(path: str, who: str) -> socket.socket | None:
    """A Unix stream connection to the server at ``path``, or None when it cannot be
    made (said on stderr, naming ``who``: the process has nothing else to say it with)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        print(f"{who}: cannot connect to {path}: {exc}", file=sys.stderr)
        return None
    return sock
