"""Real ``ember server`` processes for tests that need one (the CLI's, the console's)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests import apicalls as api
from tests.conftest import ADMIN_KEY
from tests.waiting import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def ember_executable() -> str:
    found = Path(sys.executable).parent / "ember"
    assert found.exists(), f"the ember console script is not installed beside {sys.executable}"
    return str(found)


@contextmanager
def ember_server(home: Path, **settings: str) -> Iterator[str]:
    """An ``ember server`` on a free port with data in ``home``, the test admin key and
    ``settings`` (``EMBER_<NAME>`` variables); yields its URL, stops it after."""
    port = free_port()
    log = (home / "server.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    if os.environ.get("EMBER_DATABASE_URL"):
        env["EMBER_DATABASE_URL"] = os.environ["EMBER_DATABASE_URL"]
    env["EMBER_ADMIN_KEY"] = ADMIN_KEY  # the key the CLI sends (EMBER_API_KEY)
    env.update({f"EMBER_{name.upper()}": value for name, value in settings.items()})
    process = subprocess.Popen(
        [ember_executable(), "server", "--port", str(port), "--home", str(home)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        if process.poll() is not None:
            raise RuntimeError(
                f"ember server exited with {process.returncode}:\n"
                + (home / "server.log").read_text()
            )
        try:
            return api.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answering, timeout=60, interval=0.1, message="ember server /healthz")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
