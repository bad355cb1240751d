"""WSGI apps (Flask, Django, ...) inside an instance: a pool of ``concurrency`` threads,
one request per thread."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ember.runtime.capture import current_request
from ember.runtime.protocol import Message
from ember.runtime.responders import Responder
from ember.runtime.web import probe, request_headers, server_address


class WsgiServer:
    """A WSGI app on a pool of threads, one request per thread."""

    def __init__(self, app: Callable[..., Iterable[bytes]], concurrency: int) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ember-wsgi")

    def start(self, timeout_s: float) -> None:
        pass

    def submit(self, request: Message, responder: Responder) -> None:
        self.pool.submit(self._serve, request, responder)

    def environ(self, request: Message) -> dict[str, Any]:
        import io

        headers = request_headers(request)
        host, port = server_address(headers)
        body = bytes(request.get("body") or b"")
        client = request.get("client")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": str(request["method"]),
            "SCRIPT_NAME": str(request.get("root_path") or ""),
            # PEP 3333: native strings holding the bytes of the path, as latin-1.
            "PATH_INFO": str(request["path"]).encode("utf-8").decode("latin-1"),
            "QUERY_STRING": bytes(request.get("query") or b"").decode("latin-1"),
            "SERVER_NAME": host,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": client[0] if client else "",
            "REMOTE_PORT": str(client[1]) if client else "",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        for name, value in headers:
            key = name.decode("latin-1").upper().replace("-", "_")
            text = value.decode("latin-1")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = text
            elif key == "CONTENT_LENGTH":
                continue  # the body is whole: its real length is set above
            elif f"HTTP_{key}" in environ:
                environ[f"HTTP_{key}"] += ("; " if key == "COOKIE" else ",") + text
            else:
                environ[f"HTTP_{key}"] = text
        return environ

    def _serve(self, request: Message, responder: Responder) -> None:
        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None and responder.started:
                raise exc_info[1].with_traceback(exc_info[2])
            # Before the first body chunk, a later call replaces the status (PEP 3333).
            responder.start(int(status.split(" ", 1)[0]),
                            [(k.lower().encode("latin-1"), v.encode("latin-1"))
                             for k, v in headers])
            return write

        def write(data: bytes) -> None:
            responder.body(data, True)

        token = current_request.set(None if request.get("probe") else str(request["id"]))
        try:
            result = self.app(self.environ(request), start_response)
            try:
                for chunk in result:
                    if chunk:
                        responder.body(chunk, True)
                responder.body(b"", False)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:
            responder.fail(exc)
        finally:
            current_request.reset(token)

    def probe(self, path: str, timeout_s: float) -> int:
        """A health check: ``GET path`` in a thread of its own, so that requests holding
        every worker do not make a busy app look unhealthy."""

        def submit(request: Message, responder: Responder) -> None:
            threading.Thread(target=self._serve, args=(request, responder),
                             name="ember-wsgi-probe", daemon=True).start()

        return probe(path, timeout_s, submit, self.cancel)

    def cancel(self, request_id: str) -> None:
        pass  # a thread cannot be interrupted; its answer will be dropped by the server

    def stop(self, grace_s: float) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
