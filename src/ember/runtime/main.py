"""The instance main loop: load the user's handler, then serve invocations one at a time.

An instance is started either by the zygote (a fork that calls ``run``) or as a fresh
interpreter::

    python -P -m ember.runtime.main SOCKET_PATH INSTANCE_ID PARENT_PID

Either way it connects to the server's socket, says hello, waits for the ``init`` message
(sent once the sandbox holds this process, so no user code runs outside its limits), sets
up the function's directory, path and environment, imports the handler, runs the
initializer and answers ``ready`` — then loops on ``invoke`` until ``stop`` or the end of
the connection. Between requests, ``freeze`` runs the ``pre_freeze`` hook and answers
``frozen``; the server then stops the whole process until a request comes. The protocol
is described in ``ember.runtime.protocol``.

Standard library and msgpack only: this module is what every instance imports.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from ember.runtime import confine, protocol
from ember.runtime.capture import LogCapture, log_uncaught
from ember.runtime.context import Context, function_logger
from ember.runtime.process import connect, set_parent_death_signal, yield_to_the_server
from ember.runtime.protocol import FrameSocket, Message, describe_error
from ember.runtime.responders import InvokeResponder, StreamResponder
from ember.runtime.spec import Confinement, InitSpec
from ember.runtime.web import invoke_request

# A result must fit in one frame, with room for the frame's other fields.
MAX_RESULT_BYTES = protocol.MAX_FRAME_BYTES - 64 * 1024
# ``json.dumps`` with these options would make an encoder per call.
_RESULT_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)


def load_entrypoint(entry: str) -> Callable[..., Any]:
    """Import ``module.function`` or ``package.module:function`` and return the callable."""
    if ":" in entry:
        module_name, _, attribute = entry.partition(":")
    else:
        module_name, _, attribute = entry.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(
            f"{entry!r} is not an entry point: use 'module.function' or 'package.module:function'"
        )
    module = importlib.import_module(module_name)
    try:
        target = getattr(module, attribute)
    except AttributeError:
        raise AttributeError(
            f"{entry!r}: module {module_name!r} has no attribute {attribute!r}"
        ) from None
    if not callable(target):
        raise TypeError(f"{entry!r} is not callable")
    return target  # type: ignore[no-any-return]


def write_secret_files(directory: str, files: dict[str, str]) -> None:
    """Write each secret to ``directory/NAME``, readable by this instance's user only."""
    for name, value in files.items():
        path = os.path.join(directory, name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a value set again reaches a new instance; never appended to
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o400)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(value)


def is_json(content_type: str) -> bool:
    """``application/json`` or any ``+json`` media type, parameters ignored."""
    if content_type == "application/json":
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def decode_event(payload: bytes, content_type: str) -> Any:
    """The event a handler receives: parsed JSON (``None`` for an empty body) or raw bytes."""
    if not is_json(content_type):
        return payload
    if not payload.strip():
        return None
    try:
        return json.loads(payload)
    except RecursionError:
        # The API refuses such payloads, but a trigger's message reaches the instance as
        # it came: the parser's recursion limit must not kill the instance.
        raise ValueError("the JSON event is nested too deeply to be parsed") from None


