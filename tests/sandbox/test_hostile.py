"""Hostile functions against the bubblewrap sandbox: each attack fails inside the function,
and afterwards the server and a victim function still answer as before.

One server for the module (``sandbox="bubblewrap"``, as root here and on CI: an instance
user id and ``/tmp`` each); every test ends by checking the server and the victim.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from ember.sandbox.base import DEFAULT_PIDS
from ember.sandbox.bubblewrap import FIRST_INSTANCE_UID, INSTANCE_UIDS
from ember.settings import Settings
from tests.inprocess import Ember, running
from tests.waiting import until

T = TypeVar("T")

# The bomb's processes end by themselves after this long, whatever the sandbox does.
BOMB_LIFE_S = 40.0
BOMBER_TIMEOUT_S = 3.0

VICTIM = """
import os

CALLS = 0


def handler(event, context):
    global CALLS
    CALLS += 1
    return {"says": "victim", "calls": CALLS, "task": sorted(os.listdir("/var/task"))}
"""

# Every attack is an ``op`` of one handler; what it tried comes back as data (the name of
# the exception each step raised), or the handler raises and the user sees FunctionError.
ATTACKER = r'''
import ctypes
import errno
import fcntl
import os
import signal
import socket
import threading
import time

LOCK = threading.Lock()
LEAKED = []
PTRACE_ATTACH = 16
PTRACE_DETACH = 17
MS_REMOUNT = 32
MS_BIND = 4096


def outcome(step):
    try:
        result = step()
    except BaseException as exc:  # the name of what stopped it is the answer
        return type(exc).__name__
    return "done" if result is None else result


def read(path):
    with open(path, "rb") as f:
        return "read %d bytes" % len(f.read())


def write(path):
    with open(path, "wb") as f:
        f.write(b"pwned")


def ptrace(pid):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) == 0:
        libc.ptrace(PTRACE_DETACH, pid, None, None)
        return "attached"
    return errno.errorcode[ctypes.get_errno()]


def remount(path):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(None, path.encode(), None, MS_REMOUNT | MS_BIND, None) == 0:
        return "remounted"
    return errno.errorcode[ctypes.get_errno()]


def mount_tmpfs(path):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"tmpfs", path.encode(), b"tmpfs", 0, None) == 0:
        return "mounted"
    return errno.errorcode[ctypes.get_errno()]


def cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError as exc:
        return type(exc).__name__


def connect(port):
    def step():
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return "connected"
    return outcome(step)


def sockets():
    """The server's Unix sockets bound into the sandbox (for the launch, as root)."""
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].endswith(".sock")]


def connect_unix(path):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        return "connected"


def processes():
    return {p: cmdline(p) for p in os.listdir("/proc") if p.isdigit()}


def whoami(event):
    status = {line.split(":")[0]: line.split(":")[1].strip()
              for line in open("/proc/self/status") if line.startswith(("Cap", "NoNewPrivs"))}
    return {"uid": os.getuid(), "pid": os.getpid(), "ppid": os.getppid(),
            "tmp": sorted(os.listdir("/tmp")), "task": sorted(os.listdir("/var/task")),
            "status": status}


def read_secrets(event):
    return {path: outcome(lambda: read(path)) for path in event["paths"]}


def list_dirs(event):
    return {path: outcome(lambda: sorted(os.listdir(path))) for path in event["paths"]}


def write_outside(event):
    steps = {path: (lambda path=path: write(path)) for path in event["paths"]}
    steps["mkdir /var/task/x"] = lambda: os.mkdir("/var/task/x")
    steps["rename /var/task/main.py"] = lambda: os.rename("/var/task/main.py", "/tmp/m.py")
    steps["chmod /var/task/main.py"] = lambda: os.chmod("/var/task/main.py", 0o777)
    steps["unlink /var/task/main.py"] = lambda: os.unlink("/var/task/main.py")
    steps["remount /var/task"] = lambda: remount("/var/task")
    steps["mount over /var/task"] = lambda: mount_tmpfs("/var/task")
    return {name: outcome(step) for name, step in steps.items()}


def fill_tmp(event):
    chunk = b"x" * (1 << 20)
    with open("/tmp/filler", "wb") as f:
        for _ in range(event["mib"]):
            f.write(chunk)
            f.flush()
    return {"wrote_mib": event["mib"]}


