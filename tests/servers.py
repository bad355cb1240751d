"""Real ``ember server`` processes for tests that need one (the CLI's, the console's)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

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


class Server:
    """One ``ember server`` process started by ``spawn``."""

    def __init__(self, home: Path, url: str, process: subprocess.Popen[bytes], log: IO[bytes]):
        self.home = home
        self.url = url
        self.process = process
        self._log = log

    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")

    def answering(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"ember server exited with {self.process.returncode}:\n{self.log()}")
        try:
            return api.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self) -> None:
        wait_until(self.answering, timeout=60, interval=0.1, message="ember server /healthz")

    def stop(self) -> None:
        """SIGTERM, a clean stop (SIGKILL after 15 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def kill(self) -> None:
        """``kill -9``: the server gets no chance to clean up."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


def spawn(home: Path, port: int | None = None, **settings: str) -> Server:
    """Start an ``ember server`` with data in ``home``, the test admin key and ``settings``
    (``EMBER_<NAME>`` variables, which override the test run's ``EMBER_DATABASE_URL``);
    returns at once (``Server.wait_ready`` waits for it)."""
    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = (home / "server.log").open("ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    if os.environ.get("EMBER_DATABASE_URL"):
        env["EMBER_DATABASE_URL"] = os.environ["EMBER_DATABASE_URL"]
    env["EMBER_ADMIN_KEY"] = ADMIN_KEY  # the key the CLI sends (EMBER_API_KEY)
    env.update({f"EMBER_{name.upper()}": value for name, value in settings.items()})
    process = subprocess.Popen(
        [ember_executable(), "server", "--port", str(port), "--home", str(home)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    return Server(home, f"http://127.0.0.1:{port}", process, log)


@contextmanager
def ember_server(home: Path, **settings: str) -> Iterator[str]:
    """An ``ember server`` on a free port with data in ``home``, the test admin key and
    ``settings`` (``EMBER_<NAME>`` variables); yields its URL, stops it after.

    On a PostgreSQL run it gets a database of its own (dropped after), as it gets its own
    SQLite file otherwise: a server sharing the run's database would be a node of one
    cluster with every in-process server of the tests, taking their triggers' leases."""
    with _own_database(settings):
        server = spawn(home, **settings)
        try:
            server.wait_ready()
            yield server.url
        finally:
            server.stop()


@contextmanager
def _own_database(settings: dict[str, str]) -> Iterator[None]:
    url = os.environ.get("EMBER_DATABASE_URL", "")
    if "database_url" in settings or not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy as sa

    from ember.settings import Settings

    admin_url = Settings(database_url=url).resolved_database_url()
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"ember_server_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    settings["database_url"] = sa.make_url(admin_url).set(database=name).render_as_string(
        hide_password=False)
    try:
        yield
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
