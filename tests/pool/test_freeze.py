"""Idle mode at the instance level: freeze stops every process of an idle instance (its
cgroup freezer, or SIGSTOP without one), thaw lets it serve again; the pre_freeze hook.

Each scenario runs in four sandboxes: cgroups (freezer) and rlimits (SIGSTOP), each as a
plain process and inside bubblewrap (a PID namespace: the server freezes by host pid).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.pool.instance import HttpRequest, Instance, InstanceState
from ember.sandbox.freezer import process_tree
from tests.pool.conftest import Harness, running_harness
from tests.waiting import until

pytestmark = pytest.mark.timeout(60)

MODES = {
    "cgroup": {"use_cgroups": None, "isolation": "process"},
    "sigstop": {"use_cgroups": False, "isolation": "process"},
    "bubblewrap-cgroup": {"use_cgroups": None, "isolation": "bubblewrap"},
    "bubblewrap-sigstop": {"use_cgroups": False, "isolation": "bubblewrap"},
}

ECHO = """
def handler(event, context):
    return {"echo": event}
"""


@pytest.fixture(params=list(MODES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    mode = MODES[request.param]
    if mode["isolation"] == "bubblewrap" and shutil.which("bwrap") is None:
        if os.environ.get("CI"):
            pytest.fail("bwrap is not installed: CI must test the bubblewrap sandbox")
        pytest.skip("bwrap is not installed (apt-get install bubblewrap)")
    with running_harness(tmp_path, use_zygote=True, use_cgroups=mode["use_cgroups"],
                         isolation=str(mode["isolation"])) as harness:
        freezer = "freezer" in getattr(harness.launcher.sandboxes, "enforced", "")
        if request.param.endswith("cgroup") and not freezer:
            pytest.skip("no cgroup freezer here: the SIGSTOP modes cover this machine")
        assert freezer == request.param.endswith("cgroup")
        yield harness


def cpu_ticks(instance: Instance) -> dict[tuple[int, int], int]:
    """utime + stime of every thread of every process of the instance (host pids)."""
    ticks = {}
    for pid in process_tree(instance.pid):
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in threads:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            ticks[(pid, int(tid))] = int(fields[11]) + int(fields[12])
    return ticks


def lines(harness: Harness, text: str) -> list[str | None]:
    """The request ids of the log lines that contain ``text``."""
    return [log.request_id for log in harness.logs if text in log.line]


def test_a_frozen_instance_thaws_and_answers(harness: Harness) -> None:
    async def scenario() -> None:
        instance = await harness.start(ECHO)
        assert (await harness.invoke(instance, 1)).body == b'{"echo": 1}'
        assert await instance.freeze()
        assert instance.frozen and instance.state is InstanceState.FROZEN and instance.alive
        with pytest.raises(RuntimeError, match="frozen"):
            await harness.invoke(instance, 2)
        assert not await instance.freeze()  # not idle
        instance.thaw()
        assert instance.state is InstanceState.IDLE and not instance.frozen
        for n in range(3):  # again and again
            assert (await harness.invoke(instance, n, request_id=f"r{n}")).body == \
                f'{{"echo": {n}}}'.encode()
            assert await instance.freeze()
            instance.thaw()
        instance.thaw()  # not frozen: nothing to do
        assert instance.state is InstanceState.IDLE

    harness.run(scenario())


SPINNER = """
import subprocess, sys, threading

def spin():
    while True:
        pass

def init():
    threading.Thread(target=spin, daemon=True).start()
    # A process of its own too: the freeze reaches what the instance started.
    subprocess.Popen([sys.executable, "-c", "while True: pass"])

def handler(event, context):
    return "spinning"
