"""Instance processes: forked by the zygote, or fresh interpreters; and how they end.

``ProcessHandle`` is what an ``Instance`` needs of its process (pid, kill, wait for the
``ExitStatus``); ``ZygoteChild`` and ``SubprocessHandle`` are its two kinds.

The zygote (``ember.runtime.zygote``) is a Python process with the runtime already
imported; forking it gives a new instance in a millisecond or two, against tens of
milliseconds to boot a fresh interpreter. It reaps its children and reports every exit,
which the ``Instance`` needs to tell an out-of-memory kill or a crash from a clean exit.

The zygote is started with the server's pid and sets PDEATHSIG, so it dies with the
server; its children set PDEATHSIG against it, so they die with it. When it dies anyway,
every exit still awaited resolves as SIGKILL with the reason "the zygote exited", and the
launcher starts a new zygote on its next spawn.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ember.runtime import protocol
from ember.runtime.protocol import Message, read_frame_async, write_frame_async

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExitStatus:
    """How an instance process ended: an exit code or the signal that killed it."""

    code: int | None = None
    signal: int | None = None
    reason: str = ""

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        """From ``subprocess`` style return codes, where ``-N`` means killed by signal N."""
        return cls(signal=-returncode) if returncode < 0 else cls(code=returncode)

    @property
    def signal_name(self) -> str | None:
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"

    def describe(self) -> str:
        text = (
            f"killed by {self.signal_name}"
            if self.signal is not None
            else f"exited with status {self.code}"
        )
        return f"{text} ({self.reason})" if self.reason else text

    def details(self) -> dict[str, Any]:
        """The fields an error's ``details`` carry about this exit."""
        found: dict[str, Any] = {"exit_code": self.code, "signal": self.signal}
        if self.signal is not None:
            found["signal_name"] = self.signal_name
        if self.reason:
            found["reason"] = self.reason
        return found


class ProcessHandle(Protocol):
    """The process behind an instance, whichever way it was started."""

    @property
    def pid(self) -> int: ...

    def kill(self) -> None:
        """SIGKILL the process unless it is known to have exited."""
        ...

    async def wait(self) -> ExitStatus:
        """Wait for the process to end (it is reaped by whoever started it)."""
        ...


_ZYGOTE_EXITED = ExitStatus(signal=signal.SIGKILL, reason="the zygote exited")


class ZygoteDied(RuntimeError):
    """The zygote is not running (it exited, or never started); a new one can be started."""


class ZygoteChild:
    """An instance process forked by the zygote (a ``ProcessHandle``).

    A zygote in a PID namespace of its own (the bubblewrap sandbox) reports pids of that
    namespace, which name other processes out here: such a child is ``namespaced`` until
    the launcher learns its real pid (``bind_pid``, from the instance's connection), and
    is killed through its zygote meanwhile.
    """

    def __init__(self, pid: int, exited: asyncio.Future[ExitStatus],
                 zygote: Zygote | None = None) -> None:
        self._pid = pid
        self._exited = exited
        self._zygote = zygote
        self.namespaced = zygote is not None and zygote.namespaced

    @property
    def pid(self) -> int:
        return self._pid

    def bind_pid(self, pid: int) -> None:
        """The child's pid as the server sees it."""
        self._pid = pid
        self.namespaced = False

    def kill(self) -> None:
        """SIGKILL the child, unless its exit was already reported (its pid may be reused)."""
        if self._exited.done():
            return
        if self.namespaced:
            if self._zygote is not None:
                self._zygote.kill_child(self._pid)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)

    async def wait(self) -> ExitStatus:
        """Wait for the zygote to report the child's exit."""
        return await asyncio.shield(self._exited)


Wrapper = Callable[[list[str]], list[str]]


async def start_runtime_process(
    module: str, args: list[str], *, python: str, env: Mapping[str, str] | None,
    cwd: Path | None, wrap: Wrapper | None = None,
) -> asyncio.subprocess.Process:
    """``python -P -m module args…`` with no stdin/stdout; stderr stays the server's so a
    failure to even start the runtime is visible. ``-P`` keeps the server's working
    directory off the child's import path; a session of its own keeps a terminal's Ctrl-C
    (sent to the whole foreground group) away from instances, whose lives the server runs.
    ``wrap`` turns the command into the one to run (the sandbox's)."""
    argv = [python, "-P", "-m", module, *args]
    if wrap is not None:
        argv = wrap(argv)
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )


