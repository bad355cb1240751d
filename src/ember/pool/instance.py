"""One instance as the server sees it: a process serving one function version, one request
at a time, over a framed Unix socket (``ember.runtime.protocol``).

State machine::

    starting ──ready──▶ idle ⇄ busy ──stop──▶ draining ──▶ gone
                    freeze │ ▲ thaw (stop: thawed first, then drains)
                           ▼ │
                         frozen
        └──init error / timeout / crash / kill (from any state)──────────▶ gone

Idle mode (``freeze`` / ``thaw``): an idle instance's processes are all stopped, by its
cgroup freezer or by SIGSTOP (``ember.sandbox.freezer``), after its ``pre_freeze`` hook
ran; it keeps its memory and uses no CPU, and ``thaw`` lets it serve again at once.

``Launcher.launch`` returns instances already ``idle``. One task reads the socket for the
instance's whole life: ``log`` frames go to the log sink as they arrive (so a request's
logs reach the sink before its result), replies resolve the pending invocation, the end
of the stream means the process is dying. How it died (exit status, signal, the sandbox's
out-of-memory counter) decides the error the caller gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ember.errors import (
    EmberError,
    FunctionError,
    FunctionOutOfMemory,
    FunctionTimeout,
    InitError,
    InstanceCrashed,
    InvalidPayload,
    PayloadTooLarge,
)
from ember.model.key import RoleGrant
from ember.pool.zygote import ExitStatus, ProcessHandle
from ember.runtime import protocol
from ember.runtime.protocol import Message, write_frame_async
from ember.runtime.spec import HealthCheck, InitSpec, StartupProbe
from ember.sandbox import Limits, Sandbox
from ember.sandbox.freezer import Freezer, SignalFreezer, fatal_signal_pending

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ember.model.function import FunctionConfig

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
logger = logging.getLogger(__name__)

T = TypeVar("T")

LogSink = Callable[[str | None, str, float, str], None]
"""Receives every log line of an instance: (request_id, level, unix_ts, line).

``request_id`` is ``None`` for lines written outside an invocation (while pre_stop runs, or
from a background thread between requests); lines of the initializer carry the id passed
to ``Launcher.launch``."""

# After the socket closes, how long the process gets to finish dying before it is killed.
_EXIT_GRACE_S = 1.0
# Passes over a killed instance's processes (10 ms apart) before its exit is awaited.
_SWEEPS = 200
# How long every process of an instance may take to stop once frozen (a task stops at its
# next return to user space; one stuck in the kernel may not) before the freeze is given up.
_FREEZE_SETTLE_S = 2.0
# How often a frozen instance whose freezer holds signals (cgroup v1) is checked for a
# SIGKILL from outside, which it would not die of before being thawed.
_FROZEN_CHECK_S = 0.25
# Bytes asked of the instance's connection at a time: whatever frames have arrived.
_READ_BYTES = 256 * 1024
_DRAIN_ABOVE = 64 * 1024


class InstanceState(enum.Enum):
    """Where an instance is in its life; see the module docstring for the transitions."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    FROZEN = "frozen"
    DRAINING = "draining"
    GONE = "gone"


