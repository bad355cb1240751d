"""The zygote: an interpreter with the runtime already imported that forks new instances.

Started by the server as::

    python -P -m ember.runtime.zygote SOCKET_PATH PARENT_PID

it connects to the server's socket, says hello, then answers ``spawn`` requests by forking:
the child becomes an instance (``ember.runtime.main.run``) and connects to the instance
socket named in the request, while the zygote replies ``spawned`` with the child's pid. A
fork costs a millisecond or two, against tens of milliseconds for a fresh interpreter,
because the imports are already done and their pages are shared copy-on-write.

The zygote reaps its children and reports each exit (``exited`` with the status or the
signal), which is how the server tells an out-of-memory kill or a crash from a clean exit.

A ``spawn`` with ``"preload": true`` forks the version's preloader instead of an instance
(``ember.runtime.preload``): it confines itself, imports the version's dependencies and
serves the same ``spawn`` requests as this zygote, from its own connection.

Fork safety: the zygote stays single-threaded — no reader threads, no event loop — so the
child never inherits a lock held by a thread that does not exist after the fork. SIGCHLD
is watched through ``signal.set_wakeup_fd`` and a ``selectors`` loop instead.
"""

from __future__ import annotations

# Imported here so that every forked instance finds them loaded: the runtime itself and
# the modules most handlers use.
import asyncio
import base64
import collections
import contextlib
import dataclasses
import datetime
import decimal
import errno
import gc
import hashlib
import inspect
import json
import logging
import os
import re
import selectors
import signal
import socket
import sys
import traceback
import typing
import uuid

from ember.runtime import (
    asgi,
    capture,
    confine,
    context,
    custom,
    main,
    preload,
    process,
    protocol,
    responders,
    web,
    wsgi,
)
from ember.runtime.protocol import FrameSocket, Message

PRELOADED = (asyncio, base64, collections, contextlib, dataclasses, datetime, decimal,
             hashlib, inspect, json, logging, re, traceback, typing, uuid,
             capture, confine, context, main, responders, web,
             asgi, wsgi, custom)  # the web servers: ~28 ms of http.client and friends


class Zygote:
    """The zygote's loop: spawn requests from the server, exits of children to the server."""

    def __init__(self, conn: FrameSocket) -> None:
        self.conn = conn
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector = selectors.DefaultSelector()

    def serve(self) -> None:
        """Run until the server closes the control connection."""
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self._wake_write.fileno(), warn_on_full_buffer=False)
        self._selector.register(self.conn.sock, selectors.EVENT_READ, "control")
        self._selector.register(self._wake_read, selectors.EVENT_READ, "child")
        # Objects made so far live as long as the zygote: freezing them keeps the
        # children's garbage collector from touching (and so copying) their pages.
        gc.freeze()
        self.conn.send({"t": protocol.HELLO, "pid": os.getpid()})
        while True:
            for key, _ in self._selector.select():
                if key.data == "child":
                    self._drain_wakeups()
                    self._reap()
                    continue
                message = self.conn.recv()
                if message is None:
                    return
                if message["t"] == protocol.SPAWN:
                    self._spawn(message)
                elif message["t"] == protocol.KILL:
                    # A child the server cannot name: in a PID namespace of its own, the
                    # pids this zygote reports are not the server's.
                    with contextlib.suppress(OSError):
                        os.kill(int(message["pid"]), signal.SIGKILL)

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_read.recv(4096):
                pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            exited: Message = {"t": protocol.EXITED, "pid": pid, "status": None, "signal": None}
            if os.WIFSIGNALED(status):
                exited["signal"] = os.WTERMSIG(status)
            else:
                exited["status"] = os.waitstatus_to_exitcode(status)
            self.conn.send(exited)

    def _spawn(self, message: Message) -> None:
        zygote_pid = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            self.conn.send({"t": protocol.SPAWN_ERROR, "req": message["req"], "error": str(exc)})
            return
        if pid == 0:
            self._become_instance(message, zygote_pid)
        self.conn.send({"t": protocol.SPAWNED, "req": message["req"], "pid": pid})

    def _become_instance(self, message: Message, zygote_pid: int) -> None:
        """In the child: drop the zygote's plumbing and run the instance — or, for a
        ``spawn`` with ``preload``, the version's preloader (``ember.runtime.preload``);
        never returns."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self._selector.close()
            self._wake_read.close()
            self._wake_write.close()
            self.conn.close()
            # No gc.unfreeze(): the frozen objects are the zygote's, shared copy-on-write;
            # collecting them in every child would copy their pages for nothing.
            confinement = confine.Confinement.from_message(message.get("confine"))
            if message.get("preload"):
                status = preload.run(str(message["connect"]), str(message["id"]), zygote_pid,
                                     confinement, lambda conn: Zygote(conn).serve())
            else:
                status = main.run(str(message["connect"]), str(message["id"]), zygote_pid,
                                  confinement)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)


def run(socket_path: str, parent_pid: int) -> int:
    """Be the zygote: connect to the server and serve spawn requests."""
    process.set_parent_death_signal(parent_pid)
    process.yield_to_the_server()  # its forks, the instances, inherit the policy
    sock = process.connect(socket_path, "ember zygote")
    if sock is None:
        return 2
    conn = FrameSocket(sock)
    try:
        Zygote(conn).serve()
    except OSError as exc:
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
            raise
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m ember.runtime.zygote SOCKET_PATH PARENT_PID", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(sys.argv[1], int(sys.argv[2])))
