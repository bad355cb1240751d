"""``bash scripts/demo.sh``, the README's first command: it runs against a server of its own,
never against whatever already listens on a port."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[2]


@contextlib.contextmanager
def _foreign_server(port: int = 0) -> Iterator[int]:
    """Another program answering HTTP on ``port`` (a free one when 0)."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), http.server.SimpleHTTPRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _demo(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    return subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=300)


def test_demo_refuses_a_port_in_use() -> None:
    with _foreign_server() as port:
        done = _demo(EMBER_DEMO_PORT=str(port))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port {port} (EMBER_DEMO_PORT) is already in use" in done.stderr
    assert "ember deploy" not in done.stderr  # no step was sent anywhere


def test_demo_runs_on_its_own_server_while_8080_is_taken() -> None:
    with contextlib.ExitStack() as stack:
        # When something listens on 8080 already, that is the same situation.
        with contextlib.suppress(OSError):
            stack.enter_context(_foreign_server(8080))
        with socket.create_connection(("127.0.0.1", 8080), timeout=5):
            pass
        done = _demo()
    assert done.returncode == 0, done.stdout + done.stderr
    started = next(line for line in done.stdout.splitlines() if line.startswith("== ember"))
    assert "127.0.0.1:8080," not in started
    # The HTTP trigger read the body (on hello:live, which sends a tenth to version 1).
    assert re.search(r'"message": "(Bonjour|Hello), Ada!"', done.stdout), done.stdout
    assert "Simplicity is prerequisite" in done.stdout
