"""``ember server --tls-cert --tls-key`` serves HTTPS, with a warning when it listens beyond
loopback; without TLS it says so."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests import apicalls as api
from tests.e2e.test_server_process import EMBER, _free_port
from tests.waiting import wait_until


def _certificate(directory: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate to test TLS with")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls_serves_https(home: Path, tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert))
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [EMBER, "server", "--port", str(port), "--home", str(home),
             "--tls-cert", str(cert), "--tls-key", str(key)],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return api.get(f"https://127.0.0.1:{port}/healthz",
                                 verify=trusted).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=60, interval=0.05, message="HTTPS answers")
        with pytest.raises(httpx.HTTPError):
            api.get(f"http://127.0.0.1:{port}/healthz")  # plain HTTP is not served
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "warning" not in log.read_text()  # loopback: nothing to warn about


def test_listening_beyond_loopback_without_tls_is_said(home: Path, tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [EMBER, "server", "--host", "0.0.0.0", "--port", str(port), "--home", str(home)],
            stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "EMBER_ALLOWED_HOSTS": "127.0.0.1"},
        )
    try:
        wait_until(lambda: "no TLS is configured" in log.read_text() or proc.poll() is not None,
                   timeout=60, interval=0.05, message="the warning")
        text = log.read_text()
        assert "reachable from other machines" in text
        assert "no TLS is configured" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
