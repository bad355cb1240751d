"""Capture everything an instance writes and ship it to the server as log frames.

File descriptors 1 and 2 themselves are pointed at pipes (``os.dup2``), so output from C
extensions, ``os.write`` and child processes is caught along with ``print``. One reader
thread per pipe splits lines and sends ``log`` frames tagged with the request id of the
moment. ``logging`` records travel in-band on the stderr pipe, marked with their level, so
their order relative to other stderr output is kept.

``flush`` is the ordering guarantee: the main loop calls it before replying, and every byte
written during a request has been sent before that request's result. When both pipes are
empty and both readers idle that is already so (the common case: a request that wrote
nothing, or whose lines went out while it ran); otherwise it writes a sentinel line into
both pipes and waits until both readers have passed it.
"""

from __future__ import annotations

import array
import contextlib
import contextvars
import fcntl
import json
import logging
import os
import select
import sys
import termios
import threading
import time
from typing import TextIO

from ember.runtime.protocol import LOG, FrameSocket

STDOUT_LEVEL = "INFO"
STDERR_LEVEL = "ERROR"

# Longer lines are cut into pieces of this size: a runaway write cannot grow a buffer
# without bound, and a log store gets entries of a sane size. (A logging record is never
# cut: its message travels whole, traceback included.)
MAX_LINE_BYTES = 64 * 1024

# A line no user output plausibly contains; the NUL bytes keep it out of ordinary text.
_SENTINEL = b"\x00ember-flush\x00"
# A logging record on the stderr pipe:
#   RS level US unix-time US request-id (may be empty) US json-encoded-message LF.
_RECORD_MARK = b"\x1e"
_FIELD_SEP = b"\x1f"
# Reader threads only move bytes; a small stack keeps the address space (and RLIMIT_AS
# headroom) small.
_READER_STACK_BYTES = 256 * 1024


def _unread(fd: int) -> int:
    """How many bytes wait in the pipe ``fd``."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count, True)
    return count[0]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


current_request: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ember_request_id", default=None
)
"""The request a piece of code works for, where several run at once (web functions set it
per ASGI task and WSGI thread): ``logging`` records carry it, so they are told apart even
when ``print`` output cannot be."""


class _RecordHandler(logging.Handler):
    """Writes each record, with its level, onto the stderr pipe as one marked line."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_record(record.levelname, self.format(record), current_request.get(),
                         record.created)
        except Exception:
            self.handleError(record)


def write_record(level: str, text: str, request_id: str | None = None,
                 created: float | None = None) -> None:
    """Write one log entry onto the stderr pipe, whole (a traceback stays one entry) and
    with its level, whatever the user did to ``logging``. Without ``request_id`` the entry
    belongs to the request of the moment (``LogCapture.request_id``)."""
    line = b"".join(
        (
            _RECORD_MARK,
            level.encode("ascii", "replace"),
            _FIELD_SEP,
            repr(time.time() if created is None else created).encode(),
            _FIELD_SEP,
            (request_id or "").encode("ascii", "replace"),
            _FIELD_SEP,
            json.dumps(text).encode(),
            b"\n",
        )
    )
    # Whatever sys.stderr still buffers was written first: keep that order.
    if sys.stderr is not None:
        sys.stderr.flush()
    _write_all(2, line)


def log_uncaught(error: dict[str, str], request_id: str | None = None) -> None:
    """Put the uncaught exception of a request (an ``error`` frame's map) in the function's
    logs: one ERROR entry with its traceback, tagged with the request."""
    text = error.get("traceback", "").rstrip() or f"{error.get('type')}: {error.get('message')}"
    with contextlib.suppress(Exception):  # out of memory, or the user closed fd 2
        write_record("ERROR", text, request_id)


def _line_stream(fd: int) -> TextIO:
    return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)


