"""The real `ember server` process: what a user starts from the shell."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_zip

EMBER = str(Path(sys.executable).parent / "ember")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not reaped it yet.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.split(") ")[-1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.fixture
def server(home: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    proc = subprocess.Popen(
        [EMBER, "server", "--port", str(port), "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    yield proc, url
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=15)
    if proc.stdout:
        proc.stdout.close()


def test_sigkill_of_the_server_leaves_no_instance(
    server: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = server
    source = "import os\n\ndef handler(event, context):\n    return os.getpid()\n"
    code = {"zip": base64.b64encode(make_zip({"main.py": source})).decode()}
    created = httpx.post(f"{url}/functions", json={"name": "pid", "code": code})
    assert created.status_code == 201, created.text
    pids = set()
    with httpx.Client(timeout=30) as client:
        # Concurrent calls force several instances.
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(
                lambda _: client.post(f"{url}/functions/pid/invoke", json={}), range(8)
            ))
    pids = {a.json() for a in answers}
    helpers = _children(proc.pid)
    assert pids and all(_alive(p) for p in pids)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids | helpers):
        time.sleep(0.05)
    left = [p for p in pids | helpers if _alive(p)]
    assert left == [], f"processes left after SIGKILL: {left}"


def test_sigterm_stops_cleanly(server: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = server
    source = "def handler(event, context):\n    return 'ok'\n"
    code = {"zip": base64.b64encode(make_zip({"main.py": source})).decode()}
    httpx.post(f"{url}/functions", json={"name": "ok", "code": code}).raise_for_status()
    assert httpx.post(f"{url}/functions/ok/invoke", json={}).text == "ok"
    helpers = _children(proc.pid)
    proc.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "Application shutdown complete" in output, output
    assert not [p for p in helpers if _alive(p)]