def encode_result(value: Any) -> tuple[bytes, str]:
    """The body and content type for a handler's return value.

    Raises ``TypeError`` or ``ValueError`` when the value cannot be JSON encoded.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), "application/octet-stream"
    if isinstance(value, str):
        return value.encode("utf-8"), "text/plain; charset=utf-8"
    return _RESULT_ENCODER.encode(value).encode("utf-8"), "application/json"


class Runtime:
    """One function instance: its handler, its hooks and the event loop of async handlers."""

    def __init__(self, conn: FrameSocket, capture: LogCapture, spec: InitSpec) -> None:
        self.conn = conn
        self.capture = capture
        self.spec = spec
        self.handler: Callable[..., Any] | None = None
        self._loop: Any = None  # one asyncio loop for the instance's life, made on first use
        self.server: Any = None  # web and custom functions: an ember.runtime.web server
        self.health: Any = None  # a web app's HealthChecker (a custom server has its own)
        self._responders: dict[str, Any] = {}  # requests in flight (web and custom)
        self._inflight_lock = threading.Lock()

    def context(self, request_id: str | None, deadline: float, qualifier: str = "",
                attempt: int = 1, trigger: str | None = None) -> Context:
        return Context(
            request_id=request_id,
            function_name=self.spec.function,
            function_version=self.spec.version,
            qualifier=qualifier,
            memory_limit_mb=self.spec.memory_mb,
            deadline=deadline,
            attempt=attempt,
            trigger=trigger,
            logger=function_logger(),
        )

    def initialize(self) -> bool:
        """Set up the process and load the code; sends ``ready`` or ``init_error``."""
        started = time.perf_counter()
        spec = self.spec
        try:
            os.chdir(spec.code_dir)
            sys.path[:0] = [spec.code_dir, *spec.layer_dirs]
            os.environ.clear()
            os.environ.update(spec.env)
            if spec.secret_files and spec.secrets_dir:
                write_secret_files(spec.secrets_dir, spec.secret_files)
                os.environ["EMBER_SECRETS_DIR"] = spec.secrets_dir
            if "TZ" in os.environ:
                time.tzset()
            importlib.invalidate_caches()
            kind = spec.kind
            if kind == "event":
                self.handler = load_entrypoint(spec.handler)
            elif kind == "web":
                app = load_entrypoint(str(spec.app))
            if spec.initializer:
                init = load_entrypoint(spec.initializer)
                deadline = time.time() + spec.initializer_timeout_s
                self.call_hook(init, self.context(None, deadline))
            if kind == "web":
                self.server = self._web_server(app)
            elif kind == "custom":
                self.server = self._custom_server()
        except BaseException as exc:
            self.capture.flush()
            self.conn.send({"t": protocol.INIT_ERROR, "error": describe_error(exc)})
            return False
        self.capture.flush()
        init_ms = (time.perf_counter() - started) * 1000
        self.conn.send({"t": protocol.READY, "init_ms": init_ms})
        return True

    def _web_server(self, app: Any) -> Any:
        # Imported here: a handler instance started as a fresh interpreter never pays for
        # the web servers (the zygote has them loaded already).
        from ember.runtime.asgi import AsgiServer, is_asgi
        from ember.runtime.wsgi import WsgiServer

        server: Any = AsgiServer(app) if is_asgi(app) else WsgiServer(app, self.spec.concurrency)
        server.start(self.spec.initializer_timeout_s)
        if self.spec.health_check is not None:
            from ember.runtime.health import HealthChecker

            self.health = HealthChecker(self.spec.health_check, server.probe, self.fatal)
            self.health.start()
        return server

    def _custom_server(self) -> Any:
        from ember.runtime.custom import CustomServer

        spec = self.spec
        server = CustomServer(
            list(spec.command or ()), spec.code_dir, spec.concurrency,
            spec.probe, spec.health_check, self.fatal,
        )
        server.start(spec.probe.timeout_s)
        return server

    def fatal(self, reason: str) -> None:
        """The instance cannot go on (its custom runtime exited or turned unhealthy): say
        why, then exit, so that the server replaces it."""
        print(f"ember: {reason}: the instance exits and is replaced", file=sys.stderr)
        self.capture.flush(timeout=1.0)
        with contextlib.suppress(Exception):
            self.server.stop(0.5)
        os._exit(3)

    def resolve(self, value: Any) -> Any:
        """Run an awaitable to completion on the instance's loop; other values pass through."""
        if not hasattr(type(value), "__await__"):
            return value
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        return self._loop.run_until_complete(value)

    def call_hook(self, hook: Callable[..., Any], context: Context) -> Any:
        """Call an initializer or pre_stop hook, with the context if it takes an argument."""
        import inspect

        try:
            takes_context = bool(inspect.signature(hook).parameters)
        except (TypeError, ValueError):
            takes_context = True
        return self.resolve(hook(context) if takes_context else hook())

    def invoke(self, message: Message) -> None:
        """Run the handler for one ``invoke`` message and send its logs, then its reply."""
        request_id = message["id"]
        self.capture.request_id = request_id
        reply: Message
        try:
            event = decode_event(message.get("payload") or b"", message.get("content_type", ""))
        except ValueError as exc:
            reply = self._error(request_id, exc, protocol.KIND_PAYLOAD)
        else:
            reply = self._run_handler(message, event)
        self.capture.flush()
        self.conn.send(reply)
        self.capture.request_id = None

    def _run_handler(self, message: Message, event: Any) -> Message:
        request_id = message["id"]
        context = self.context(
            request_id,
            float(message.get("deadline") or time.time() + self.spec.timeout_s),
            message.get("qualifier", ""),
            int(message.get("attempt", 1)),
            message.get("trigger"),
        )
        assert self.handler is not None
        started = time.perf_counter()
        try:
            value = self.resolve(self.handler(event, context))
        except MemoryError as exc:
            return self._uncaught(request_id, exc, protocol.KIND_MEMORY)
        except BaseException as exc:  # SystemExit from a handler is its failure too
            return self._uncaught(request_id, exc, protocol.KIND_HANDLER)
        duration_ms = (time.perf_counter() - started) * 1000
        try:
            body, content_type = encode_result(value)
        except (TypeError, ValueError) as exc:
            error = describe_error(exc, protocol.KIND_RESULT)
            error["message"] = f"return value is not JSON serializable: {exc}"
            return {"t": protocol.ERROR, "id": request_id, "error": error}
        if len(body) > MAX_RESULT_BYTES:
            too_large = ValueError(
                f"return value is {len(body)} bytes, over the {MAX_RESULT_BYTES} byte limit"
            )
            return self._error(request_id, too_large, protocol.KIND_RESULT)
        return {
            "t": protocol.RESULT,
            "id": request_id,
            "body": body,
            "content_type": content_type,
            "duration_ms": duration_ms,
        }

    @staticmethod
    def _error(request_id: str, exc: BaseException, kind: str) -> Message:
        return {"t": protocol.ERROR, "id": request_id, "error": describe_error(exc, kind)}

    def _uncaught(self, request_id: str, exc: BaseException, kind: str) -> Message:
        """The error frame of an exception the handler let out, also put in the logs."""
        reply = self._error(request_id, exc, kind)
        log_uncaught(reply["error"], request_id)
        return reply

    def stop(self, grace_s: float = 5.0) -> None:
        """Run pre_stop (its failure is logged, not fatal) and flush the logs.

        The server kills the instance ``grace_s`` after asking; the hook's context says so.
        """
        entry = self.spec.pre_stop
        if entry:
            try:
                hook = load_entrypoint(entry)
                self.call_hook(hook, self.context(None, time.time() + grace_s))
            except BaseException:
                traceback.print_exc()
        import logging

        logging.shutdown()  # user handlers (files, buffers) get their final flush
        self.capture.flush()

    def freeze(self, message: Message) -> None:
        """Run pre_freeze, flush the logs and answer ``frozen``: the server stops every
        process of the instance next. A failure of the hook is logged and reported, not
        fatal: the instance is frozen anyway."""
        reply: Message = {"t": protocol.FROZEN, "id": message.get("id"), "ok": True,
                          "error": None}
        entry = self.spec.pre_freeze
        if entry:
            try:
                hook = load_entrypoint(entry)
                deadline = time.time() + self.spec.pre_freeze_timeout_s
                self.call_hook(hook, self.context(None, deadline))
            except BaseException as exc:  # SystemExit from a hook is its failure too
                error = describe_error(exc)
                log_uncaught(error)
                reply.update(ok=False, error=error)
        self.capture.flush()
        self.conn.send(reply)

    # -- web and custom functions: several requests at once ---------------------------------

    def serve_http(self) -> None:
        """Hand requests to the web server as they come, until ``stop`` or the end.

        An ASGI app's loop reads the frames itself (``read_frames``) and starts each
        request where it runs; this thread then only takes what must not run on that
        loop: ``freeze`` and ``stop`` (their hooks, the app's shutdown), and the end."""
        if hasattr(self.server, "read_frames"):
            self._serve_on_loop()
            return
        while True:
            message = self.conn.recv()
            if message is None:
                self._stop_health()
                self.server.stop(0.5)
                return
            if not self._dispatch(message) and self._control(message):
                return

    def _serve_on_loop(self) -> None:
        import queue

        handed: queue.SimpleQueue[Message | BaseException | None] = queue.SimpleQueue()

        def on_frame(message: Message) -> None:
            if not self._dispatch(message):
                handed.put(message)

        self.server.read_frames(self.conn, on_frame, handed.put)
        while True:
            item = handed.get()
            if isinstance(item, BaseException):
                self._stop_health()
                self.server.stop(0.5)
                raise item
            if item is None:
                self._stop_health()
                self.server.stop(0.5)
                return
            if self._control(item):
                return

    def _dispatch(self, message: Message) -> bool:
        """Start or steer a request (on whichever thread reads the frames); False for
        a message that is not about one."""
        kind = message["t"]
        if kind == protocol.ACK:
            found = self._responders.get(message["id"])
            if found is not None:
                found.credit(int(message.get("n", 0)))
        elif kind == protocol.HTTP:
            stream = StreamResponder(self.conn, message["id"], self)
            self._begin(message["id"], stream)
            self.server.submit(message, stream)
        elif kind == protocol.INVOKE:
            responder = InvokeResponder(self.conn, message["id"], self, MAX_RESULT_BYTES)
            self._begin(message["id"], responder)
            self.server.submit(invoke_request(message), responder)
        elif kind == protocol.CANCEL:
            found = self._responders.get(message["id"])
            if found is not None:
                found.cancel()
            self.server.cancel(message["id"])
        else:
            return False
        return True

    def _control(self, message: Message) -> bool:
        """``freeze`` or ``stop``, on the main thread; True once the instance stops."""
        kind = message["t"]
        if kind == protocol.FREEZE:
            self.freeze(message)  # none in flight: the server sends it to idle ones only
        elif kind == protocol.STOP:
            grace_s = float(message.get("grace_s") or 5.0)
            self._stop_health()
            self.server.stop(grace_s)
            self.stop(grace_s)
            return True
        return False

    def _stop_health(self) -> None:
        if self.health is not None:
            self.health.stop()

    def _begin(self, request_id: str, responder: Any) -> None:
        with self._inflight_lock:
            self._responders[request_id] = responder
            self._attribute_logs()

    def before_last_frame(self, request_id: str) -> None:
        """Every line written so far goes out before the request's last frame."""
        self.capture.flush()

    def done(self, request_id: str) -> None:
        with self._inflight_lock:
            self._responders.pop(request_id, None)
            self._attribute_logs()

    def _attribute_logs(self) -> None:
        # Output is tagged with a request only while it is the one in flight: with several,
        # a line cannot be told apart (it is kept, untagged, with the function's logs).
        only = next(iter(self._responders)) if len(self._responders) == 1 else None
        self.capture.request_id = only

    def serve(self) -> None:
        """Answer invocations until ``stop`` or the server closes the connection."""
        if self.server is not None:
            self.serve_http()
            return
        while True:
            message = self.conn.recv()
            if message is None:
                return
            kind = message["t"]
            if kind == protocol.INVOKE:
                self.invoke(message)
            elif kind == protocol.FREEZE:
                self.freeze(message)
            elif kind == protocol.STOP:
                self.stop(float(message.get("grace_s") or 5.0))
                return