class LogCapture:
    """Redirects fds 1 and 2 and ships what arrives as ``log`` frames on ``conn``.

    ``request_id`` is read by the reader threads whenever they send a line; the main loop
    sets it before a handler runs and clears it after the reply.
    """

    def __init__(self, conn: FrameSocket) -> None:
        self.conn = conn
        self.request_id: str | None = None
        self._passed = {1: 0, 2: 0}
        self._cond = threading.Condition()
        self._broken = False
        self._read_fds: dict[int, int] = {}
        # A reader is idle while it waits for its pipe to become readable with no partial
        # line held; it stops being idle before it takes bytes out of the pipe.
        self._idle = {1: False, 2: False}

    def start(self) -> None:
        """Point fds 1 and 2 at pipes, start the readers and install the logging handler."""
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        readers = {}
        for fd in (1, 2):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            readers[fd] = read_end
        self._read_fds = dict(readers)
        # Line buffering so that print() output streams out as it happens, not at exit.
        if sys.stdout is None:
            sys.stdout = _line_stream(1)
        elif hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(line_buffering=True)
        if sys.stderr is None:
            sys.stderr = _line_stream(2)
        previous = threading.stack_size(_READER_STACK_BYTES)
        try:
            for fd, level in ((1, STDOUT_LEVEL), (2, STDERR_LEVEL)):
                threading.Thread(
                    target=self._pump,
                    args=(readers[fd], fd, level),
                    name=f"ember-log-{fd}",
                    daemon=True,
                ).start()
        finally:
            threading.stack_size(previous)
        root = logging.getLogger()
        root.handlers[:] = [_RecordHandler()]

    def flush(self, timeout: float = 5.0) -> bool:
        """Send everything written so far; ``False`` if the readers did not catch up in time."""
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass  # a handler closed or broke its stream; the fds are what matter
        if self._drained():
            return True
        with self._cond:
            targets = {fd: seen + 1 for fd, seen in self._passed.items()}
        for fd in targets:
            try:
                _write_all(fd, _SENTINEL + b"\n")
            except OSError:
                targets[fd] = 0  # the user closed this fd: nothing more can come through it
        with self._cond:
            return self._cond.wait_for(
                lambda: all(self._passed[fd] >= n for fd, n in targets.items()), timeout
            )

    def _drained(self) -> bool:
        """Whether everything written so far has already been sent, seen without a
        sentinel round trip: both pipes empty, then both readers idle. In that order: a
        reader leaves idle before it reads, and becomes idle again only once what it read
        is sent, so bytes are either still in a pipe or seen as in flight."""
        try:
            for read_fd in self._read_fds.values():
                if _unread(read_fd):
                    return False
        except OSError:
            return False
        return bool(self._read_fds) and all(self._idle.values())

    def _pump(self, read_fd: int, fd: int, level: str) -> None:
        pending = b""
        poller = select.poll()
        poller.register(read_fd, select.POLLIN)
        while True:
            self._idle[fd] = not pending
            try:
                poller.poll()
            except OSError:
                return
            self._idle[fd] = False
            try:
                chunk = os.read(read_fd, 65536)
            except OSError:
                return
            if not chunk:
                if pending:
                    self._line(pending, level)
                return
            pending += chunk
            start = 0
            while True:
                end = pending.find(b"\n", start)
                if end < 0:
                    break
                self._line(pending[start:end], level, fd)
                start = end + 1
            pending = pending[start:]
            # Keep a sentinel's worth of tail: a read can end in the middle of one.
            while len(pending) > MAX_LINE_BYTES + len(_SENTINEL):
                self._line(pending[:MAX_LINE_BYTES], level)
                pending = pending[MAX_LINE_BYTES:]

    def _line(self, raw: bytes, level: str, fd: int = 0) -> None:
        if fd and raw.endswith(_SENTINEL):
            # A partial line (print(..., end="")) may sit before the sentinel: send it first.
            before = raw[: -len(_SENTINEL)]
            if before:
                self._line(before, level)
            with self._cond:
                self._passed[fd] += 1
                self._cond.notify_all()
            return
        ts = time.time()
        if raw.startswith(_RECORD_MARK):
            parts = raw[1:].split(_FIELD_SEP, 3)
            if len(parts) == 4:
                try:
                    level = parts[0].decode("ascii")
                    ts = float(parts[1])
                    request_id = parts[2].decode("ascii") or None
                    text = json.loads(parts[3])
                except ValueError:
                    pass
                else:
                    self._send(level, ts, str(text), request_id)
                    return
        raw = raw.removesuffix(b"\r")
        for start in range(0, max(len(raw), 1), MAX_LINE_BYTES):
            self._send(level, ts, raw[start : start + MAX_LINE_BYTES].decode("utf-8", "replace"))

    def _send(self, level: str, ts: float, line: str, request_id: str | None = None) -> None:
        if self._broken:
            return
        try:
            self.conn.send({"t": LOG, "id": request_id or self.request_id, "level": level,
                            "ts": ts, "line": line})
        except OSError:
            # The server is gone; keep draining the pipe so writers never block, and let
            # the main loop notice the closed connection.
            self._broken = True
