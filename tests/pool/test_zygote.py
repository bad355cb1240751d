"""The zygote: fast forks, exit reports, and nobody outliving their parent."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ember.errors import InstanceCrashed
from ember.pool.zygote import Zygote, ZygoteDied, listen_unix
from ember.runtime import protocol
from ember.runtime.protocol import read_frame_async
from tests.pool.conftest import Harness, running_harness
from tests.waiting import until, wait_until

pytestmark = pytest.mark.timeout(60)

ECHO = "def handler(event, context):\n    return event\n"


def _gone(pid: int) -> bool:
    """Whether ``pid`` is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _cold_starts(harness: Harness, count: int) -> list[float]:
    async def scenario() -> list[float]:
        spec = harness.spec(ECHO)
        timings = []
        for _ in range(count):
            started = time.perf_counter()
            instance = await harness.launcher.launch(spec)
            timings.append((time.perf_counter() - started) * 1000)
            await instance.stop()
        return timings

    return harness.run(scenario())


def test_zygote_spawns_faster_than_a_fresh_interpreter(tmp_path: Path) -> None:
    with running_harness(tmp_path / "z", use_zygote=True) as harness:
        zygote_ms = statistics.median(_cold_starts(harness, 7))
    with running_harness(tmp_path / "f", use_zygote=False) as harness:
        fresh_ms = statistics.median(_cold_starts(harness, 7))
    print(f"\ncold start, median of 7: zygote {zygote_ms:.1f} ms, fresh {fresh_ms:.1f} ms")
    assert zygote_ms < fresh_ms


def test_killing_the_zygote_kills_its_instances(zygote: Harness) -> None:
    async def scenario() -> None:
        instances = [await zygote.start(ECHO) for _ in range(2)]
        old = zygote.launcher.zygote
        assert old is not None
        os.kill(old.pid, signal.SIGKILL)
        for instance in instances:
            await until(functools.partial(_gone, instance.pid), message=f"{instance.pid} gone")
            status = await instance.wait_gone()
            assert status.signal == signal.SIGKILL
            with pytest.raises(InstanceCrashed):
                await zygote.invoke(instance, {})
        # The next launch starts a new zygote.
        instance = await zygote.start(ECHO)
        assert zygote.launcher.zygote is not old and zygote.launcher.zygote_starts == 2
        assert json.loads((await zygote.invoke(instance, [1])).body) == [1]

    zygote.run(scenario())


def test_zygote_reports_exits(tmp_path: Path) -> None:
    async def scenario() -> None:
        sockets = tmp_path / "s"
        sockets.mkdir()
        hellos: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        writers = []

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            message = await read_frame_async(reader)
            assert message is not None
            await hellos.put(message)
            # Hang up without init: the instance exits with status 0.
            writer.close()

        server = await asyncio.start_unix_server(on_connect, path=str(sockets / "i.sock"))
        zygote = await Zygote.start(sockets / "z.sock")
        try:
            assert not (sockets / "z.sock").exists()
            child = await zygote.spawn("abc", str(sockets / "i.sock"))
            hello = await asyncio.wait_for(hellos.get(), 10)
            assert hello == {"t": protocol.HELLO, "id": "abc", "pid": child.pid}
            status = await asyncio.wait_for(child.wait(), 10)
            assert (status.code, status.signal) == (0, None)

            # A child that cannot connect exits with status 2.
            lost = await zygote.spawn("lost", str(sockets / "nothing.sock"))
            assert (await asyncio.wait_for(lost.wait(), 10)).code == 2
        finally:
            await zygote.close()
            server.close()
            await server.wait_closed()
        assert not zygote.alive
        with pytest.raises(ZygoteDied):
            await zygote.spawn("late", str(sockets / "i.sock"))

    asyncio.run(scenario())


def test_instances_die_with_the_server(tmp_path: Path) -> None:
    """SIGKILL the server: its zygote and instances die with it (PDEATHSIG, twice)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text(ECHO)
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        from pathlib import Path
        from ember.pool import InstanceSpec, Launcher

        async def main():
            launcher = Launcher(Path({str(tmp_path / "work")!r}), log_sink=lambda *a: None)
            await launcher.start()
            spec = InstanceSpec("fn", "latest", Path({str(code)!r}), "main.handler", {{}}, 128, 5)
            instance = await launcher.launch(spec)
            print(json.dumps([launcher.zygote.pid, instance.pid]), flush=True)
            await asyncio.Event().wait()  # until the test kills this server

        asyncio.run(main())
    """)
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        zygote_pid, instance_pid = json.loads(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()
    wait_until(lambda: _gone(zygote_pid), message="the zygote gone")
    wait_until(lambda: _gone(instance_pid), message="its instance gone")


def test_launcher_falls_back_to_fresh_interpreters(zygote: Harness, tmp_path: Path) -> None:
    """A zygote that cannot be restarted does not stop launches."""
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        'case "$*" in *ember.runtime.zygote*) exit 1;; esac\n'
        f'exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)

    async def scenario() -> None:
        launcher = zygote.launcher
        assert launcher.zygote is not None
        launcher.python = str(python)
        os.kill(launcher.zygote.pid, signal.SIGKILL)
        instance = await zygote.start(ECHO)
        assert launcher.zygote is None or not launcher.zygote.alive
        assert (await zygote.invoke(instance, "ok")).body == b"ok"

    zygote.run(scenario())


def test_a_listener_cancelled_while_it_starts_leaves_no_socket_open(tmp_path: Path) -> None:
    """A closing launcher cancels its prewarms: one cancelled as its zygote's socket was
    being made left that socket open (a ResourceWarning, an error in this suite)."""

    async def scenario() -> None:
        starting = asyncio.ensure_future(listen_unix(lambda r, w: w.close(), tmp_path / "z.sock"))
        await asyncio.sleep(0)  # it waits in start_serving now
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        server = await listen_unix(lambda r, w: w.close(), tmp_path / "z.sock")  # path free
        server.close()
        await server.wait_closed()

    asyncio.run(scenario())
    gc.collect()  # an unclosed socket would warn here


@pytest.mark.parametrize("use_zygote", [True, False], ids=["zygote", "fresh"])
def test_instances_yield_to_the_server_when_woken(tmp_path: Path, use_zygote: bool) -> None:
    """A handler sees its process run under SCHED_BATCH (woken by a frame, it waits for
    its turn rather than preempting the server that wrote it), forked from the zygote or
    started fresh."""
    source = "import os\n\ndef handler(event, context):\n    return os.sched_getscheduler(0)\n"
    with running_harness(tmp_path, use_zygote=use_zygote) as harness:
        async def scenario() -> object:
            instance = await harness.launcher.launch(harness.spec(source))
            try:
                answer = await instance.invoke("r1", b"null", "application/json")
            finally:
                await instance.stop()
            return json.loads(answer.body)

        assert harness.run(scenario()) == os.SCHED_BATCH
