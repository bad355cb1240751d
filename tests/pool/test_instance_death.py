"""An instance's death is seen at once, even when a process it left behind holds its socket."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from ember.errors import InstanceCrashed
from ember.pool.instance import InstanceState
from tests.pool.conftest import Harness, running_harness

pytestmark = pytest.mark.timeout(30)

# The classic daemon: fork, new session, fork again; the handler's process then exits.
# Python's fork runs the runtime's at-fork hook, so the daemon drops the instance socket.
FORKS_A_DAEMON = """
    import os, time

    def handler(event, context):
        pidfile = event["pidfile"]
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open(pidfile + ".tmp", "w") as out:
                    out.write(str(os.getpid()))
                os.rename(pidfile + ".tmp", pidfile)
                time.sleep(60)
            os._exit(0)
        while not os.path.exists(pidfile):  # known, so that the test can end it
            time.sleep(0.01)
        os._exit(0)
"""

# A daemon that inherits every descriptor, the instance socket included, without Python's
# fork (as a C library or an exec'd program would): only the process's exit tells.
SPAWNS_A_DAEMON_WITH_THE_SOCKET = """
    import os, subprocess, sys

    def handler(event, context):
        fds = [int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2]
        open_fds = []
        for fd in fds:
            try:
                os.fstat(fd)
            except OSError:
                continue
            open_fds.append(fd)
        daemon = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            pass_fds=open_fds, start_new_session=True,
        )
        with open(event["pidfile"], "w") as out:
            out.write(str(daemon.pid))
        os._exit(0)
"""


@pytest.mark.parametrize("source", [FORKS_A_DAEMON, SPAWNS_A_DAEMON_WITH_THE_SOCKET],
                         ids=["fork", "inherited-socket"])
def test_exit_after_starting_a_daemon_is_a_crash_at_once(
    harness: Harness, tmp_path: Path, source: str
) -> None:
    _daemon_exit_is_a_crash(harness, tmp_path, source)


def test_the_same_on_uvloop_as_the_server_runs(tmp_path: Path) -> None:
    # uvloop's transport socket has no shutdown(): the server must not rely on it.
    import uvloop

    with running_harness(tmp_path, use_zygote=True, loop_factory=uvloop.new_event_loop) as h:
        _daemon_exit_is_a_crash(h, tmp_path, SPAWNS_A_DAEMON_WITH_THE_SOCKET)


def _daemon_exit_is_a_crash(harness: Harness, tmp_path: Path, source: str) -> None:
    pidfile = tmp_path / "daemon.pid"

    async def scenario() -> None:
        # A timeout far longer than the test may run: only the exit itself can end the wait.
        instance = await harness.start(source, timeout_s=120.0)
        try:
            with pytest.raises(InstanceCrashed) as caught:
                await harness.invoke(instance, {"pidfile": str(pidfile)})
            assert caught.value.details["exit_code"] == 0
            assert caught.value.details["request_id"] == "r1"
            assert instance.state is InstanceState.GONE
            assert harness.launcher.instances == []
        finally:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)

    harness.run(scenario())