"""


def test_a_frozen_instance_uses_no_cpu(harness: Harness) -> None:
    async def scenario() -> None:
        instance = await harness.start(SPINNER, initializer="main.init")

        def spinning() -> bool:
            first = cpu_ticks(instance)
            return len({pid for pid, _ in first}) == 2 and sum(first.values()) > 0

        await until(spinning, message="the thread and the child process spin")
        before = cpu_ticks(instance)
        await until(lambda: sum(cpu_ticks(instance).values()) > sum(before.values()),
                    message="the instance uses CPU")
        assert await instance.freeze()
        frozen = cpu_ticks(instance)
        # Real time passes (a blocking wait that nothing sets): not one tick more.
        await asyncio.to_thread(threading.Event().wait, 0.3)
        assert cpu_ticks(instance) == frozen
        instance.thaw()
        await until(lambda: sum(cpu_ticks(instance).values()) > sum(frozen.values()),
                    message="the thawed instance runs again")
        assert (await harness.invoke(instance)).body == b"spinning"

    harness.run(scenario())


HOOKS = """
import os, time

def pre_freeze(context):
    print("pre_freeze", context.request_id, round(context.get_remaining_time_ms() / 1000))

def failing():
    raise RuntimeError("cannot close the pool")

def waiting():
    print("pre_freeze started")
    while not os.path.exists("release"):
        time.sleep(0.01)
    print("pre_freeze done")

def pre_stop():
    print("pre_stop ran")

def handler(event, context):
    return "ok"
"""


def test_pre_freeze_runs_before_the_freeze(harness: Harness) -> None:
    async def scenario() -> None:
        instance = await harness.start(HOOKS, pre_freeze="main.pre_freeze",
                                       pre_freeze_timeout_s=7.0)
        assert await instance.freeze()
        # Its line came before the freeze, without a request id, its timeout in context.
        assert lines(harness, "pre_freeze None 7") == [None]
        instance.thaw()
        assert (await harness.invoke(instance)).body == b"ok"
        assert await instance.freeze()
        assert lines(harness, "pre_freeze None 7") == [None, None]  # each time

    harness.run(scenario())


def test_a_failing_pre_freeze_is_logged_and_the_instance_frozen(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        instance = await harness.start(HOOKS, pre_freeze="main.failing")
        with caplog.at_level(logging.WARNING, logger="ember.pool.instance"):
            assert await instance.freeze()
        assert instance.frozen
        assert lines(harness, "RuntimeError: cannot close the pool") == [None]
        assert any("pre_freeze failed (RuntimeError: cannot close the pool)" in r.getMessage()
                   for r in caplog.records)
        instance.thaw()
        assert (await harness.invoke(instance)).body == b"ok"

    harness.run(scenario())


def test_a_late_pre_freeze_is_logged_and_the_instance_frozen(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        spec = harness.spec(HOOKS, pre_freeze="main.waiting", pre_freeze_timeout_s=0.3)
        instance = await harness.launcher.launch(spec)
        with caplog.at_level(logging.WARNING, logger="ember.pool.instance"):
            assert await instance.freeze()
        assert instance.frozen
        assert lines(harness, "pre_freeze started") == [None]
        assert lines(harness, "pre_freeze did not finish within 0.3 s") == [None]
        assert any("pre_freeze did not finish" in r.getMessage() for r in caplog.records)
        # Thawed, the hook goes on; the next request is answered once it is done.
        (Path(spec.code_dir) / "release").touch()
        instance.thaw()
        assert (await harness.invoke(instance)).body == b"ok"
        assert lines(harness, "pre_freeze done") == [None]

    harness.run(scenario())


def test_a_thaw_during_pre_freeze_calls_the_freeze_off(harness: Harness) -> None:
    async def scenario() -> None:
        spec = harness.spec(HOOKS, pre_freeze="main.waiting")
        instance = await harness.launcher.launch(spec)
        freezing = asyncio.ensure_future(instance.freeze())
        await until(lambda: lines(harness, "pre_freeze started"), message="the hook runs")
        assert instance.frozen  # no request may take it meanwhile without a thaw
        instance.thaw()
        assert instance.state is InstanceState.IDLE
        (Path(spec.code_dir) / "release").touch()
        assert await freezing is False
        assert instance.state is InstanceState.IDLE
        assert (await harness.invoke(instance)).body == b"ok"

    harness.run(scenario())


def test_a_frozen_instance_killed_from_outside_is_seen_dead(harness: Harness) -> None:
    async def scenario() -> None:
        instance = await harness.start(ECHO)
        assert await instance.freeze()
        os.kill(instance.pid, signal.SIGKILL)
        await until(lambda: not instance.alive, message="the killed instance is seen dead")
        status = await instance.wait_gone()
        assert status.signal == signal.SIGKILL
        assert harness.launcher.instances == []

        # The same, when the next request comes first: after thaw() it is not alive.
        second = await harness.start(ECHO)
        assert await second.freeze()
        os.kill(second.pid, signal.SIGKILL)
        second.thaw()
        await until(lambda: not second.alive, message="the thawed dead instance is gone")
        assert (await second.wait_gone()).signal == signal.SIGKILL

    harness.run(scenario())


def test_stopping_a_frozen_instance_runs_pre_stop(harness: Harness) -> None:
    async def scenario() -> None:
        instance = await harness.start(HOOKS, pre_stop="main.pre_stop")
        assert await instance.freeze()
        await instance.stop(grace_s=10)
        assert instance.state is InstanceState.GONE
        assert instance.exit_status is not None and instance.exit_status.code == 0
        assert lines(harness, "pre_stop ran") == [None]

    harness.run(scenario())


def test_killing_a_frozen_instance_ends_every_process(harness: Harness) -> None:
    async def scenario() -> None:
        instance = await harness.start(SPINNER, initializer="main.init")
        await until(lambda: len(process_tree(instance.pid)) == 2, message="its child runs")
        pids = process_tree(instance.pid)
        assert await instance.freeze()
        instance.kill()
        assert not instance.alive
        assert (await instance.wait_gone()).signal == signal.SIGKILL
        # The cgroup kills its child too; a process sandbox kills the descendants it
        # finds through the instance process before killing it.
        await until(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids),
                    message="every process of the instance ended")

    harness.run(scenario())


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


WSGI_APP = """
def app(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"web " + environ["PATH_INFO"].encode()]

