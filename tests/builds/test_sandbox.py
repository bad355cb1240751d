"""A hostile package in a function's requirements.txt: its setup.py runs in the build
sandbox (``sandbox="bubblewrap"``), where it cannot read the server's home, cannot write
outside its install, holds no capability and — the server being root — is not root; what it
installs is handed back to the server and its function imports it. A hostile build that
fails leaves nothing behind.

The package is a source distribution made here and shipped in the code zip, so pip builds it
(with setuptools from the machine's indexes) and runs its setup.py. The setup.py writes what
it found into the module it installs; the function returns it."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import stat
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ember.client import AsyncClient
from ember.sandbox.bubblewrap import BUILD_UID
from tests.conftest import make_zip
from tests.inprocess import Ember
from tests.waiting import until

Run = Callable[..., None]

SETUP = """
import json, os, sys
from setuptools import setup

HOME = {home!r}
report = {{"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}}
for name in ("decoy.key", "admin.key", "ember.db"):
    try:
        with open(os.path.join(HOME, name), "rb") as file:
            report[name] = "read " + file.read(64).hex()
    except OSError as exc:
        report[name] = type(exc).__name__
for label, path in (("home", os.path.join(HOME, "pwned")), ("tmp", {marker!r})):
    try:
        with open(path, "w") as file:
            file.write("pwned")
        report["write " + label] = "written"
    except OSError as exc:
        report["write " + label] = type(exc).__name__
try:
    os.kill({server_pid}, 0)
    report["server"] = "visible"
except OSError as exc:
    report["server"] = type(exc).__name__
with open("/proc/self/status") as file:
    for line in file:
        key, _, value = line.partition(":")
        if key in ("CapEff", "CapPrm", "CapBnd", "NoNewPrivs"):
            report[key] = value.strip()
with open("hostile.py", "w") as file:
    file.write("REPORT = " + json.dumps(report) + "\\n")
if {fail!r} == "exit":
    sys.exit("the hostile build gives up")
if {fail!r} == "hang":
    import threading
    if os.fork() == 0:
        os.setsid()  # a daemon in a session of its own, out of reach of a group kill
        os.execv(sys.executable, [sys.executable, "-c",
                                  "import threading; threading.Event().wait()", "daemon"])
    threading.Event().wait()
setup(name="hostile", version="0.1", py_modules=["hostile"])
"""

MAIN = """
import hostile

def handler(event, context):
    return {"report": hostile.REPORT, "from": hostile.__file__}
"""


def _bubblewrap_or_skip() -> None:
    if shutil.which("bwrap") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bwrap is not installed: CI must test the bubblewrap sandbox")
        pytest.skip("bwrap is not installed (apt-get install bubblewrap)")


def _sdist(setup_py: str) -> bytes:
    """hostile-0.1.tar.gz: a setup.py and its PKG-INFO, nothing built."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        files = {"setup.py": setup_py,
                 "PKG-INFO": "Metadata-Version: 1.0\nName: hostile\nVersion: 0.1\n"}
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"hostile-0.1/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _code(home: Path, marker: Path, *, fail: str = "") -> dict[str, str | bytes]:
    setup_py = SETUP.format(home=str(home), marker=str(marker), server_pid=os.getpid(),
                            fail=fail)
    return {"main.py": MAIN, "requirements.txt": "./hostile-0.1.tar.gz\n",
            "hostile-0.1.tar.gz": _sdist(setup_py)}


@pytest.fixture
def decoy(home: Path) -> bytes:
    """A secret in the server's home that anyone may read (0644): only the sandbox hides
    it."""
    secret = os.urandom(16)
    (home / "decoy.key").write_bytes(secret)
    (home / "decoy.key").chmod(0o644)
    return secret


def test_a_hostile_build_sees_nothing_of_the_server(run: Run, home: Path, decoy: bytes) -> None:
    _bubblewrap_or_skip()
    marker = Path("/tmp") / f"ember-pwned-{uuid.uuid4().hex}"

    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("fn", _code(home, marker))
        answer = await ember.invoke("fn", {})
        assert answer.status_code == 200, answer.text
        report = answer.json()["report"]

        # Nothing of <home>, even what anyone may read; nothing written on the host.
        assert (home / "decoy.key").read_bytes() == decoy
        assert report["decoy.key"] == "FileNotFoundError", report
        assert not report["admin.key"].startswith("read"), report
        assert not report["ember.db"].startswith("read"), report
        assert report["write home"] != "written", report
        assert not (home / "pwned").exists() and not marker.exists()
        assert report["server"] == "ProcessLookupError", report  # its own PID namespace
        # No capability, none to gain; not root when the server is.
        assert int(report["CapEff"], 16) == int(report["CapPrm"], 16) == 0, report
        assert report["NoNewPrivs"] == "1", report
        if os.geteuid() == 0:
            assert (report["uid"], report["gid"], report["groups"]) == (BUILD_UID, BUILD_UID, [])
            assert int(report["CapBnd"], 16) == 0, report

        # The install is the server's, readable by instances (they imported it above).
        [build] = (await ember.http.get("/functions/fn/builds")).json()["builds"]
        log = (await ember.http.get(f"/builds/{build['id']}")).json()["log"]
        assert log.startswith("$ python -m pip install --target /var/build/target "), log
        deps = ember.services.builds.path(build["key"])
        for path in [deps, *deps.rglob("*")]:
            found = path.lstat()
            assert found.st_uid == os.geteuid(), path
            if not path.is_symlink():
                assert found.st_mode & (stat.S_ISUID | stat.S_ISGID) == 0, path
                assert found.st_mode & stat.S_IROTH, path

    run(scenario, sandbox="bubblewrap")


def test_a_hostile_build_that_fails_leaves_nothing(run: Run, home: Path, decoy: bytes) -> None:
    _bubblewrap_or_skip()
    marker = Path("/tmp") / f"ember-pwned-{uuid.uuid4().hex}"

    async def scenario(ember: Ember) -> None:
        client = AsyncClient(http=ember.http)
        started = await client.start_build(make_zip(_code(home, marker, fail="exit")), "fn")
        done = await client.wait_build(started.id)
        assert done.status == "failed" and "pip exited with status" in (done.error or "")
        assert "the hostile build gives up" in (await client.get_build(done.id)).log
        assert list((home / "deps").iterdir()) == []
        assert not (home / "pwned").exists() and not marker.exists()

    run(scenario, sandbox="bubblewrap")


def _builders() -> dict[int, list[str]]:
    """The processes running as ``BUILD_UID``: their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == BUILD_UID:
                found[int(entry.name)] = (entry / "cmdline").read_text().split("\0")
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended while being looked at
    return found


def test_a_stopped_build_leaves_no_process(run: Run, home: Path) -> None:
    _bubblewrap_or_skip()
    if os.geteuid() != 0:
        pytest.skip("builds run as the server's user: their processes cannot be told apart")
    assert _builders() == {}
    marker = Path("/tmp") / f"ember-pwned-{uuid.uuid4().hex}"

    async def scenario(ember: Ember) -> None:
        client = AsyncClient(http=ember.http)
        started = await client.start_build(make_zip(_code(home, marker, fail="hang")))
        # Its setup.py waits forever, and so does the daemon it started.
        await until(lambda: any("daemon" in line for line in _builders().values()),
                    message="the hostile setup.py started its daemon")
        await asyncio.to_thread(ember.services.builds.close)  # kills running builds
        done = await client.wait_build(started.id)
        assert done.status == "failed" and "server stopped" in (done.error or ""), done
        await until(lambda: _builders() == {}, message="every process of the build is gone")

    run(scenario, sandbox="bubblewrap")