@dataclass(frozen=True)
class InstanceSpec:
    """Everything needed to start an instance of one function version.

    ``code_dir`` and ``layer_dirs`` are unpacked, read-only directories; ``environment`` is
    the function's own (the ``EMBER_*`` variables are added at launch). ``secrets`` are
    names only: their values are read and decrypted at each launch, never kept here.
    """

    function: str
    version: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    memory_mb: int
    timeout_s: float
    initializer: str | None = None
    # Defaults are the runtime's own (``InitSpec``): one place for both sides.
    initializer_timeout_s: float = InitSpec.initializer_timeout_s
    pre_stop: str | None = None
    pre_stop_timeout_s: float = 5.0
    pre_freeze: str | None = None
    pre_freeze_timeout_s: float = InitSpec.pre_freeze_timeout_s
    layer_dirs: tuple[Path, ...] = ()
    kind: str = InitSpec.kind
    app: str | None = None
    command: tuple[str, ...] | None = None
    concurrency: int = InitSpec.concurrency
    startup_probe: StartupProbe | None = None
    health_check: HealthCheck | None = None
    secrets: tuple[str, ...] = ()
    secret_files: tuple[str, ...] = ()  # names of secrets given as files
    role: RoleGrant | None = None  # the function's identity on Ember: a token per instance
    cpu: float | None = None  # cores; None: proportional to memory (``Limits.cpu_share``)
    tmp_mb: int = 512  # the private /tmp's size, where the sandbox gives one
    network: str = "outbound"  # or "none": an empty network namespace (sandboxed only)

    @classmethod
    def from_config(
        cls,
        function: str,
        version: str,
        code_dir: Path,
        config: FunctionConfig,
        layer_dirs: tuple[Path, ...] = (),
    ) -> InstanceSpec:
        """The spec of a function version from its ``FunctionConfig``."""
        return cls(
            function=function,
            version=version,
            code_dir=code_dir,
            handler=config.handler,
            environment=dict(config.environment),
            memory_mb=config.memory_mb,
            timeout_s=config.timeout_s,
            initializer=config.initializer,
            initializer_timeout_s=config.initializer_timeout_s,
            pre_stop=config.pre_stop,
            pre_stop_timeout_s=config.pre_stop_timeout_s,
            pre_freeze=config.pre_freeze,
            pre_freeze_timeout_s=config.pre_freeze_timeout_s,
            layer_dirs=layer_dirs,
            kind=config.kind,
            app=config.app,
            command=tuple(config.command) if config.command else None,
            concurrency=config.concurrency,
            startup_probe=_typed(StartupProbe, config.startup_probe),
            health_check=_typed(HealthCheck, config.health_check),
            secrets=tuple(config.secrets),
            secret_files=tuple(config.secret_files),
            role=RoleGrant(tuple(config.role.invoke), tuple(config.role.workflows),
                           config.role.events) if config.role is not None else None,
            cpu=config.cpu,
            tmp_mb=config.tmp_mb,
            network=config.network,
        )

    @property
    def init_timeout_s(self) -> float:
        """How long a cold start may take once the process runs: the initializer, and for
        a custom runtime its startup probe too."""
        probe = self.startup_probe or StartupProbe()
        extra = probe.timeout_s + 1.0 if self.kind == "custom" else 0.0
        return self.initializer_timeout_s + extra

    def limits(self) -> Limits:
        return Limits(memory_mb=self.memory_mb, cpu=self.cpu)

    def environment_for(
        self, base: dict[str, str], secrets: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The full environment of the instance: ``base``, the function's, the values of
        its ``secrets``, then ``EMBER_*``."""
        return {
            **base,
            **self.environment,
            **(secrets or {}),
            "EMBER_FUNCTION_NAME": self.function,
            "EMBER_FUNCTION_VERSION": self.version,
            "EMBER_MEMORY_MB": str(self.memory_mb),
        }

    def to_runtime(
        self, base_environment: dict[str, str], secrets: dict[str, str] | None = None,
        files: dict[str, str] | None = None, secrets_dir: str | None = None,
    ) -> InitSpec:
        """The spec the ``init`` message carries to the instance (with the decrypted
        values of its ``secrets``, and of its ``secret_files`` to write in
        ``secrets_dir``)."""
        return InitSpec(
            secret_files=dict(files or {}),
            secrets_dir=secrets_dir,
            function=self.function,
            version=self.version,
            code_dir=str(self.code_dir),
            layer_dirs=tuple(str(p) for p in self.layer_dirs),
            handler=self.handler,
            initializer=self.initializer,
            initializer_timeout_s=self.initializer_timeout_s,
            pre_stop=self.pre_stop,
            pre_freeze=self.pre_freeze,
            pre_freeze_timeout_s=self.pre_freeze_timeout_s,
            memory_mb=self.memory_mb,
            timeout_s=self.timeout_s,
            env=self.environment_for(base_environment, secrets),
            kind=self.kind,
            app=self.app,
            command=self.command,
            concurrency=self.concurrency,
            startup_probe=self.startup_probe,
            health_check=self.health_check,
        )


def _typed(kind: type[T], model: BaseModel | None) -> T | None:
    """A probe of the config (a pydantic model) as the runtime's dataclass."""
    return None if model is None else kind(**model.model_dump())


@dataclass
class InvokeResult:
    """What a handler returned, encoded by the runtime."""

    body: bytes
    content_type: str
    duration_ms: float  # measured by the instance around the handler call


@dataclass
class _Pending:
    """A request waiting for its answer: its first frame (``future``; ``None`` when the
    connection goes) and, for a ``stream``, the frames after it (``rest()``, ended by
    ``None`` when the connection goes). The first frame is awaited as a handler's reply
    is: most responses are that one frame, and a queue's ``get`` under ``wait_for`` is a
    task and a loop turn more on every request."""

    request_id: str | None
    future: asyncio.Future[Message | None] = field(repr=False)
    stream: bool = False
    _rest: asyncio.Queue[Message | None] | None = field(default=None, repr=False)

    def deliver(self, message: Message | None) -> None:
        if not self.future.done():
            self.future.set_result(message)
        elif self.stream:
            self.rest().put_nowait(message)

    def rest(self) -> asyncio.Queue[Message | None]:
        """The frames after the first (made on first use)."""
        if self._rest is None:
            self._rest = asyncio.Queue()
        return self._rest


def _time_out(future: asyncio.Future[Message | None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request for a web or custom function. ``path`` is below ``root_path`` (the
    HTTP trigger's prefix); ``headers`` are lower-cased byte pairs."""

    method: str
    path: str
    root_path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    client: tuple[str, int] | None = None


class HttpExchange:
    """The response of a web or custom function, as it streams in.

    ``status`` and ``headers`` are known when ``Instance.http`` returns; ``body()`` yields
    the chunks. ``close()`` (idempotent; also reached at the end of ``body()``) frees the
    instance's slot and, if the body was not read to its end, tells the instance to stop
    working on it."""

    def __init__(self, instance: Instance, pending: _Pending, start: Message,
                 deadline: float, on_close: Callable[[HttpExchange], None] | None) -> None:
        self.instance = instance
        self.request_id = str(pending.request_id)
        self.status = int(start["status"])
        self.headers = [(bytes(k), bytes(v)) for k, v in start.get("headers") or ()]
        self.first = bytes(start.get("body") or b"")
        self.more = bool(start.get("more"))
        self.duration_ms = 0.0
        self.error: EmberError | None = None
        self._pending = pending
        self._deadline = deadline
        self._started = time.perf_counter()
        self._on_close = on_close
        self._closed = False
        if not self.more:
            self.close()

    async def body(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk; raises FunctionTimeout past the deadline and
        InstanceCrashed when the instance dies or the app fails mid-stream."""
        try:
            if self.first:
                yield self.first
                self.instance._ack(self.request_id, len(self.first))
            while self.more:
                frames = self._pending.rest()
                try:
                    frame = await asyncio.wait_for(frames.get(),
                                                   max(self._deadline - time.time(), 0.0))
                except TimeoutError:
                    self.error = FunctionTimeout(
                        f"{self.instance.spec.function} did not finish its response in time",
                        {"request_id": self.request_id},
                    )
                    raise self.error from None
                if frame is None or frame.get("abort"):
                    self.error = InstanceCrashed(
                        f"the response of {self.instance.spec.function} was cut short: "
                        + ("the app failed mid-stream" if frame else "the instance died"),
                        {"request_id": self.request_id},
                    )
                    raise self.error
                self.more = bool(frame.get("more"))
                chunk = bytes(frame.get("body") or b"")
                if chunk:
                    yield chunk
                    if self.more:
                        self.instance._ack(self.request_id, len(chunk))
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.duration_ms = (time.perf_counter() - self._started) * 1000
        self.instance._finish(self._pending, cancel=self.more)
        if self._on_close is not None:
            self._on_close(self)


class Instance:
    """The server's handle on one instance process.

    Attributes:
        id: a random token, also the name of its socket handshake and cgroup.
        pid: the process id.
        spec: the function version it serves.
        init_ms: import plus initializer time, measured inside the instance.
        start_ms: the whole cold start (spawn, sandbox, handshake, init), measured here.
        state: an ``InstanceState``.
        last_used: ``time.monotonic()`` when the last invocation ended (or it became ready).
        started_at: ``time.time()`` when the process was handed to the server.
        invocations: how many invocations it answered.
        exit_status: how the process ended, once it is gone.
    """

    def __init__(
        self,
        instance_id: str,
        spec: InstanceSpec,
        process: ProcessHandle,
        sandbox: Sandbox,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log_sink: LogSink,
        on_gone: Callable[[Instance], None] | None = None,
        mask: Callable[[str], str] | None = None,
    ) -> None:
        self.id = instance_id
        self.spec = spec
        self.pid = process.pid
        self.init_ms = 0.0
        self.start_ms = 0.0
        self.state = InstanceState.STARTING
        self.last_used = time.monotonic()
        self.started_at = time.time()
        self.invocations = 0
        self.exit_status: ExitStatus | None = None
        self.out_of_memory = False
        self._process = process
        self._sandbox = sandbox
        self._reader = reader
        self._writer = writer
        self._sink = log_sink
        self._on_gone = on_gone
        # Hides the function's secret values in the errors it reports, as in its logs.
        self._mask = mask or (lambda text: text)
        self._pending: dict[str | None, _Pending] = {}
        self.inflight = 0
        self._read_task: asyncio.Task[None] | None = None
        self._exit_watch: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[ExitStatus] | None = None
        self._sink_failed = False
        self._stopping = False
        self._freezer: Freezer | None = None  # what stopped its processes, while frozen
        self._frozen_watch: asyncio.Task[None] | None = None
        self._freezes = 0

    def __repr__(self) -> str:
        return (
            f"<Instance {self.id} {self.spec.function}:{self.spec.version} pid={self.pid} "
            f"{self.state.value}>"
        )

    @property
    def alive(self) -> bool:
        """Whether the instance can still serve (it may be busy)."""
        return self._closing is None and self.state is not InstanceState.GONE

    def memory_used(self) -> int | None:
        """The bytes the instance uses now, as its sandbox counts them; ``None``: unknown."""
        return self._sandbox.memory_used()

    def cpu_seconds(self) -> float | None:
        """CPU time the instance process has used, all its threads and the children it
        waited for (``/proc/<pid>/stat``); ``None`` when it is gone or unreadable."""
        if self.state is InstanceState.GONE:
            return None
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        except (OSError, IndexError, ValueError):
            return None
        return ticks / _CLOCK_TICKS

    # -- start ---------------------------------------------------------------------------

    async def initialize(
        self, runtime_spec: InitSpec, timeout_s: float, request_id: str | None = None
    ) -> None:
        """Send ``init`` and wait for ``ready``; the launcher's half of a cold start.

        Raises:
            InitError: the import or the initializer failed or ran past ``timeout_s``, or
                the process died first; the instance is then gone.
        """
        self._read_task = asyncio.get_running_loop().create_task(
            self._read_loop(), name=f"ember-instance-{self.id}"
        )
        self._exit_watch = asyncio.get_running_loop().create_task(
            self._watch_exit(), name=f"ember-instance-exit-{self.id}"
        )
        # The init exchange is the only one without an id: ready/init_error carry none.
        pending = _Pending(request_id, future=asyncio.get_running_loop().create_future())
        self._pending[None] = pending
        try:
            init = {"t": protocol.INIT, "spec": runtime_spec.to_message()}
            reply = await self._exchange(protocol.encode(init), pending, timeout_s)
        except TimeoutError:
            self.kill()
            await self.wait_gone()
            message = f"initialization of {self.spec.function} timed out after {timeout_s:g} s"
            raise InitError(message, {"type": "InitTimeout", "message": message,
                                      "traceback": "", "timeout_s": timeout_s}) from None
        except asyncio.CancelledError:
            self.kill()
            raise
        finally:
            self._pending.pop(None, None)
        if reply is None:
            status = await self.wait_gone()
            kind = "FunctionOutOfMemory" if self.out_of_memory else "InstanceCrashed"
            message = f"the instance died during initialization: {status.describe()}"
            raise InitError(message, {"type": kind, "message": message, "traceback": "",
                                      **status.details()})
        if reply["t"] == protocol.INIT_ERROR:
            error = _error_fields(reply, self._mask)
            await self.stop(grace_s=_EXIT_GRACE_S)  # it exits by itself; make sure
            raise InitError(f"{error['type']}: {error['message']}", error)
        self.init_ms = float(reply.get("init_ms", 0.0))
        self.state = InstanceState.IDLE
        self.last_used = time.monotonic()

    # -- invoke --------------------------------------------------------------------------

    async def invoke(
        self,
        request_id: str,
        payload: bytes,
        content_type: str,
        *,
        deadline: float | None = None,
        qualifier: str = "latest",
        attempt: int = 1,
        trigger: str | None = None,
    ) -> InvokeResult:
        """Run the handler once and return what it returned.

        Args:
            request_id: tags the invocation's logs and its context.
            payload: the request body; JSON content types are parsed for the handler.
            content_type: the payload's media type.
            deadline: Unix time (``time.time()``) by which the handler must be done;
                defaults to now plus the spec's ``timeout_s``.
            qualifier: what the caller targeted, shown to the handler.
            attempt: 1 for the first try.
            trigger: the trigger whose event this is (``context.trigger``).

        Raises:
            FunctionError: the handler raised, or its return value is not JSON encodable
                (details: type, message, traceback).
            InvalidPayload: the payload claims JSON and is not.
            PayloadTooLarge: the payload does not fit in one frame (64 MiB).
            FunctionTimeout: the deadline passed; the instance was killed (gone).
            FunctionOutOfMemory: the instance went over its memory; it is gone.
            InstanceCrashed: the process died mid-request, or was already gone (details:
                exit_code, signal, signal_name).
            RuntimeError: the instance is busy or starting — a caller bug, not a failure.
        """
        frame, started, deadline = self._frame(request_id, deadline, {
            "t": protocol.INVOKE, "payload": payload, "content_type": content_type,
            "qualifier": qualifier, "attempt": attempt, "trigger": trigger,
        })
        pending = self._begin(request_id)
        try:
            reply = await self._send_and_wait(frame, pending, deadline - started)
        finally:
            self._finish(pending, cancel=False)
        if reply["t"] == protocol.RESULT:
            return InvokeResult(
                body=bytes(reply["body"]),
                content_type=str(reply["content_type"]),
                duration_ms=float(reply["duration_ms"]),
            )
        raise self._error(reply, request_id)

    async def http(
        self, request_id: str, request: HttpRequest, *, deadline: float | None = None,
        on_close: Callable[[HttpExchange], None] | None = None,
    ) -> HttpExchange:
        """Send an HTTP request to a web or custom function; returns once the response
        has started (status and headers known). ``on_close`` runs when the exchange ends.

        Raises what ``invoke`` raises; a timeout cancels the request in the instance
        without killing it."""
        frame, started, deadline = self._frame(request_id, deadline, {
            "t": protocol.HTTP, "method": request.method, "path": request.path,
            "root_path": request.root_path, "query": request.query,
            "headers": [list(h) for h in request.headers], "body": request.body,
            "client": list(request.client) if request.client else None,
        })
        pending = self._begin(request_id, stream=True)
        try:
            reply = await self._send_and_wait(frame, pending, deadline - started)
            if reply["t"] != protocol.HTTP_START:
                raise self._error(reply, request_id)
        except BaseException:
            self._finish(pending, cancel=False)
            raise
        return HttpExchange(self, pending, reply, deadline, on_close)

    def _frame(
        self, request_id: str, deadline: float | None, message: Message
    ) -> tuple[bytes, float, float]:
        """The encoded request, when it starts and its deadline (the spec's timeout from
        now by default). Raises what ``_check_deadline`` raises, and PayloadTooLarge."""
        started = time.time()
        if deadline is None:
            deadline = started + self.spec.timeout_s
        self._check_deadline(request_id, deadline, started)
        try:
            frame = protocol.encode({**message, "id": request_id, "deadline": deadline})
        except protocol.ProtocolError as exc:
            raise PayloadTooLarge(str(exc), {"request_id": request_id}) from exc
        return frame, started, deadline

    def _ack(self, request_id: str, size: int) -> None:
        """Tell the instance its client took ``size`` more body bytes (flow control)."""
        if self.alive:
            with contextlib.suppress(ConnectionError, OSError):
                write_frame_async(self._writer, {"t": protocol.ACK, "id": request_id, "n": size})

    def _check_deadline(self, request_id: str, deadline: float, now: float) -> None:
        if not self.alive:
            raise InstanceCrashed(f"instance {self.id} is gone", self._gone_details())
        if self.state is InstanceState.FROZEN:
            raise RuntimeError(f"instance {self.id} is frozen: thaw() it first")
        if self.state is InstanceState.STARTING or self.inflight >= self.spec.concurrency:
            raise RuntimeError(f"instance {self.id} is {self.state.value}: no free slot")
        if deadline <= now:
            # Spent waiting upstream: no reason to kill a healthy instance over it.
            raise FunctionTimeout(
                f"the deadline of {self.spec.function} passed before the invocation started",
                {"request_id": request_id, "timeout_s": 0},
            )

    def _begin(self, request_id: str, *, stream: bool = False) -> _Pending:
        pending = _Pending(request_id, asyncio.get_running_loop().create_future(), stream)
        self._pending[request_id] = pending
        self.inflight += 1
        self.state = InstanceState.BUSY
        return pending

    def _finish(self, pending: _Pending, *, cancel: bool) -> None:
        """The end of one request: its slot is free again."""
        if self._pending.get(pending.request_id) is not pending:
            return
        del self._pending[pending.request_id]
        self.inflight -= 1
        self.last_used = time.monotonic()
        if cancel and self.alive:
            with contextlib.suppress(ConnectionError, OSError):
                write_frame_async(self._writer, {"t": protocol.CANCEL, "id": pending.request_id})
        if self.inflight == 0 and self.state is InstanceState.BUSY:
            self.state = InstanceState.DRAINING if self._stopping else InstanceState.IDLE

    async def _send_and_wait(self, frame: bytes, pending: _Pending, timeout_s: float) -> Message:
        """Send a request and wait for its first answer; a timeout kills a handler
        instance (it cannot be interrupted) but only cancels a web request."""
        request_id = str(pending.request_id)
        try:
            reply = await self._exchange(frame, pending, timeout_s)
        except TimeoutError:
            if self.spec.kind == "event":
                self.kill()
                await self.wait_gone()
            else:
                self._finish(pending, cancel=True)
            raise FunctionTimeout(
                f"{self.spec.function} timed out after {timeout_s:.3g} s",
                {"request_id": request_id, "timeout_s": round(timeout_s, 3)},
            ) from None
        except asyncio.CancelledError:
            if self.spec.kind == "event":
                # Nobody waits for the answer any more, and a handler cannot be interrupted
                # cleanly: drop the instance rather than leave it busy with an orphan.
                self.kill()
            else:
                self._finish(pending, cancel=True)
            raise
        if reply is None:
            status = await self.wait_gone()
            if self.out_of_memory:
                raise FunctionOutOfMemory(self._oom_message(), {"request_id": request_id,
                                                                **status.details()})
            raise InstanceCrashed(
                f"the instance of {self.spec.function} died during the invocation: "
                f"{status.describe()}",
                {"request_id": request_id, **status.details()},
            )
        self.invocations += 1
        return reply

    def _error(self, reply: Message, request_id: str) -> EmberError:
        error = _error_fields(reply, self._mask)
        kind = reply["error"].get("kind", protocol.KIND_HANDLER)
        if kind == protocol.KIND_MEMORY:
            self.kill()  # a MemoryError may leave the process half-broken: do not reuse it
            return FunctionOutOfMemory(self._oom_message(), {"request_id": request_id, **error})
        if kind == protocol.KIND_PAYLOAD:
            return InvalidPayload(f"the payload is not valid JSON: {error['message']}", error)
        return FunctionError(f"{error['type']}: {error['message']}", error)

    def _oom_message(self) -> str:
        return f"{self.spec.function} went over its memory limit of {self.spec.memory_mb} MB"

    async def _exchange(
        self, frame: bytes, pending: _Pending, timeout_s: float
    ) -> Message | None:
        """Send an encoded ``frame`` and wait for the first frame of the reply; ``None``
        when the connection ended first. Raises ``TimeoutError`` after ``timeout_s``."""
        # A failed write means the process is dying: the reader resolves the wait.
        with contextlib.suppress(ConnectionError, OSError):
            self._writer.write(frame)
            # Waiting for the socket is for frames it cannot take at once (a large
            # payload); most are sent by write() itself.
            if self._writer.transport.get_write_buffer_size() > _DRAIN_ABOVE:
                await self._writer.drain()
        future = pending.future
        if future.done():
            return future.result()
        if timeout_s <= 0:
            raise TimeoutError
        # What wait_for does, without its second future and callback on every invocation:
        # the reply resolves the future, or the timer fails it first.
        timer = asyncio.get_running_loop().call_later(timeout_s, _time_out, future)
        try:
            return await future
        finally:
            timer.cancel()

    # -- idle mode -----------------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        """Whether the instance is frozen, or being frozen: ``thaw()`` it before use."""
        return self.state is InstanceState.FROZEN

    async def freeze(self) -> bool:
        """Stop every process of an idle instance (idle → frozen): it keeps its memory and
        uses no CPU until ``thaw()``. Call it only on an idle instance.

        The function's ``pre_freeze`` hook runs first, inside the instance, for at most
        ``pre_freeze_timeout_s``; a failure or a timeout of it is logged (a log line of the
        instance without a request id, and a warning of the server) and the instance is
        frozen anyway. Then the sandbox's cgroup freezer stops the processes, or, without
        one, SIGSTOP goes to the instance process and its descendants. The state is
        ``frozen`` from the start, hook included: a ``thaw()`` meanwhile calls it off.

        Returns:
            True once every process is stopped. False when the instance was not idle,
            died, was thawed or stopped meanwhile, or its processes did not all stop
            within ``_FREEZE_SETTLE_S`` (it is idle again then, and serves).
        """
        if not self.alive or self.state is not InstanceState.IDLE or self.inflight:
            return False
        self.state = InstanceState.FROZEN
        try:
            if self.spec.pre_freeze:
                await self._pre_freeze()
            if self.state is not InstanceState.FROZEN:
                return False  # thawed, stopped or gone while the hook ran
            freezer = self._sandbox.freezer() or SignalFreezer(self.pid)
            self._freezer = freezer
            return await self._settle(freezer)
        except BaseException:
            self.thaw()  # cancelled: leave it as it was
            raise

    def thaw(self) -> None:
        """Let a frozen instance run again (frozen → idle) at once: one write to its cgroup
        freezer, or one SIGCONT per process it stopped; nothing to await. Does nothing
        unless the instance is frozen.

        An instance killed while frozen by a cgroup v1 freezer (which holds the SIGKILL
        until the thaw) is found here and is gone after the call: check ``alive`` before
        using it. A thaw while ``freeze()`` still waits for pre_freeze calls the freeze off.
        """
        if self.state is not InstanceState.FROZEN:
            return
        freezer = self._freezer
        if freezer is not None:
            if freezer.holds_signals and fatal_signal_pending(self.pid):
                logger.info("instance %s was killed while frozen", self.id)
                self.kill()
                return
            if not self._release():
                self.kill()  # it cannot serve; killing it lets the pool start another
                return
        self.state = InstanceState.IDLE

    def _release(self) -> bool:
        """Thaw what a freeze stopped, if anything; False (and a warning) when it cannot."""
        freezer, self._freezer = self._freezer, None
        watch, self._frozen_watch = self._frozen_watch, None
        if watch is not None:
            watch.cancel()
        if freezer is not None:
            try:
                freezer.thaw()
            except OSError as exc:
                logger.warning("instance %s: cannot thaw it: %s", self.id, exc)
                return False
        return True

    async def _pre_freeze(self) -> None:
        """Run the pre_freeze hook in the instance and wait for it, within its timeout."""
        self._freezes += 1
        freeze_id = f"freeze-{self._freezes}"
        pending = _Pending(freeze_id, future=asyncio.get_running_loop().create_future())
        self._pending[freeze_id] = pending
        timeout_s = self.spec.pre_freeze_timeout_s
        try:
            frame = protocol.encode({"t": protocol.FREEZE, "id": freeze_id})
            reply = await self._exchange(frame, pending, timeout_s)
        except TimeoutError:
            line = (f"pre_freeze did not finish within {timeout_s:g} s: the instance is "
                    "frozen anyway, and the hook goes on when it is thawed")
            self._log({"t": protocol.LOG, "id": None, "level": "ERROR", "ts": time.time(),
                       "line": line})
            logger.warning("instance %s of %s: %s", self.id, self.spec.function, line)
            return
        finally:
            self._pending.pop(freeze_id, None)
        if reply is not None and not reply.get("ok", True):
            error = _error_fields(reply, self._mask)
            logger.warning("instance %s of %s: pre_freeze failed (%s: %s): the instance is "
                           "frozen anyway", self.id, self.spec.function, error["type"],
                           error["message"])

    async def _settle(self, freezer: Freezer) -> bool:
        """Freeze with ``freezer`` and wait until every process has stopped."""
        started = time.monotonic()
        try:
            freezer.freeze()
            while not freezer.frozen():
                if time.monotonic() - started > _FREEZE_SETTLE_S:
                    raise TimeoutError(f"its processes did not all stop within "
                                       f"{_FREEZE_SETTLE_S:g} s")
                await asyncio.sleep(0.001)
                if self._freezer is not freezer:
                    return False  # thawed or gone meanwhile
        except (OSError, TimeoutError) as exc:
            logger.warning("instance %s: cannot freeze it (%s): it stays idle", self.id, exc)
            self.thaw()
            return False
        if freezer.holds_signals:
            self._frozen_watch = asyncio.get_running_loop().create_task(
                self._watch_frozen(freezer), name=f"ember-instance-frozen-{self.id}"
            )
        return True

    async def _watch_frozen(self, freezer: Freezer) -> None:
        """Find a frozen instance killed from outside: its SIGKILL waits for the thaw
        (cgroup v1), so neither its exit nor the end of its connection would tell."""
        while self._freezer is freezer:
            await asyncio.sleep(_FROZEN_CHECK_S)
            if self._freezer is freezer and fatal_signal_pending(self.pid):
                logger.info("instance %s was killed while frozen", self.id)
                self._frozen_watch = None  # this task: done, not cancelled
                self.kill()
                return

    # -- reading -------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        frames = protocol.FrameBuffer()
        try:
            while True:
                chunk = await self._reader.read(_READ_BYTES)
                if not chunk:
                    if frames.partial:
                        raise protocol.ProtocolError(
                            "connection closed in the middle of a frame")
                    break
                for message in frames.feed(chunk):
                    if message["t"] == protocol.LOG:
                        self._log(message)
                        continue
                    pending = self._pending.get(message.get("id"))
                    if pending is not None:  # else an answer nobody waits for any more
                        pending.deliver(message)
        except (ConnectionError, OSError, protocol.ProtocolError) as exc:
            logger.warning("instance %s: connection lost: %s", self.id, exc)
        finally:
            for pending in list(self._pending.values()):
                pending.deliver(None)
            self._begin_close(kill=False)

    async def _watch_exit(self) -> None:
        """End the conversation when the process ends, even if its socket stays open.

        A process it left behind (a daemon started with the socket inherited) keeps the
        other end open, so the end of the stream would never come and a request would wait
        for its whole timeout. Shutting down our reading side instead lets the reader take
        what the process sent before it ended, then see the end of the stream.
        """
        await self._process.wait()
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            # uvloop's transport socket has no shutdown(): shut the connection down through
            # a duplicate of its descriptor (shutdown acts on the connection, closing the
            # duplicate does not).
            with contextlib.suppress(OSError), socket.socket(fileno=os.dup(sock.fileno())) as dup:
                dup.shutdown(socket.SHUT_RD)

    def _log(self, message: Message) -> None:
        request_id = message.get("id")
        if request_id is None and self.state is InstanceState.STARTING:
            starting = self._pending.get(None)
            request_id = starting.request_id if starting is not None else None
        try:
            self._sink(
                request_id,
                str(message.get("level", "INFO")),
                float(message.get("ts") or time.time()),
                str(message.get("line", "")),
            )
        except Exception:
            if not self._sink_failed:
                self._sink_failed = True
                logger.exception("instance %s: the log sink failed; later failures are quiet",
                                 self.id)

    # -- stop ----------------------------------------------------------------------------

    async def stop(self, grace_s: float | None = None) -> None:
        """Ask the instance to stop (its pre_stop hook runs), wait up to ``grace_s`` (the
        spec's ``pre_stop_timeout_s`` by default), then kill it — a hook still running then
        is logged. A running invocation may finish within the grace; a frozen instance is
        thawed first. Idempotent."""
        self.thaw()
        if grace_s is None:
            grace_s = self.spec.pre_stop_timeout_s
        if self._closing is None and not self._stopping:
            self._stopping = True
            if self.state is not InstanceState.BUSY:  # a busy one drains when it answers
                self.state = InstanceState.DRAINING
            with contextlib.suppress(ConnectionError, OSError):
                write_frame_async(self._writer, {"t": protocol.STOP, "grace_s": grace_s})
                await self._writer.drain()
            try:
                await asyncio.wait_for(asyncio.shield(self._process.wait()), grace_s)
            except TimeoutError:
                if self.spec.pre_stop:
                    line = f"pre_stop did not finish within {grace_s:g} s: the instance is killed"
                    self._log({"t": protocol.LOG, "id": None, "level": "ERROR",
                               "ts": time.time(), "line": line})
                    logger.warning("instance %s of %s: %s", self.id, self.spec.function, line)
            self.kill()
        await self.wait_gone()

    def kill(self) -> None:
        """SIGKILL the process now; the instance is gone. Idempotent."""
        self._begin_close(kill=True)

    async def wait_gone(self) -> ExitStatus:
        """Wait until the process has ended and everything it held is released."""
        if self._closing is None:
            await asyncio.shield(self._process.wait())
            self._begin_close(kill=False)
        assert self._closing is not None
        return await asyncio.shield(self._closing)

    def _begin_close(self, *, kill: bool) -> None:
        if kill:
            # What it started first: without cgroups, its descendants are found through
            # the process itself.
            self._kill_all()
            self._process.kill()
            self._kill_all()
        # After the kill: a process frozen by a cgroup v1 freezer dies only once thawed
        # (and the processes of one that ended go on as they would have unfrozen).
        self._release()
        if self._closing is None:
            self.state = InstanceState.GONE
            self._closing = asyncio.get_running_loop().create_task(self._close(kill))

    def _kill_all(self) -> int:
        try:
            return self._sandbox.kill_all()
        except OSError as exc:
            logger.warning("instance %s: cannot kill what it started: %s", self.id, exc)
            return 0

    async def _sweep(self) -> None:
        """Kill what a killed instance started until nothing is left: a fork bomb forks
        between two passes, and would hold the CPU its dying process needs to exit."""
        for _ in range(_SWEEPS):
            if self._kill_all() == 0:
                return
            await asyncio.sleep(0.01)

    async def _close(self, killed: bool = False) -> ExitStatus:
        try:
            if killed:
                await self._sweep()
            try:
                status = await asyncio.wait_for(asyncio.shield(self._process.wait()),
                                                _EXIT_GRACE_S)
            except TimeoutError:
                # The socket closed but the process lingers (it closed the fd itself?).
                self._process.kill()
                status = await self._process.wait()
        except asyncio.CancelledError:
            self._writer.close()  # the loop is closing: the connection must not outlive it
            raise
        self.exit_status = status
        with contextlib.suppress(OSError):
            self.out_of_memory = status.signal == signal.SIGKILL and self._sandbox.out_of_memory()
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
        if self._read_task is not None and self._read_task is not asyncio.current_task():
            await self._read_task
        if self._exit_watch is not None:
            await self._exit_watch
        try:
            self._sandbox.close()
        except OSError as exc:
            logger.warning("instance %s: cannot release its sandbox: %s", self.id, exc)
        if self._on_gone is not None:
            try:
                self._on_gone(self)
            except Exception:
                logger.exception("instance %s: the on_gone callback failed", self.id)
        return status

    def _gone_details(self) -> dict[str, Any]:
        return self.exit_status.details() if self.exit_status is not None else {}


def _error_fields(reply: Message, mask: Callable[[str], str]) -> dict[str, Any]:
    error = reply.get("error") or {}
    return {
        "type": str(error.get("type", "Error")),
        "message": mask(str(error.get("message", ""))),
        "traceback": mask(str(error.get("traceback", ""))),
    }
