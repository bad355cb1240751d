from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from ember.cli.app import app
from tests import apicalls as api
from tests.conftest import ADMIN_KEY
from tests.waiting import wait_until

HANDLER = """
def handler(event, context):
    print("got", event)
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"echo": event, "version": context.function_version}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _ember_executable() -> str:
    found = Path(sys.executable).parent / "ember"
    assert found.exists(), f"the ember console script is not installed beside {sys.executable}"
    return str(found)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``ember server`` process; yields its URL."""
    home = tmp_path_factory.mktemp("server-home")
    port = free_port()
    log = (home / "server.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    if os.environ.get("EMBER_DATABASE_URL"):
        env["EMBER_DATABASE_URL"] = os.environ["EMBER_DATABASE_URL"]
    # Async retries after a few hundredths of a second, so that tests of failing async
    # invocations (tests/cli/test_tasks.py) take well under a second each.
    env["EMBER_ADMIN_KEY"] = ADMIN_KEY  # the key the CLI sends (EMBER_API_KEY)
    env["EMBER_ASYNC_RETRY_DELAY_S"] = "0.05"
    env["EMBER_ASYNC_SYSTEM_DELAY_S"] = "0.05"
    process = subprocess.Popen(
        [_ember_executable(), "server", "--port", str(port), "--home", str(home)],
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


@dataclass
class Cli:
    """Runs ``ember ...`` in process against one server."""

    url: str
    runner: CliRunner

    def __call__(self, *args: str | Path, input: str | None = None) -> Result:
        return self.runner.invoke(
            app, [str(a) for a in args], env={"EMBER_URL": self.url}, input=input
        )

    def ok(self, *args: str | Path, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        assert "Traceback" not in result.stderr
        return result

    def fails(self, *args: str | Path, code: int = 1) -> Result:
        result = self(*args)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        assert "Traceback" not in result.stderr + result.stdout
        return result


@pytest.fixture
def cli(server: str) -> Cli:
    return Cli(server, CliRunner())


def project(root: Path, name: str, config: str = "", *, source: str = HANDLER,
            extra: Sequence[str] = ()) -> Path:
    """A directory to deploy: main.py and an ember.yaml naming ``name``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text(source)
    manifest = f"name: {name}\n" + (f"config:\n{config}" if config else "")
    manifest += "".join(f"{line}\n" for line in extra)
    (root / "ember.yaml").write_text(manifest)
    return root