def hold(event):
    """Leave a file in /tmp, tell the test this instance's pid, and wait for its word."""
    with open("/tmp/" + event["mark"], "w") as f:
        f.write("secret of " + event["mark"])
    with socket.create_connection(("127.0.0.1", event["port"]), timeout=60) as conn:
        conn.sendall(b"%d\n" % os.getpid())
        conn.settimeout(60)
        conn.recv(1)
    return whoami(event)


def trespass(event):
    """Everything an instance might try against the instance held by ``hold``, its zygote
    and the server."""
    other = event["other_pid"]
    zygote = os.getppid()
    with open("/tmp/second", "w") as f:
        f.write("secret of second")
    return {
        "tmp": sorted(os.listdir("/tmp")),
        "read other's /tmp": outcome(lambda: read("/proc/%d/root/tmp/%s" % (other, event["mark"]))),
        "read other's environ": outcome(lambda: read("/proc/%d/environ" % other)),
        "ptrace other": ptrace(other),
        "ptrace zygote": ptrace(zygote),
        "ptrace 1": ptrace(1),
        "kill other": outcome(lambda: os.kill(other, signal.SIGKILL)),
        "kill zygote": outcome(lambda: os.kill(zygote, signal.SIGKILL)),
        "kill 1": outcome(lambda: os.kill(1, signal.SIGKILL)),
        "kill server": outcome(lambda: os.kill(event["server_pid"], signal.SIGKILL)),
        "server sockets": {path: outcome(lambda: connect_unix(path)) for path in sockets()},
        "processes": processes(),
    }


def forks(event):
    """Start processes (``cat`` reading a pipe: little memory each) until the limit says
    no; then let them go."""
    r, w = os.pipe()
    actions = [(os.POSIX_SPAWN_DUP2, r, 0), (os.POSIX_SPAWN_CLOSE, w)]
    children, error = [], None
    try:
        for _ in range(event["most"]):
            children.append(os.posix_spawn("/usr/bin/cat", ["cat"], {}, file_actions=actions))
    except OSError as exc:
        error = errno.errorcode.get(exc.errno, type(exc).__name__)
    os.close(w)
    for pid in children:
        os.waitpid(pid, 0)
    os.close(r)
    return {"forked": len(children), "error": error}


def threads(event):
    release = threading.Event()
    started, error = [], None
    try:
        for _ in range(event["most"]):
            t = threading.Thread(target=release.wait, daemon=True)
            t.start()
            started.append(t)
    except RuntimeError as exc:
        error = str(exc)
    release.set()
    for t in started:
        t.join()
    return {"started": len(started), "error": error}


def fork_bomb(event):
    """Every process forks forever; none lives past ``event["life_s"]`` whatever happens,
    so that a broken limit cannot take the machine down with the test."""
    open("/tmp/bomb", "w").close()
    end = time.monotonic() + event["life_s"]
    while time.monotonic() < end:
        try:
            os.fork()
        except OSError:
            pass
    os._exit(0)


def open_files(event):
    """Open files until the limit: the handler raises (``OSError`` EMFILE)."""
    held = LEAKED if event.get("leak") else []
    while True:
        held.append(open("/dev/null", "rb"))


def leaked(event):
    """Whether more files can be opened, and close those kept."""
    opened = outcome(lambda: open("/dev/null").close())
    while LEAKED:
        LEAKED.pop().close()
    return {"errno": opened, "left": len(LEAKED)}


def hold_lock(event):
    LOCK.acquire()
    f = open("/tmp/lock", "w")
    fcntl.flock(f, fcntl.LOCK_EX)
    LEAKED.append(f)
    time.sleep(3600)


def try_lock(event):
    got = LOCK.acquire(blocking=False)
    with open("/tmp/lock", "w") as f:
        flocked = outcome(lambda: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB))
    if got:
        LOCK.release()
    return {"lock": got, "flock": flocked}


def connect_to(event):
    return {str(port): connect(port) for port in event["ports"]}


def handler(event, context):
    return globals()[event["op"]](event)
