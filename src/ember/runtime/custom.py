"""Custom runtimes inside an instance: the user's own HTTP server, any language, started by
a command with ``$PORT`` set, probed until ready, health-checked while it runs, and reached
through a local HTTP connection per worker thread."""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from ember.runtime.health import HealthChecker
from ember.runtime.process import libc, set_parent_death_signal
from ember.runtime.protocol import HOP_BY_HOP, Message
from ember.runtime.responders import Responder
from ember.runtime.spec import HealthCheck, StartupProbe
from ember.runtime.web import request_headers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Methods that may be sent twice with the effect of once (RFC 9110, 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class _AppConnection(http.client.HTTPConnection):
    """A connection to the app that counts the bytes of the current request the kernel
    took, so that a request that failed is known to have reached nothing."""

    accepted = 0

    def send(self, data: Any) -> None:
        if not isinstance(data, bytes | bytearray):
            super().send(data)
            self.accepted += 1
            return
        if self.sock is None:
            self.connect()
        view = memoryview(data)
        while view:
            sent = self.sock.send(view)
            self.accepted += sent
            view = view[sent:]


def _closed_by_app(sock: socket.socket) -> bool:
    """Whether an idle kept-alive connection has been closed by the app: it is then
    readable (the end of the stream, or bytes no request asked for)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _may_resend(method: str, accepted: int, exc: BaseException) -> bool:
    """Whether a request that failed on a reused connection may go again on a new one:
    when no byte of it was taken, or when it is idempotent and the app closed the
    connection without a byte of answer (it may have acted on it: only idempotent
    requests can be repeated then)."""
    if accepted == 0 and isinstance(exc, OSError):
        return True
    return method in IDEMPOTENT and isinstance(
        exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError
    )


class CustomServer:
    """The user's HTTP server: started by ``command`` in the code directory with ``$PORT``
    set; ready once ``GET probe_path`` answers below 400; replaced (the instance exits)
    after ``failure_threshold`` failed health checks in a row, or when it exits."""

    def __init__(self, command: list[str], code_dir: str, concurrency: int,
                 startup_probe: StartupProbe,
                 health_check: HealthCheck | None,
                 on_fatal: Callable[[str], None]) -> None:
        self.command = command
        self.code_dir = code_dir
        self.probe = startup_probe
        self.health = health_check
        self.on_fatal = on_fatal
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ember-proxy")
        self._local = threading.local()
        self._stopping = threading.Event()
        self._inflight: dict[str, http.client.HTTPConnection] = {}
        self._checker: HealthChecker | None = None

    def start(self, timeout_s: float) -> None:
        import resource

        if resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
            print("ember: no cgroups on this server, so memory is bounded by address space "
                  "(RLIMIT_AS), which the command inherits: runtimes that reserve much of it "
                  "(Node.js, the JVM, Go) may fail to start; run Ember where cgroups work",
                  file=sys.stderr, flush=True)
        self.port = free_port()
        environment = {**os.environ, "PORT": str(self.port)}
        with contextlib.suppress(OSError):
            libc()  # loaded before the fork: the child only calls into it
        try:
            # The user's server goes when the instance goes, however the instance ends.
            self.process = subprocess.Popen(
                self.command, cwd=self.code_dir, env=environment, stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=functools.partial(set_parent_death_signal, os.getpid()),
            )
        except OSError as exc:
            raise RuntimeError(f"cannot start the command {self.command!r}: {exc}") from exc
        self._wait_ready(min(self.probe.timeout_s, timeout_s))
        threading.Thread(target=self._watch, name="ember-custom-watch", daemon=True).start()
        if self.health is not None:
            self._checker = HealthChecker(self.health, self._get, self.on_fatal)
            self._checker.start()

    def _get(self, path: str, timeout_s: float) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request("GET", path, headers={"User-Agent": "ember-probe"})
            response = conn.getresponse()
            response.read()
            return int(response.status)
        finally:
            conn.close()

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        path = self.probe.path
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        delay = 0.02
        while True:
            status = self.process.poll()
            if status is not None:
                raise RuntimeError(
                    f"the command {self.command!r} exited with status {status} before its "
                    f"startup probe GET {path} succeeded"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                raise TimeoutError(
                    f"the startup probe GET {path} on $PORT ({self.port}) did not succeed "
                    f"within {timeout_s:g} s: {last}"
                )
            try:
                code = self._get(path, max(min(left, 2.0), 0.05))
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if code < 400:
                    return
                last = f"it answered {code}"
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.2)

    def _watch(self) -> None:
        assert self.process is not None
        status = self.process.wait()
        if not self._stopping.is_set():
            self.on_fatal(f"the command {self.command!r} exited with status {status}")

    def _connection(self) -> tuple[_AppConnection, bool]:
        """This worker thread's connection to the app, and whether it served a request
        before. A kept-alive connection the app has closed meanwhile (Node closes one idle
        for 5 s) is not reused: the proxy would write into a dead socket."""
        conn: _AppConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _AppConnection("127.0.0.1", self.port)
            self._local.conn = conn
        elif conn.sock is not None and _closed_by_app(conn.sock):
            conn.close()
        return conn, conn.sock is not None

    def submit(self, request: Message, responder: Responder) -> None:
        self.pool.submit(self._proxy, request, responder)

    def _proxy(self, request: Message, responder: Responder) -> None:
        request_id = request["id"]
        method = str(request["method"])
        target = quote(str(request["path"]))
        query = bytes(request.get("query") or b"")
        if query:
            target += "?" + query.decode("latin-1")
        body = bytes(request.get("body") or b"")
        headers = request_headers(request)
        if not any(name == b"host" for name, _ in headers):
            headers.append((b"host", f"127.0.0.1:{self.port}".encode()))  # HTTP/1.1 needs one
        conn, reused = self._connection()
        try:
            try:
                response = self._send(conn, request_id, method, target, headers, body)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if not (reused and _may_resend(method, conn.accepted, exc)):
                    raise
                # The app closed the kept-alive connection as it was reused: once more, on
                # a connection of its own.
                response = self._send(conn, request_id, method, target, headers, body)
            responder.start(response.status, [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in response.getheaders()
                if k.lower().encode("latin-1") not in HOP_BY_HOP
                and k.lower() != "content-length"
            ])
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    break
                responder.body(chunk, True)
            response.close()  # read to its end: the connection can take the next request
            responder.body(b"", False)
            if response.will_close:
                conn.close()
        except BaseException as exc:
            conn.close()  # whatever state it was left in, the next request reconnects
            if isinstance(exc, OSError | http.client.HTTPException):
                exc = ConnectionError(f"the custom runtime did not answer: "
                                      f"{type(exc).__name__}: {exc}")
            responder.fail(exc)
        finally:
            self._inflight.pop(request_id, None)

    def _send(self, conn: _AppConnection, request_id: str, method: str, target: str,
              headers: list[tuple[bytes, bytes]], body: bytes) -> http.client.HTTPResponse:
        """Send one request and read the head of its response."""
        self._inflight[request_id] = conn
        conn.accepted = 0
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            if name not in HOP_BY_HOP and name != b"content-length":
                conn.putheader(name.decode("latin-1"), value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return conn.getresponse()

    def cancel(self, request_id: str) -> None:
        conn = self._inflight.get(request_id)
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def _kill(self) -> None:
        self._stopping.set()
        if self._checker is not None:
            self._checker.stop()
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(2.0)

    def stop(self, grace_s: float) -> None:
        self._stopping.set()
        if self._checker is not None:
            self._checker.stop()
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(max(grace_s - 0.5, 0.1))
            except subprocess.TimeoutExpired:
                self._kill()
        self.pool.shutdown(wait=False, cancel_futures=True)
