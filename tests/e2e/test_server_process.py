"""The real `ember server` process: what a user starts from the shell."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import apicalls as api
from tests.conftest import AUTH, make_zip

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
    except (FileNotFoundError, ProcessLookupError):  # gone between the two looks
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


def _descendants(pid: int) -> set[int]:
    """Every process under ``pid``: zygotes, sandboxes, instances and what they started."""
    found: set[int] = set()
    level = _children(pid)
    while level:
        found |= level
        level = set().union(*(_children(p) for p in level)) - found
    return found


@contextlib.contextmanager
def _serve(home: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    proc = subprocess.Popen(
        [EMBER, "server", "--port", str(port), "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if api.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    try:
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=15)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def server(home: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    with _serve(home) as running:
        yield running


def _create(url: str, name: str) -> None:
    source = "import os\n\ndef handler(event, context):\n    return os.getpid()\n"
    code = {"zip": base64.b64encode(make_zip({"main.py": source})).decode()}
    created = api.post(f"{url}/functions", json={"name": name, "code": code})
    assert created.status_code == 201, created.text


def test_sigkill_of_the_server_leaves_no_instance(
    server: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, url = server
    source = "import os\n\ndef handler(event, context):\n    return os.getpid()\n"
    code = {"zip": base64.b64encode(make_zip({"main.py": source})).decode()}
    created = api.post(f"{url}/functions", json={"name": "pid", "code": code})
    assert created.status_code == 201, created.text
    with httpx.Client(timeout=30, headers=AUTH) as client:
        # Concurrent calls force several instances.
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(
                lambda _: client.post(f"{url}/functions/pid/invoke", json={}), range(8)
            ))
    # Pids as the instances see them: in the sandbox, those of their PID namespace.
    instances = {a.json() for a in answers}
    helpers = _descendants(proc.pid)
    assert instances and len(helpers) >= len(instances)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in helpers):
        time.sleep(0.05)
    left = [p for p in helpers if _alive(p)]
    assert left == [], f"processes left after SIGKILL: {left}"


def test_sigterm_stops_cleanly(server: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = server
    source = "def handler(event, context):\n    return 'ok'\n"
    code = {"zip": base64.b64encode(make_zip({"main.py": source})).decode()}
    api.post(f"{url}/functions", json={"name": "ok", "code": code}).raise_for_status()
    assert api.post(f"{url}/functions/ok/invoke", json={}).text == "ok"
    helpers = _children(proc.pid)
    proc.terminate()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "Application shutdown complete" in output, output
    assert not [p for p in helpers if _alive(p)]


def test_a_second_server_on_the_same_home_is_refused(
    server: tuple[subprocess.Popen[bytes], str], home: Path,
) -> None:
    proc, url = server
    port = url.rsplit(":", 1)[1]
    # Even on the same port (so that it could not have served anyway), the second server
    # must leave the first one's home alone.
    second = subprocess.run(
        [EMBER, "server", "--port", port, "--home", str(home)],
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode != 0
    assert "another Ember server" in second.stderr, second.stderr
    assert f"pid {proc.pid}" in second.stderr, second.stderr
    assert "--home" in second.stderr
    assert api.get(f"{url}/healthz").status_code == 200
    # Two cold starts: the first may take the spare prepared before; the second needs a
    # new instance to connect to the first server's socket.
    for name in ("one", "two"):
        _create(url, name)
        answer = api.post(f"{url}/functions/{name}/invoke", json={}, timeout=30)
        assert answer.status_code == 200, answer.text


def test_healthz_fails_when_instances_cannot_connect() -> None:
    # A short home: the instance socket lives in it (long paths move it to a temp dir).
    home = Path(tempfile.mkdtemp(prefix="ember-"))
    try:
        with _serve(home) as (_, url):
            assert api.get(f"{url}/healthz").status_code == 200
            (home / "run" / "instances.sock").unlink()
            answer = api.get(f"{url}/healthz")
            assert answer.status_code == 503, answer.text
            error = answer.json()["error"]
            assert error["code"] == "ServiceUnavailable"
            assert "instance socket" in error["message"], error
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_home_lock_dies_with_a_killed_server(home: Path) -> None:
    with _serve(home) as (first, _):
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The kernel dropped the lock with the process: a new server starts on the same home.
    with _serve(home) as (second, url):
        assert second.poll() is None
        assert api.get(f"{url}/healthz").status_code == 200
        assert (home / "server.lock").read_text() == str(second.pid)


def test_the_server_says_which_sandbox_and_limits_are_in_force(home: Path) -> None:
    with _serve(home) as (proc, _):
        proc.terminate()
        output = proc.stdout.read().decode() if proc.stdout else ""
    assert "instance sandbox: " in output and "instance limits (" in output, output
    if shutil.which("bwrap") is not None:
        assert "instance sandbox: bubblewrap" in output, output


def test_a_required_sandbox_that_cannot_start_stops_the_server(home: Path) -> None:
    # No bwrap on this PATH: EMBER_SANDBOX=bubblewrap refuses to serve unsandboxed.
    env = {**os.environ, "PATH": str(home), "EMBER_SANDBOX": "bubblewrap"}
    done = subprocess.run([EMBER, "server", "--port", str(_free_port()), "--home", str(home)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Error [ServiceUnavailable]" in done.stderr and "bubblewrap" in done.stderr, done
    assert "Traceback" not in done.stderr