'''


# --- the server -----------------------------------------------------------------------


class Server:
    """An in-process server kept for the module on one event loop of its own; tests run
    their coroutines on it with ``run``."""

    def __init__(self, runner: asyncio.Runner, ember: Ember, home: Path) -> None:
        self.runner = runner
        self.ember = ember
        self.home = home
        self.victim_code: Path = Path()
        self.victim_main = b""

    def run(self, coroutine: Awaitable[T]) -> T:
        async def main() -> T:
            return await coroutine

        return self.runner.run(main())

    async def invoke(self, name: str, event: Any) -> httpx.Response:
        return await self.ember.invoke(name, event)

    async def ok(self, name: str, event: Any) -> Any:
        answer = await self.ember.invoke(name, event)
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def check_unharmed(self) -> None:
        """The server answers, the victim's code on the host is as deployed, and the
        victim still says its own string."""
        health = await self.ember.http.get("/healthz")
        assert health.status_code == 200, health.text
        assert (self.victim_code / "main.py").read_bytes() == self.victim_main
        assert sorted(p.name for p in self.victim_code.iterdir()) == ["main.py"]
        answer = await self.ok("victim", {})
        assert answer["says"] == "victim" and answer["task"] == ["main.py"], answer


def _bubblewrap_or_skip() -> None:
    if shutil.which("bwrap") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("bwrap is not installed: CI must test the bubblewrap sandbox")
        pytest.skip("bwrap is not installed (apt-get install bubblewrap)")


@pytest.fixture(autouse=True)
def _empty_database() -> None:
    """Replaces the suite's per-test emptying of a PostgreSQL database: this module's
    server keeps its functions from one test to the next."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, _database: None) -> Iterator[Server]:
    _bubblewrap_or_skip()
    home = tmp_path_factory.mktemp("hostile")
    settings = Settings(home=home, sandbox="bubblewrap")
    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        started: asyncio.Future[Ember] = loop.create_future()
        stop = asyncio.Event()

        async def serve() -> None:
            async with running(settings) as ember:
                started.set_result(ember)
                await stop.wait()

        task = loop.create_task(serve())

        async def start() -> Ember:
            waits: set[asyncio.Future[Any]] = {started, task}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if not started.done():
                task.result()
            return started.result()

        ember = runner.run(start())
        try:
            there = Server(runner, ember, home)
            victim = there.run(ember.deploy("victim", VICTIM))
            there.victim_code = home / "artifacts" / "code" / victim["code"]["sha256"]
            there.victim_main = (there.victim_code / "main.py").read_bytes()
            assert there.victim_main == VICTIM.encode()
            there.run(ember.deploy("attacker", ATTACKER, tmp_mb=16, timeout_s=30))
            there.run(ember.deploy("isolated", ATTACKER, network="none", timeout_s=30))
            there.run(ember.deploy("sleeper", ATTACKER, timeout_s=1))
            there.run(ember.deploy("bomber", ATTACKER, timeout_s=BOMBER_TIMEOUT_S))
            yield there
        finally:
            stop.set()
            runner.run(asyncio.wait_for(task, None))


def _error(answer: httpx.Response, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def _processes_of(uid: int) -> list[int]:
    """The processes of this test's server (its descendants) that run as ``uid`` — other
    servers on the host give their instances the same user ids."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            if entry.stat().st_uid != uid:
                continue
            pid = int(entry.name)
            while pid > 1 and pid != os.getpid():
                pid = _parent(pid)
            if pid == os.getpid():
                found.append(int(entry.name))
    return found


# --- what an instance can read --------------------------------------------------------


def test_host_secrets_and_other_functions_code_are_out_of_sight(server: Server) -> None:
    home = server.home
    # The admin key is given by the environment in tests: a file stands in for it.
    (home / "admin.key").write_text("admin key on disk")
    secrets = [Path("/etc/shadow"), home / "ember.db", home / "admin.key",
               home / "master.key", server.victim_code / "main.py"]
    for path in secrets[1:]:
        if path.name != "ember.db" or not os.environ.get("EMBER_DATABASE_URL"):
            assert path.is_file(), path  # there on the host: the sandbox hides it

    async def scenario() -> None:
        seen = await server.ok("attacker", {"op": "read_secrets",
                                            "paths": [str(p) for p in secrets]})
        assert seen == {str(p): "FileNotFoundError" for p in secrets}
        listed = await server.ok("attacker", {"op": "list_dirs", "paths": [
            str(home), str(home / "artifacts" / "code"), str(server.victim_code), "/var/task",
            "/var/layers", "/home"]})
        assert listed.pop("/var/task") == ["main.py"], listed  # its own code, nothing more
        assert set(listed.values()) == {"FileNotFoundError"}, listed
        me = await server.ok("attacker", {"op": "whoami"})
        assert FIRST_INSTANCE_UID <= me["uid"] < FIRST_INSTANCE_UID + INSTANCE_UIDS, me
        # No capability left in any set, and none to be gained.
        status = me["status"]
        assert status.pop("NoNewPrivs") == "1", me
        assert set(status) == {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}, me
        assert set(status.values()) == {"0000000000000000"}, me
        await server.check_unharmed()

    server.run(scenario())


# --- what an instance can write -------------------------------------------------------


def test_nothing_outside_tmp_can_be_written_and_the_victim_keeps_its_code(
    server: Server,
) -> None:
    targets = ["/var/task/main.py", "/var/task/new.py", "/usr/x", "/etc/x", "/x", "/var/x",
               "/dev/x", "/proc/x", str(server.victim_code / "main.py")]

    async def scenario() -> None:
        tried = await server.ok("attacker", {"op": "write_outside", "paths": targets})
        for step in ("remount /var/task", "mount over /var/task"):
            assert tried.pop(step) == "EPERM", tried
        assert all(said.endswith("Error") for said in tried.values()), tried
        mine = await server.ok("attacker", {"op": "whoami"})
        assert mine["task"] == ["main.py"]
        # A cold start of the victim (a new version of it) reads its code again.
        patched = await server.ember.http.patch(
            "/functions/victim", json={"config": {"description": "after the attack"}})
        assert patched.status_code == 200, patched.text
        await server.ember.settle()
        answer = await server.ok("victim", {})
        assert answer == {"says": "victim", "calls": 1, "task": ["main.py"]}
        await server.check_unharmed()

    server.run(scenario())


def test_tmp_is_capped_at_tmp_mb(server: Server) -> None:
    async def scenario() -> None:
        answer = await server.invoke("attacker", {"op": "fill_tmp", "mib": 64})
        message = _error(answer, 502, "FunctionError")
        assert os.strerror(errno.ENOSPC) in message, message
        # Below the cap, on the same kind of instance, writing works.
        assert await server.ok("attacker", {"op": "fill_tmp", "mib": 8}) == {"wrote_mib": 8}
        await server.check_unharmed()

    server.run(scenario())


# --- what an instance can do to other processes ---------------------------------------


def test_instances_see_neither_each_others_tmp_nor_processes_outside(server: Server) -> None:
    async def scenario() -> None:
        held_pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        release = asyncio.Event()

        async def on_connect(reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
            held_pid.set_result(int(await reader.readline()))
            await release.wait()
            writer.write(b"!")
            await writer.drain()
            writer.close()

        listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            holder = asyncio.ensure_future(server.invoke(
                "attacker", {"op": "hold", "mark": "first", "port": port}))
            other = await asyncio.wait_for(held_pid, 60)
            tried = await server.ok("attacker", {
                "op": "trespass", "other_pid": other, "mark": "first",
                "server_pid": os.getpid()})
            release.set()
            held = await holder
        finally:
            listener.close()
        assert held.status_code == 200, held.text
        # Each instance sees its own files in /tmp, never the other's.
        assert "first" in held.json()["tmp"] and "second" not in held.json()["tmp"], held.text
        assert "second" in tried["tmp"] and "first" not in tried["tmp"], tried
        for step in ("read other's /tmp", "read other's environ"):
            assert tried[step] == "PermissionError", tried
        for step in ("ptrace other", "ptrace zygote", "ptrace 1"):
            assert tried[step] == "EPERM", tried
        for step in ("kill other", "kill zygote", "kill 1"):
            assert tried[step] == "PermissionError", tried
        assert tried["kill server"] in ("ProcessLookupError", "PermissionError"), tried
        # The server's sockets bound into the sandbox (instances connect to them before
        # they take their own user id) take no connection from an instance's user: hidden
        # under the instance's own /tmp when the server's home is there, else root's.
        assert tried["server sockets"], tried
        assert set(tried["server sockets"].values()) <= {
            "PermissionError", "ConnectionRefusedError", "FileNotFoundError"}, tried
        # Only the sandbox's processes: bwrap, the version's zygote and its instances.
        processes = tried["processes"]
        for command in processes.values():
            assert "bwrap" in command or "ember.runtime.zygote" in command, processes
        await server.check_unharmed()

    server.run(scenario())


def test_processes_and_threads_stop_at_the_pids_limit(server: Server) -> None:
    async def scenario() -> None:
        forked = await server.ok("attacker", {"op": "forks", "most": 4 * DEFAULT_PIDS})
        assert forked["error"] == "EAGAIN" and 0 < forked["forked"] < DEFAULT_PIDS, forked
        started = await server.ok("attacker", {"op": "threads", "most": 4 * DEFAULT_PIDS})
        assert started["error"] and 0 < started["started"] < DEFAULT_PIDS, started
        # Both let go of what they made: the instance serves on.
        assert (await server.ok("attacker", {"op": "whoami"}))["tmp"] is not None
        await server.check_unharmed()

    server.run(scenario())


def test_a_fork_bomb_is_stopped_by_the_timeout_and_cleaned_up(server: Server) -> None:
    """Every process of the bomb forks in a loop; the function's timeout ends it all.

    The bomb's processes end by themselves after ``BOMB_LIFE_S`` (so that a broken sandbox
    cannot take the machine down with the test): the server must answer the timeout well
    before that — it stops the bomb, it does not wait for the bomb to stop."""

    async def scenario() -> None:
        me = await server.ok("bomber", {"op": "whoami"})
        started = time.monotonic()
        answer = await server.invoke("bomber", {"op": "fork_bomb", "life_s": BOMB_LIFE_S})
        answered_s = time.monotonic() - started
        _error(answer, 504, "FunctionTimeout")
        await until(lambda: not _processes_of(me["uid"]),
                    message="the fork bomb's processes are gone")
        # A fresh instance (the bomb left a file in its /tmp) answers the next invocation.
        after = await server.ok("bomber", {"op": "whoami"})
        assert "bomb" not in after["tmp"], after
        await server.check_unharmed()
        assert answered_s < BOMB_LIFE_S / 2, (
            f"the timeout of {BOMBER_TIMEOUT_S} s was answered after {answered_s:.1f} s, "
            f"(the bomb ends by itself after {BOMB_LIFE_S:g} s)")

    server.run(scenario())


# --- the network ----------------------------------------------------------------------


def test_network_none_reaches_nothing_and_outbound_does(server: Server) -> None:
    async def scenario() -> None:
        listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            ports = [5432, 6379, port]
            cut = await server.ok("isolated", {"op": "connect_to", "ports": ports})
            assert "connected" not in cut.values(), cut
            assert set(cut.values()) <= {"ConnectionRefusedError", "OSError", "TimeoutError"}
            wired = await server.ok("attacker", {"op": "connect_to", "ports": [port]})
            assert wired == {str(port): "connected"}
        finally:
            listener.close()
        await server.check_unharmed()

    server.run(scenario())


# --- file descriptors -----------------------------------------------------------------


def test_running_out_of_file_descriptors_is_the_functions_error(server: Server) -> None:
    async def scenario() -> None:
        answer = await server.invoke("attacker", {"op": "open_files"})
        assert os.strerror(errno.EMFILE) in _error(answer, 502, "FunctionError")
        assert (await server.ok("attacker", {"op": "whoami"}))["task"] == ["main.py"]
        # Descriptors kept open after the error: the instance still answers, and gets
        # them back when the function lets go.
        answer = await server.invoke("attacker", {"op": "open_files", "leak": True})
        assert os.strerror(errno.EMFILE) in _error(answer, 502, "FunctionError")
        assert await server.ok("attacker", {"op": "leaked"}) == {"errno": "OSError",
                                                                  "left": 0}
        assert (await server.ok("attacker", {"op": "whoami"}))["task"] == ["main.py"]
        await server.check_unharmed()

    server.run(scenario())


# --- time -----------------------------------------------------------------------------


def test_a_timeout_while_holding_locks_replaces_the_instance(server: Server) -> None:
    async def scenario() -> None:
        before = await server.ok("sleeper", {"op": "whoami"})
        answer = await server.invoke("sleeper", {"op": "hold_lock"})
        _error(answer, 504, "FunctionTimeout")
        # A new instance, whose locks are free.
        assert await server.ok("sleeper", {"op": "try_lock"}) == {"lock": True,
                                                                   "flock": "done"}
        after = await server.ok("sleeper", {"op": "whoami"})
        assert (after["uid"], after["pid"]) != (before["uid"], before["pid"])
        await server.check_unharmed()

    server.run(scenario())


def test_the_victim_answers_from_many_instances_after_everything(server: Server) -> None:
    """The module's last word: the victim's code is what was deployed, and it answers
    from several instances at once."""
    async def scenario() -> None:
        answers = await asyncio.gather(*(server.ok("victim", {}) for _ in range(3)))
        assert all(a["says"] == "victim" for a in answers), answers
        await server.check_unharmed()

    server.run(scenario())