class SubprocessHandle:
    """A fresh-interpreter instance process (a ``ProcessHandle``)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def wait(self) -> ExitStatus:
        return ExitStatus.from_returncode(await self.process.wait())


class ZygoteProcess(Protocol):
    """The process of a zygote: an ``asyncio`` subprocess, or (a version's preloader) a
    ``ZygoteChild`` of another zygote."""

    @property
    def pid(self) -> int: ...

    def kill(self) -> None: ...

    async def wait(self) -> object: ...


async def listen_unix(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any], path: Path,
) -> asyncio.Server:
    """``asyncio.start_unix_server`` on ``path``, safe to cancel: it yields once after it
    made its listening socket, and a cancellation then (a closing launcher cancels its
    prewarms) lost the server with its socket open. Made without serving, the server is
    ours before anything can be cancelled, and closed if starting to serve is."""
    server = await asyncio.start_unix_server(on_connect, path=str(path), start_serving=False)
    try:
        await server.start_serving()
    except BaseException:
        server.close()
        raise
    return server


class Zygote:
    """A running zygote and its control connection.

    ``process`` is the zygote's own process: a subprocess of the server, or for a
    preloader (``ember.runtime.preload``) a child of the version's zygote, which speaks
    the same conversation once it has imported the dependencies.
    """

    def __init__(
        self,
        process: ZygoteProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        namespaced: bool = False,
    ) -> None:
        self.process = process
        self.namespaced = namespaced
        self._reader = reader
        self._writer = writer
        self._requests = itertools.count(1)
        self._spawns: dict[int, asyncio.Future[ZygoteChild]] = {}
        self._exits: dict[int, asyncio.Future[ExitStatus]] = {}
        self._dead = False
        self._read_task = asyncio.get_running_loop().create_task(
            self._read_loop(), name=f"ember-zygote-{process.pid}"
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return not self._dead

    @classmethod
    async def start(
        cls,
        socket_path: Path,
        *,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout_s: float = 10.0,
        wrap: Wrapper | None = None,
        connect_path: Path | None = None,
    ) -> Zygote:
        """Start a zygote that connects back on ``socket_path`` (created, then removed).

        ``wrap``: the sandbox's command around the zygote's, which then runs in a PID
        namespace of its own (its children are ``namespaced``); ``connect_path``: where
        the zygote sees ``socket_path`` (its sandbox binds it elsewhere).

        Raises:
            ZygoteDied: the zygote exited or did not connect within ``timeout_s``.
        """
        loop = asyncio.get_running_loop()
        connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        connected = loop.create_future()

        accepting = True

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not accepting or connected.done():
                writer.close()  # one zygote, one connection; none after we gave up
            else:
                connected.set_result((reader, writer))

        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        server = await listen_unix(on_connect, socket_path)
        process: asyncio.subprocess.Process | None = None
        try:
            os.chmod(socket_path, 0o600)
            # In a PID namespace the parent is the namespace's init: 0 skips that check.
            parent = "0" if wrap is not None else str(os.getpid())
            process = await start_runtime_process(
                "ember.runtime.zygote", [str(connect_path or socket_path), parent],
                python=python, env=env, cwd=cwd, wrap=wrap,
            )
            exited = loop.create_task(process.wait())
            waits: set[asyncio.Future[Any]] = {connected, exited}
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            if not connected.done():
                raise ZygoteDied(
                    f"the zygote did not connect within {timeout_s:g} s"
                    if process.returncode is None
                    else f"the zygote exited with status {process.returncode} before connecting"
                )
            reader, writer = connected.result()
            hello = await asyncio.wait_for(read_frame_async(reader), timeout_s)
            if hello is None or hello["t"] != protocol.HELLO:
                writer.close()
                raise ZygoteDied("the zygote closed its connection before saying hello")
        except BaseException:
            # Cancelled (a closing launcher) or failed after the zygote connected: its
            # connection is ours to close, or its socket outlives us.
            accepting = False
            if connected.done():
                connected.result()[1].close()
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
            raise
        finally:
            accepting = False
            server.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
        return cls(process, reader, writer, namespaced=wrap is not None)

    @property
    def children(self) -> int:
        """How many of its children are alive (their exits not reported yet)."""
        return len(self._exits)

    @property
    def spawning(self) -> int:
        """How many forks were asked of it and not answered yet: a zygote with one in
        flight is not idle, though it has no child yet."""
        return len(self._spawns)

    def kill_child(self, pid: int) -> None:
        """Ask the zygote to SIGKILL its child ``pid`` (a pid of its namespace)."""
        if self._dead:
            return
        with contextlib.suppress(ConnectionError, OSError):
            write_frame_async(self._writer, {"t": protocol.KILL, "pid": pid})

    async def spawn(self, instance_id: str, connect_path: str, timeout_s: float = 10.0,
                    confine: dict[str, int] | None = None, *,
                    preload: bool = False) -> ZygoteChild:
        """Fork an instance that will connect to ``connect_path`` and say hello as
        ``instance_id``; ``confine``: the child's ``Confinement`` (as a message);
        ``preload``: the child becomes the version's preloader instead of an instance.

        Raises:
            ZygoteDied: the zygote is gone (start a new one and retry).
            OSError: the zygote could not fork.
        """
        if self._dead:
            raise ZygoteDied("the zygote is not running")
        request = next(self._requests)
        future: asyncio.Future[ZygoteChild] = asyncio.get_running_loop().create_future()
        self._spawns[request] = future
        try:
            message: Message = {"t": protocol.SPAWN, "req": request, "id": instance_id,
                                "connect": connect_path}
            if confine is not None:
                message["confine"] = confine
            if preload:
                message["preload"] = True
            write_frame_async(self._writer, message)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self._spawns.pop(request, None)
            raise ZygoteDied(f"the zygote connection is broken: {exc}") from exc
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._spawns.pop(request, None)

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await read_frame_async(self._reader)
                if message is None:
                    break
                self._dispatch(message, loop)
        except (ConnectionError, OSError, protocol.ProtocolError) as exc:
            logger.warning("zygote %s: connection lost: %s", self.pid, exc)
        finally:
            self._dead = True
            for spawn in self._spawns.values():
                if not spawn.done():
                    spawn.set_exception(ZygoteDied("the zygote exited during a spawn"))
            # Its children die with it (PDEATHSIG) and nobody is left to report how.
            for exit_future in self._exits.values():
                if not exit_future.done():
                    exit_future.set_result(_ZYGOTE_EXITED)
            self._exits.clear()

    def _dispatch(self, message: Message, loop: asyncio.AbstractEventLoop) -> None:
        kind = message["t"]
        if kind == protocol.SPAWNED:
            pid = int(message["pid"])
            # A pid is only reused after its exit was reported (reaping comes first in the
            # zygote's single thread), so a fresh future never meets a stale exit.
            exited: asyncio.Future[ExitStatus] = loop.create_future()
            self._exits[pid] = exited
            spawn = self._spawns.get(int(message["req"]))
            if spawn is not None and not spawn.done():
                spawn.set_result(ZygoteChild(pid, exited, self))
            elif self.namespaced:
                self.kill_child(pid)
            else:  # its caller gave up: nobody will use this child
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        elif kind == protocol.SPAWN_ERROR:
            spawn = self._spawns.get(int(message["req"]))
            if spawn is not None and not spawn.done():
                spawn.set_exception(OSError(f"the zygote cannot fork: {message.get('error')}"))
        elif kind == protocol.EXITED:
            exit_future = self._exits.pop(int(message["pid"]), None)
            if exit_future is not None and not exit_future.done():
                exit_future.set_result(
                    ExitStatus(code=message.get("status"), signal=message.get("signal"))
                )

    async def close(self, timeout_s: float = 2.0) -> None:
        """Close the control connection (the zygote exits, its children with it); kill it
        if it lingers."""
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
        try:
            await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        await self._read_task