def run(connect_path: str, instance_id: str, parent_pid: int,
        confinement: Confinement | None = None) -> int:
    """Be an instance: connect, initialize, serve. Returns the exit status to use.

    ``confinement``: in the bubblewrap sandbox, the instance's own mounts and user id,
    entered once connected (the server's socket is not the instance user's to open).
    """
    set_parent_death_signal(parent_pid)
    yield_to_the_server()
    sock = connect(connect_path, f"ember instance {instance_id}")
    if sock is None:
        return 2
    if confinement is not None:
        try:
            confine.enter(confinement)
        except OSError as exc:
            print(f"ember instance {instance_id}: cannot enter its sandbox: {exc}",
                  file=sys.stderr)
            return 3
    conn = FrameSocket(sock, buffered=True)
    # A process the handler forks (a daemon, a worker) must not keep the conversation open
    # after this one ends, nor write frames into it: its copy of the socket is closed.
    os.register_at_fork(after_in_child=sock.close)
    capture = LogCapture(conn)
    capture.start()
    try:
        conn.send({"t": protocol.HELLO, "id": instance_id, "pid": os.getpid()})
        message = conn.recv()
        if message is None or message["t"] != protocol.INIT:
            return 0
        if confinement is not None:
            try:
                confine.drop(confinement)
            except OSError as exc:
                print(f"ember instance {instance_id}: cannot take its user id: {exc}",
                      file=sys.stderr)
                return 3
        runtime = Runtime(conn, capture, InitSpec.from_message(message["spec"]))
        if not runtime.initialize():
            return 1
        runtime.serve()
        return 0
    except (OSError, protocol.ProtocolError):
        return 0  # the server went away; nobody is left to tell
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> None:
    """Entry of a fresh-interpreter instance; always leaves through ``os._exit``.

    ``os._exit`` because user code may leave non-daemon threads behind, which would keep a
    normal interpreter shutdown waiting forever.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4):
        print("usage: python -m ember.runtime.main SOCKET_PATH INSTANCE_ID PARENT_PID "
              "[UID:TMP_MB]", file=sys.stderr)
        os._exit(2)
    status = 1
    try:
        confinement = Confinement.from_argument(args[3]) if len(args) == 4 else None
        status = run(args[0], args[1], int(args[2]), confinement)
    finally:
        os._exit(status)


if __name__ == "__main__":
    main()