def pre_freeze():
    print("web pre_freeze")
"""

ASGI_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                print("asgi shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi " + scope["path"].encode()})

async def pre_freeze():
    print("asgi pre_freeze")
"""

CUSTOM_SERVER = """
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._answer()

    def _answer(self):
        body = ("custom " + self.path).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


async def _get(instance: Instance, path: str) -> bytes:
    request = HttpRequest("GET", path, "", b"", [], b"")
    exchange = await instance.http("h" + path, request)
    return b"".join([chunk async for chunk in exchange.body()])


def test_web_and_custom_functions_freeze_and_thaw(harness: Harness) -> None:
    async def scenario() -> None:
        web = await harness.launcher.launch(harness.spec(
            WSGI_APP, kind="web", app="main:app", pre_freeze="main.pre_freeze"))
        assert await web.freeze()
        assert lines(harness, "web pre_freeze") == [None]
        web.thaw()
        assert await _get(web, "/a") == b"web /a"

        custom = await harness.launcher.launch(harness.spec(
            "", code_dir=harness.code("", **{"server.py": CUSTOM_SERVER}), kind="custom",
            command=(sys.executable, "server.py")))
        assert await custom.freeze()  # no Python hook; its server process stops too
        custom.thaw()
        assert await _get(custom, "/b") == b"custom /b"
        assert (await harness.invoke(custom, 1)).body == b"custom /invoke"

    harness.run(scenario())


def test_an_asgi_app_freezes_thaws_and_shuts_down(harness: Harness) -> None:
    # Its loop reads the instance's frames; freeze and stop still run on the main thread
    # (the hook, then the app's lifespan shutdown).
    async def scenario() -> None:
        web = await harness.launcher.launch(harness.spec(
            ASGI_APP, kind="web", app="main:app", pre_freeze="main.pre_freeze"))
        assert await _get(web, "/a") == b"asgi /a"
        assert await web.freeze()
        assert lines(harness, "asgi pre_freeze") == [None]
        web.thaw()
        assert await _get(web, "/b") == b"asgi /b"
        await web.stop()
        assert lines(harness, "asgi shutdown") == [None]

    harness.run(scenario())
