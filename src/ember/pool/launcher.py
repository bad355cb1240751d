"""Cold starts: make a new instance process, sandbox it, and bring it to ``ready``.

A launch, in order:

1. a sandbox (cgroup or rlimits) is made for the new instance id;
2. the process is forked by the zygote, or a fresh interpreter is started
   (``python -P -m ember.runtime.main``) when the zygote is off or keeps dying;
3. the process connects to the launcher's Unix socket and says hello with its id (its pid
   is read from the connection, ``SO_PEERCRED``);
4. the sandbox takes the pid — the process waits for ``init`` meanwhile, so no user code
   ever runs outside its limits;
5. ``init`` is sent; the instance imports the handler and runs the initializer, within
   ``initializer_timeout_s`` for both, and answers ``ready``.

Isolation (``ember.sandbox.bubblewrap``, when on): the spec is known before the process
exists. Each function version has a zygote of its own, started inside its bubblewrap
sandbox (``View``: the version's code and layers, its network), and its instances are
forked from it; each child takes its own mounts (``/tmp``) when forked and its own user id
(``Confinement``) on ``init``. A version's zygote is started when the version is deployed
(``prewarm``), so its first cold start does not wait for it; the spare is one prepared for
the version deployed or launched last.

Dependencies (``ember.pool.preload``): a version whose dependency directories hold
installed distributions gets, as root with bubblewrap, a preloader — a child of its zygote
that takes a ``/tmp`` and a user id of the version's, enters a cgroup with the version's
memory limit, drops every capability, and only then imports the distributions' top-level
modules. Its instances are forked from it, imports done, and share its user id and
``/tmp``; it is started with the zygote (``prewarm``) or at the first cold start, and
closed once no instance forked from it has lived for ``preload_idle_s``. Where it cannot
be (no bubblewrap as root, no installed distribution, an import that hangs or kills it),
instances are forked from the zygote as before, and the server log says why.

Instances inherit only a small part of the server's environment (``INHERITED_ENVIRONMENT``)
plus the function's own variables: the server's secrets (database URL and such) never
reach user code. The secrets a function lists are decrypted at each launch, sent in
``init`` and masked in that instance's log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ember.errors import EmberError, InitError, InstanceCrashed, ServiceUnavailable
from ember.model.key import RoleGrant
from ember.pool.instance import Instance, InstanceSpec, LogSink
from ember.pool.preload import (
    PRELOAD_IDLE_S,
    PRELOAD_TIMEOUT_S,
    PreloadPlan,
    ZygoteInfo,
    memory_of,
    preload_modules,
)
from ember.pool.zygote import (
    ProcessHandle,
    SubprocessHandle,
    Zygote,
    ZygoteChild,
    ZygoteDied,
    listen_unix,
    start_runtime_process,
)
from ember.runtime import protocol
from ember.runtime.protocol import (
    PRELOADED,
    PRELOADING,
    read_frame_async,
    write_frame_async,
)
from ember.runtime.spec import Confinement
from ember.sandbox import Limits, Sandbox, SandboxFactory, choose_sandbox_factory
from ember.sandbox.bubblewrap import (
    CODE_MOUNT,
    FIRST_INSTANCE_UID,
    INSTANCE_UIDS,
    SECRETS_DIR,
    SOCKETS_DIR,
    Bubblewrap,
    IsolationUnavailable,
    View,
    choose_isolation,
)
from ember.sandbox.freezer import process_tree
from ember.secrets.masking import Masker, masked

logger = logging.getLogger(__name__)

INHERITED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "HOME")

# AF_UNIX paths are limited to 108 bytes; past this the sockets go to a short temp dir.
_MAX_SOCKET_PATH = 100
_HELLO_TIMEOUT_S = 5.0
# Cold starts failing in a row before any user code ran (no sandbox, no process, no
# connection) after which the launcher reports that instances cannot start.
FAILED_STARTS_UNHEALTHY = 3

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# The limit a spare waits under until a function takes it and sets its own: the largest a
# function may have, so that taking a spare only ever lowers it (lowering a hard rlimit
# needs no privilege).
_SPARE_MEMORY_MB = 16384
# Sandboxed zygotes kept (one per function version); past this, idle ones are closed.
MAX_VERSION_ZYGOTES = 8
# Where a version's sandbox sees its own directory of sockets: the preloader's instances,
# which hold its user id from birth, connect to a socket of that user's there.
VERSION_SOCKETS = SOCKETS_DIR / "version"


class Identities(Protocol):
    """Gives instances of functions with a ``role`` a token (``ember.auth.tokens``)."""

    def issue(self, instance_id: str, function: str, grant: RoleGrant) -> dict[str, str]:
        """The variables (``EMBER_TOKEN``, ``EMBER_URL``) of the instance's identity."""
        ...

    def revoke(self, instance_id: str) -> None:
        """The instance is gone: its token is no longer valid."""
        ...


class SecretValues(Protocol):
    """What the launcher needs of secrets (``SecretService``)."""

    def reveal(self, names: Sequence[str]) -> dict[str, str]:
        """The decrypted values of ``names`` (blocking). Raises SecretNotFound, and
        ServiceUnavailable when the master key cannot decrypt one."""
        ...


class _Vanished(EmberError):
    """A started process exited before it was put in its sandbox: nothing of the
    function ran yet, so the start is tried once more."""


class PreloadFailed(Exception):
    """A version's preloader could not start or import (the message says why)."""


@dataclass
class _Preloader:
    """A version's preloader: its process, the zygote conversation held with it, its
    sandbox, and the socket its instances connect to."""

    id: str
    view: View
    plan: PreloadPlan
    zygote: Zygote
    process: ZygoteChild
    sandbox: Sandbox
    server: asyncio.Server
    socket_path: Path
    info: ZygoteInfo
    last_used: float = 0.0
    spawning: int = 0  # forks asked of it and not answered yet
    idle: asyncio.TimerHandle | None = None


@dataclass
class _Prepared:
    """A runtime process connected and sandboxed, not yet told which function it serves."""

    instance_id: str
    process: ProcessHandle
    sandbox: Sandbox
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    view: View | None = None
    confinement: Confinement | None = None
    plan: PreloadPlan | None = None  # the preloader it was asked of (see ``_preloader``)


class Launcher:
    """Starts instances (cold starts) and owns their processes, zygote and sockets.

    Args:
        work_dir: where the Unix socket lives (a short temp dir is used instead when the
            path would be too long for AF_UNIX).
        use_zygote: fork instances from a zygote (fast) instead of fresh interpreters.
        log_sink: receives every log line of every instance (see ``LogSink``).
        use_cgroups: ``True`` requires cgroups, ``False`` uses rlimits, ``None`` picks
            cgroups when they work and warns once otherwise.
        python: the interpreter for the zygote and fresh instances; it must import ember.
        spawn_timeout_s: how long a new process may take to connect.
        environment: the server environment the instances' variables are taken from
            (only ``INHERITED_ENVIRONMENT``); defaults to ``os.environ``.
        spares: how many processes to keep prepared (connected and sandboxed, waiting for
            a function) so that a cold start skips those steps; 0 or 1.
        secret_values: where the values of the secrets a function lists are read from;
            without it, a spec that lists secrets cannot be launched.
        isolation: ``bubblewrap`` (required), ``process`` (limits only) or ``auto``
            (bubblewrap where it works; see ``choose_isolation``).
        private: directories instances must never see (the server's home); only used
            with isolation.
        preload: fork the instances of a version with built dependencies from a preloader
            that has imported them (bubblewrap as root only; see ``ember.pool.preload``).
        preload_idle_s: how long a preloader with no instance alive is kept.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        use_zygote: bool = True,
        log_sink: LogSink,
        use_cgroups: bool | None = None,
        python: str = sys.executable,
        spawn_timeout_s: float = 10.0,
        environment: Mapping[str, str] | None = None,
        spares: int = 1,
        secret_values: SecretValues | None = None,
        identities: Identities | None = None,
        isolation: str = "process",
        private: Sequence[Path] = (),
        preload: bool = True,
        preload_idle_s: float = PRELOAD_IDLE_S,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.isolation_mode = isolation
        self.private = tuple(private)
        self.isolation: Bubblewrap | None = None
        self._view_zygotes: dict[View, Zygote] = {}
        self._view_locks: dict[View, asyncio.Lock] = {}
        self._view_dirs: dict[View, Path] = {}
        self.preload = preload
        self.preload_idle_s = preload_idle_s
        self._modules: dict[View, tuple[str, ...]] = {}
        self._plans: dict[View, PreloadPlan | None] = {}
        self._preloaders: dict[View, _Preloader] = {}
        self._retired: list[_Preloader] = []
        self._watchers: set[asyncio.Task[Any]] = set()  # exits of preloaded instances
        self._prewarms: set[asyncio.Task[None]] = set()
        self._starting: set[ZygoteChild] = set()  # preloaders not ready yet
        self._preload_locks: dict[View, asyncio.Lock] = {}
        self._preload_off: dict[View, str] = {}
        self._preload_unsupported_said = False
        self._zygote_serial = 0
        self._uids_in_use: dict[str, int] = {}
        # Where this server starts in the range: two servers on one host rarely share one.
        self._next_uid = secrets.randbelow(INSTANCE_UIDS)
        self._secret_values = secret_values
        self._identities = identities
        self.use_zygote = use_zygote
        self.log_sink = log_sink
        self.use_cgroups = use_cgroups
        self.python = python
        self.spawn_timeout_s = spawn_timeout_s
        source = os.environ if environment is None else environment
        self.instance_environment = {k: source[k] for k in INHERITED_ENVIRONMENT if k in source}
        # The interpreter itself may need PYTHONPATH to find ember; user code gets the
        # function's environment once the runtime has loaded.
        self.process_environment = dict(self.instance_environment)
        if "PYTHONPATH" in source:
            self.process_environment["PYTHONPATH"] = source["PYTHONPATH"]
        # Two malloc arenas instead of 8 per core: less address space per instance, which
        # matters under RLIMIT_AS and costs nothing to a process serving one request at a time.
        self.process_environment.setdefault("MALLOC_ARENA_MAX", "2")
        self.zygote: Zygote | None = None
        self.zygote_starts = 0
        self.sandboxes: SandboxFactory | None = None
        self._instances: dict[str, Instance] = {}
        self._hellos: dict[str, asyncio.Future[tuple[int, Stream]]] = {}
        self._server: asyncio.Server | None = None
        self._socket_dir: Path | None = None
        self._temp_dir: Path | None = None
        self._zygote_lock = asyncio.Lock()
        self._closed = False
        self.spares = spares
        self._spare: _Prepared | None = None
        self._spare_for: tuple[View | None, int, PreloadPlan | None] = (None, 512, None)
        self._refilling: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._unclaimed: set[asyncio.StreamWriter] = set()
        self._socket_id: tuple[int, int] | None = None
        self._failed_starts = 0
        self._last_start_error = ""

    @property
    def instances(self) -> list[Instance]:
        """The instances launched and not gone yet."""
        return list(self._instances.values())

    @property
    def socket_path(self) -> Path:
        assert self._socket_dir is not None, "Launcher.start() was not called"
        return self._socket_dir / "instances.sock"

    async def start(self) -> None:
        """Pick the sandbox, listen for instances and start the zygote (if used).

        Raises:
            CgroupUnavailable: ``use_cgroups=True`` and cgroups cannot be used here.
            ZygoteDied: the zygote did not start.
        """
        if self._server is not None:
            raise RuntimeError("the launcher is already started")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._socket_dir = self.work_dir
        if len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="ember-"))
            self._socket_dir = self._temp_dir
        self.choose_sandbox()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await listen_unix(self._on_connect, self.socket_path)
        os.chmod(self.socket_path, 0o600)
        bound = os.stat(self.socket_path)
        self._socket_id = (bound.st_dev, bound.st_ino)
        if self.use_zygote:
            await self._ensure_zygote()
        self._refill_spares()

    def choose_sandbox(self) -> list[str]:
        """Pick the isolation and the limits of instances (once; ``start`` does it too) and
        say what they are: lines for the operator, each also logged.

        Raises:
            CgroupUnavailable: ``use_cgroups=True`` and cgroups cannot be used here.
            ServiceUnavailable: ``isolation="bubblewrap"`` and it cannot be used here.
        """
        if self.sandboxes is None:
            try:
                isolation = choose_isolation(self.isolation_mode, private=self.private)
            except IsolationUnavailable as exc:
                raise ServiceUnavailable(
                    f"the bubblewrap sandbox is required (EMBER_SANDBOX=bubblewrap) and "
                    f"cannot be used: {exc}"
                ) from exc
            self.sandboxes = choose_sandbox_factory(self.use_cgroups)
            self.isolation = isolation
            if self.isolation is not None:
                # Inside the sandbox the host's TMPDIR and HOME do not exist.
                self.instance_environment.update(TMPDIR="/tmp", HOME="/tmp")
            for line in self.sandbox_summary():
                logger.info("%s", line)
        return self.sandbox_summary()

    def sandbox_summary(self) -> list[str]:
        """What isolates instances and what bounds them, in words."""
        limits = getattr(self.sandboxes, "enforced", None) or "memory, open files"
        limiter = self.sandboxes.name if self.sandboxes is not None else "none"
        if self.isolation is not None:
            sandbox = f"instance sandbox: {self.isolation.describe()}"
        else:
            sandbox = ("instance sandbox: process — NO isolation: function code can read and "
                       "do what the server's user can (EMBER_SANDBOX, or install bubblewrap)")
        return [sandbox, f"instance limits ({limiter}): {limits}"]

    def problem(self) -> str | None:
        """Why instances cannot start now, or None: the launcher is closed, its socket was
        removed or replaced (instances could not connect), or the last
        ``FAILED_STARTS_UNHEALTHY`` starts failed before any user code ran."""
        if self._closed or self._socket_id is None:
            return "the launcher is not running"
        try:
            found = os.stat(self.socket_path)
        except OSError:
            return (f"the instance socket {self.socket_path} is gone (removed by another "
                    "process?): no instance can connect; restart the server")
        if (found.st_dev, found.st_ino) != self._socket_id:
            return (f"the instance socket {self.socket_path} was replaced by another "
                    "process: no instance can connect; restart the server")
        if self._failed_starts >= FAILED_STARTS_UNHEALTHY:
            return (f"the last {self._failed_starts} instance starts failed before any "
                    f"function code ran: {self._last_start_error}")
        return None

    async def launch(
        self,
        spec: InstanceSpec,
        *,
        request_id: str | None = None,
        log_sink: LogSink | None = None,
    ) -> Instance:
        """Cold-start an instance of ``spec``; returns it idle, after ``ready``.

        Args:
            spec: the function version to serve.
            request_id: the request that caused the cold start; the initializer's log lines
                are tagged with it.
            log_sink: this instance's log sink instead of the launcher's.

        Raises:
            InitError: the import or the initializer failed, or ran past
                ``initializer_timeout_s`` (details: type, message, traceback).
            InstanceCrashed: the process died or did not connect before initializing.
            ServiceUnavailable: the launcher was closed meanwhile.
            EmberError: the sandbox could not be set up.
        """
        if self._closed or self.sandboxes is None:
            raise RuntimeError("the launcher is not running")
        started = time.perf_counter()
        # Read now, not when the spec was made: a secret set again reaches the next instance.
        secret_env = await self._reveal(spec)
        view = self._view(spec)
        plan = self._plan(spec, view) if view is not None else None
        prepared = self._take_spare(_init_limits(spec), view, spec.tmp_mb, plan)
        if prepared is not None:
            try:
                instance = await self._initialize(prepared, spec, request_id, log_sink,
                                                  secret_env)
            except InitError as err:
                # A spare can die unnoticed while it waits (its zygote was killed and the
                # end of its connection is still in flight): start over without one.
                if err.details.get("type") != "InstanceCrashed":
                    raise
                logger.info("a spare instance was gone before its init: %s", err.message)
                prepared = None
        if prepared is None:
            try:
                prepared = await self._prepare(_init_limits(spec), view, spec.tmp_mb, plan)
            except _Vanished as exc:
                # Gone before any code of the function ran (its zygote closed under it,
                # or the kernel killed it): a start of the platform's, tried once more.
                logger.info("%s: starting another", exc.message)
                prepared = await self._prepare(_init_limits(spec), view, spec.tmp_mb, plan)
            instance = await self._initialize(prepared, spec, request_id, log_sink,
                                              secret_env)
        instance.start_ms = (time.perf_counter() - started) * 1000
        return instance

    def prewarm(self, spec: InstanceSpec) -> None:
        """Start the sandboxed zygote of ``spec``'s version, and a spare of it, in the
        background: a version's first cold start would otherwise wait for its sandbox
        and interpreter to start (about 100 ms). Nothing to do without isolation."""
        if self.isolation is None or self._closed or not self.use_zygote:
            return
        view = self._view(spec)
        if view is None or view in self._view_zygotes:
            return
        plan = self._plan(spec, view)
        task = asyncio.get_running_loop().create_task(self._prewarm(view, spec.tmp_mb, plan))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        self._prewarms.add(task)
        task.add_done_callback(self._prewarms.discard)

    async def _prewarm(self, view: View, tmp_mb: int, plan: PreloadPlan | None) -> None:
        try:
            await self._view_zygote(view)
        except Exception as exc:  # the first cold start will try again, and say why
            logger.info("could not prepare the sandbox of %s:%s: %s", view.function,
                        view.version, exc)
            return
        await self._preloader(view, plan)  # never raises: without one, instances import
        # The version just deployed is the likeliest next cold start: the spare is its.
        self._spare_for = (view, tmp_mb, plan)
        spare = self._spare
        if spare is not None and (spare.view, _tmp_of(spare, tmp_mb), spare.plan) != (
                view, tmp_mb, plan):
            self._spare = None
            self._discard(spare)
        self._refill_spares()

    def _view(self, spec: InstanceSpec) -> View | None:
        if self.isolation is None:
            return None
        directories = (Path(spec.code_dir), *spec.layer_dirs)
        identity = []
        for directory in directories:
            try:
                found = os.stat(directory)
            except OSError:
                continue  # the instance will say what is missing
            identity.append((found.st_dev, found.st_ino))
        return View(spec.function, spec.version, directories[0], tuple(directories[1:]),
                    spec.network, tuple(identity))

    def _confinement(self, instance_id: str, tmp_mb: int) -> Confinement | None:
        """A user id of its own for the instance (root only: see ``confine``)."""
        if self.isolation is None or not self.isolation.privileged:
            return None
        used = set(self._uids_in_use.values())
        for _ in range(INSTANCE_UIDS):
            uid = FIRST_INSTANCE_UID + self._next_uid
            self._next_uid = (self._next_uid + 1) % INSTANCE_UIDS
            if uid not in used:
                self._uids_in_use[instance_id] = uid
                return Confinement(uid=uid, tmp_mb=tmp_mb)
        raise ServiceUnavailable("every instance user id is in use")

    async def _reveal(self, spec: InstanceSpec) -> dict[str, str]:
        names = (*spec.secrets, *spec.secret_files)
        if not names:
            return {}
        if self._secret_values is None:
            raise ServiceUnavailable(
                f"{spec.function} lists secrets, and this server has no secret store",
                {"function": spec.function},
            )
        return await asyncio.to_thread(self._secret_values.reveal, names)

    def _secrets_dir(self, prepared: _Prepared, spec: InstanceSpec) -> str | None:
        """Where the instance writes the secrets it is given as files: its private
        ``/run/secrets`` in the sandbox; else a directory of the server's, readable by
        the server's user only, removed with the instance."""
        if not spec.secret_files:
            return None
        if prepared.view is not None:
            return SECRETS_DIR
        directory = self.work_dir / "secrets" / prepared.instance_id
        directory.parent.mkdir(mode=0o700, exist_ok=True)
        directory.mkdir(mode=0o700)
        return str(directory)

    async def _initialize(
        self, prepared: _Prepared, spec: InstanceSpec, request_id: str | None,
        log_sink: LogSink | None, secret_env: dict[str, str],
    ) -> Instance:
        identity: dict[str, str] = {}
        if spec.role is not None and self._identities is not None:
            identity = self._identities.issue(prepared.instance_id, spec.function, spec.role)
        hidden = [*secret_env.values(), *([identity["EMBER_TOKEN"]] if identity else [])]
        as_files = {name: secret_env.pop(name) for name in spec.secret_files}
        secrets_dir = self._secrets_dir(prepared, spec)
        # Every line the instance writes passes the mask before any sink sees it.
        sink = masked(log_sink or self.log_sink, hidden)
        if prepared.view is not None:  # the paths the instance sees in its sandbox
            mounts = [inside for _, inside in prepared.view.mounts()]
            spec = dataclasses.replace(spec, code_dir=mounts[0], layer_dirs=tuple(mounts[1:]))
        instance = Instance(prepared.instance_id, spec, prepared.process, prepared.sandbox,
                            prepared.reader, prepared.writer, sink, on_gone=self._forget,
                            mask=Masker(hidden))
        self._instances[prepared.instance_id] = instance
        try:
            await instance.initialize(
                spec.to_runtime(self.instance_environment, {**secret_env, **identity},
                                as_files, secrets_dir),
                spec.init_timeout_s, request_id,
            )
            # The CPU share applies once the code is loaded: imports and the initializer
            # run at full speed (as AWS Lambda's init), the invocations at the share.
            prepared.sandbox.set_limits(spec.limits())
        except OSError as exc:
            instance.kill()
            self._revoke(prepared.instance_id)
            raise EmberError(f"cannot set the limits of instance {prepared.instance_id}: "
                             f"{exc}") from exc
        except BaseException:
            self._revoke(prepared.instance_id)
            raise
        return instance

    def _revoke(self, instance_id: str) -> None:
        if self._identities is not None:
            self._identities.revoke(instance_id)

    async def _prepare(self, limits: Limits, view: View | None = None, tmp_mb: int = 512,
                       plan: PreloadPlan | None = None) -> _Prepared:
        """Steps 1-4: a process of the runtime, connected and inside its sandbox, waiting
        for ``init``; ``view``: what it may see (with isolation); ``plan``: the preloader
        to fork it from, where there is one."""
        assert self.sandboxes is not None
        instance_id = secrets.token_hex(8)
        try:
            confinement = self._confinement(instance_id, tmp_mb)
        except ServiceUnavailable:
            self._failed_starts += 1
            raise
        try:
            sandbox = self.sandboxes.create(instance_id, limits)
        except OSError as exc:
            self._failed_starts += 1
            self._last_start_error = f"cannot create the sandbox of an instance: {exc}"
            raise EmberError(self._last_start_error) from exc
        process: ProcessHandle | None = None
        try:
            hello: asyncio.Future[tuple[int, Stream]] = asyncio.get_running_loop().create_future()
            self._hellos[instance_id] = hello
            try:
                process = await self._spawn(instance_id, view, confinement, plan)
                pid, (reader, writer) = await self._await_hello(instance_id, hello, process,
                                                                sandboxed=view is not None)
            finally:
                self._hellos.pop(instance_id, None)
                if hello.done() and not hello.cancelled():
                    self._unclaimed.discard(hello.result()[1][1])
            if self._closed:
                writer.close()
                raise ServiceUnavailable("the launcher closed during a cold start")
            try:
                # In a thread: moving a process into a cgroup waits for an RCU grace period
                # (~15 ms), which would stall every request the loop serves meanwhile.
                await asyncio.to_thread(sandbox.attach, pid)
            except ProcessLookupError as exc:
                writer.close()
                raise _Vanished(
                    f"instance {instance_id} exited before it was put in its sandbox"
                ) from exc
            except OSError as exc:
                writer.close()
                raise EmberError(
                    f"cannot put instance {instance_id} in its sandbox: {exc}"
                ) from exc
        except BaseException as exc:
            if hello.done() and not hello.cancelled():
                hello.result()[1][1].close()  # connected, then given up on
            if process is not None:
                process.kill()
                await process.wait()
            _close_sandbox(sandbox)
            self._uids_in_use.pop(instance_id, None)
            if isinstance(exc, Exception) and not isinstance(exc, ServiceUnavailable):
                self._failed_starts += 1
                self._last_start_error = str(exc)
            raise
        self._failed_starts = 0
        return _Prepared(instance_id, process, sandbox, reader, writer, view, confinement,
                         plan)

    # -- spares --------------------------------------------------------------------------
    # Moving a process into a cgroup waits for the kernel's RCU grace period (about 15 ms
    # here), three times the rest of a cold start. A spare is a process prepared ahead,
    # off the request path: a cold start takes it, sets its limits and sends ``init``.

    def _take_spare(self, limits: Limits, view: View | None = None, tmp_mb: int = 512,
                    plan: PreloadPlan | None = None) -> _Prepared | None:
        spare, self._spare = self._spare, None
        self._spare_for = (view, tmp_mb, plan)
        self._refill_spares()
        if spare is None:
            return None
        if spare.view != view or _tmp_of(spare, tmp_mb) != tmp_mb or spare.plan != plan:
            self._discard(spare)  # prepared for another version
            return None
        if spare.reader.at_eof() or spare.writer.is_closing():
            self._discard(spare)
            return None
        try:
            spare.sandbox.set_limits(limits)
        except OSError as exc:
            logger.warning("cannot set the limits of a spare instance: %s", exc)
            self._discard(spare)
            return None
        return spare

    def _refill_spares(self) -> None:
        if self.spares < 1 or self._closed or self._spare is not None:
            return
        if self._refilling is not None and not self._refilling.done():
            return
        self._refilling = asyncio.get_running_loop().create_task(self._refill())

    async def _refill(self) -> None:
        view, tmp_mb, plan = self._spare_for
        if self.isolation is not None and view is None:
            return  # with isolation a spare is of one version: none launched yet
        try:
            spare = await self._prepare(Limits(memory_mb=_SPARE_MEMORY_MB), view, tmp_mb,
                                        plan)
        except Exception as exc:
            logger.warning("could not prepare a spare instance: %s", exc)
            return
        if self._closed or self._spare is not None:
            self._discard(spare)
        else:
            self._spare = spare

    def _discard(self, prepared: _Prepared) -> None:
        self._uids_in_use.pop(prepared.instance_id, None)
        prepared.writer.close()
        prepared.process.kill()
        task = asyncio.get_running_loop().create_task(prepared.process.wait())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: _close_sandbox(prepared.sandbox))

    async def close(self) -> None:
        """Kill every instance and the zygote, and release sockets and cgroups."""
        self._closed = True
        # A preloader importing meanwhile may take up to its time bound: not worth waiting.
        for prewarm in list(self._prewarms):
            prewarm.cancel()
        for starting in list(self._starting):
            starting.kill()
        if self._refilling is not None:
            self._refilling.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refilling
        if self._spare is not None:
            spare, self._spare = self._spare, None
            spare.writer.close()
            spare.process.kill()
            await spare.process.wait()
            _close_sandbox(spare.sandbox)
        await asyncio.gather(*self._background, return_exceptions=True)
        unclaimed, self._unclaimed = list(self._unclaimed), set()
        for writer in unclaimed:
            writer.close()
        if unclaimed:
            await asyncio.wait(
                [asyncio.ensure_future(w.wait_closed()) for w in unclaimed], timeout=2.0
            )
        instances = list(self._instances.values())
        for instance in instances:
            instance.kill()
        await asyncio.gather(*(i.wait_gone() for i in instances), return_exceptions=True)
        if self.zygote is not None:
            await self.zygote.close()
        await asyncio.gather(*(self._close(p) for p in [*self._preloaders.values(),
                                                         *self._retired]),
                             return_exceptions=True)
        for watcher in list(self._watchers):
            watcher.cancel()
        zygotes, self._view_zygotes = list(self._view_zygotes.values()), {}
        await asyncio.gather(*(z.close() for z in zygotes), return_exceptions=True)
        if self._server is not None:
            self._server.close()
            # Since Python 3.12 this also waits for open connections; a stranger that never
            # said hello must not hold the shutdown.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        # Connections accepted while closing (a process forked just before its zygote
        # went): nobody will claim them now.
        late, self._unclaimed = list(self._unclaimed), set()
        for writer in late:
            writer.close()
        if self.sandboxes is not None:
            self.sandboxes.close()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    # -- processes -----------------------------------------------------------------------

    async def _ensure_zygote(self) -> Zygote:
        async with self._zygote_lock:
            if self.zygote is None or not self.zygote.alive:
                if self.zygote is not None:
                    logger.warning("the zygote (pid %s) exited; starting a new one",
                                   self.zygote.pid)
                    await self.zygote.close()
                    self.zygote = None
                self.zygote = await Zygote.start(
                    self.socket_path.with_name("zygote.sock"),
                    python=self.python, env=self.process_environment, cwd=self.work_dir,
                    timeout_s=self.spawn_timeout_s,
                )
                self.zygote_starts += 1
            return self.zygote

    async def _view_zygote(self, view: View) -> Zygote:
        """The zygote of ``view``'s sandbox, started if needed; idle zygotes of other
        versions are closed past ``MAX_VERSION_ZYGOTES``."""
        assert self.isolation is not None
        lock = self._view_locks.setdefault(view, asyncio.Lock())
        async with lock:
            zygote = self._view_zygotes.get(view)
            if zygote is not None and zygote.alive:
                self._view_zygotes[view] = self._view_zygotes.pop(view)  # most recent last
                return zygote
            if zygote is not None:
                logger.warning("the zygote of %s:%s (pid %s) exited; starting a new one",
                               view.function, view.version, zygote.pid)
                self._view_zygotes.pop(view, None)
                await zygote.close()
            await self._evict_zygotes()
            self._zygote_serial += 1
            socket_path = self.socket_path.with_name(f"zygote-{self._zygote_serial}.sock")
            isolation = self.isolation
            binds = [(self.socket_path, SOCKETS_DIR / "instances.sock"),
                     (socket_path, SOCKETS_DIR / "zygote.sock")]
            # The version's own sockets (its preloader's instances connect there).
            directory = self._view_dirs.get(view)
            if directory is None:
                directory = self.socket_path.with_name(f"v{self._zygote_serial}")
                directory.mkdir(mode=0o755, exist_ok=True)
                os.chmod(directory, 0o755)
                self._view_dirs[view] = directory
            binds.append((directory, VERSION_SOCKETS))
            zygote = await Zygote.start(
                socket_path, python=self.python, env=self.process_environment,
                cwd=self.work_dir, timeout_s=self.spawn_timeout_s,
                wrap=lambda argv: isolation.command(argv, view, binds=binds),
                connect_path=SOCKETS_DIR / "zygote.sock",
            )
            self.zygote_starts += 1
            self._view_zygotes[view] = zygote
            return zygote

    async def _evict_zygotes(self) -> None:
        while len(self._view_zygotes) >= MAX_VERSION_ZYGOTES:
            idle = next((v for v, z in self._view_zygotes.items()
                         if (z.children == 0 and not z.spawning) or not z.alive), None)
            if idle is None:
                return  # every one serves instances: keep them
            await self._close_preloader(idle)
            await self._view_zygotes.pop(idle).close()
            self._view_locks.pop(idle, None)
            self._forget_view(idle)

    async def _spawn(self, instance_id: str, view: View | None = None,
                     confinement: Confinement | None = None,
                     plan: PreloadPlan | None = None) -> ProcessHandle:
        if self._closed:  # never restart a zygote for a launch that raced close()
            raise ServiceUnavailable("the launcher is closed")
        if view is not None:
            return await self._spawn_isolated(instance_id, view, confinement, plan)
        if self.use_zygote:
            reason: Exception | None = None
            for _ in range(2):  # a zygote that died is replaced once per spawn
                try:
                    zygote = await self._ensure_zygote()
                    return await zygote.spawn(instance_id, str(self.socket_path),
                                              self.spawn_timeout_s)
                except (ZygoteDied, OSError) as exc:
                    reason = exc
            logger.warning("the zygote keeps failing (%s): starting a fresh interpreter", reason)
        process = await start_runtime_process(
            "ember.runtime.main",
            [str(self.socket_path), instance_id, str(os.getpid())],
            python=self.python, env=self.process_environment, cwd=self.work_dir,
        )
        return SubprocessHandle(process)

    async def _spawn_isolated(self, instance_id: str, view: View,
                              confinement: Confinement | None,
                              plan: PreloadPlan | None = None) -> ProcessHandle:
        confine = confinement.to_message() if confinement is not None else None
        preloader = await self._preloader(view, plan) if self.use_zygote else None
        if preloader is not None:
            preloader.spawning += 1
            try:
                child = await preloader.zygote.spawn(
                    instance_id, str(VERSION_SOCKETS / "instances.sock"), self.spawn_timeout_s
                )
            except (ZygoteDied, OSError) as exc:
                preloader.spawning -= 1
                logger.warning("the preloader of %s:%s cannot fork (%s): forking from the "
                               "zygote, whose instances import the dependencies themselves",
                               view.function, view.version, exc)
                await self._close(preloader)
            else:
                # The instance holds the preloader's user id, not one of its own.
                self._uids_in_use.pop(instance_id, None)
                preloader.spawning -= 1
                self._used(preloader)
                # Its exit (reported by the preloader) may leave the preloader idle.
                # (Not a background task: close() waits for those, and instances live on.)
                exited = asyncio.get_running_loop().create_task(child.wait())
                self._watchers.add(exited)
                exited.add_done_callback(self._watchers.discard)
                exited.add_done_callback(lambda _: self._arm_idle(preloader))
                return child
        if self.use_zygote:
            reason: Exception | None = None
            for _ in range(2):  # a zygote that died is replaced once per spawn
                try:
                    zygote = await self._view_zygote(view)
                    return await zygote.spawn(instance_id,
                                              str(SOCKETS_DIR / "instances.sock"),
                                              self.spawn_timeout_s, confine)
                except (ZygoteDied, OSError) as exc:
                    reason = exc
            logger.warning("the zygote of %s:%s keeps failing (%s): starting a fresh "
                           "interpreter", view.function, view.version, reason)
        assert self.isolation is not None
        isolation = self.isolation
        inside = SOCKETS_DIR / "instances.sock"
        args = [str(inside), instance_id, "0"]
        if confinement is not None:
            args.append(confinement.to_argument())
        process = await start_runtime_process(
            "ember.runtime.main", args, python=self.python, env=self.process_environment,
            cwd=self.work_dir,
            wrap=lambda argv: isolation.command(argv, view,
                                                binds=[(self.socket_path, inside)]),
        )
        return SubprocessHandle(process)

    async def _await_hello(
        self, instance_id: str, hello: asyncio.Future[tuple[int, Stream]], process: ProcessHandle,
        *, sandboxed: bool = False,
    ) -> tuple[int, Stream]:
        """The instance's pid (as the server sees it) and its connection, once it said
        hello. ``sandboxed``: the process runs in a PID namespace (a zygote child learns
        its real pid here; a fresh interpreter's handle is the ``bwrap`` around it)."""
        exited = asyncio.get_running_loop().create_task(process.wait())
        try:
            waits: set[asyncio.Future[Any]] = {hello, exited}
            await asyncio.wait(waits, timeout=self.spawn_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if not hello.done():
            status = exited.result().describe() if exited.done() and not exited.cancelled() \
                else f"it did not connect within {self.spawn_timeout_s:g} s"
            raise InstanceCrashed(f"instance {instance_id} failed to start: {status}",
                                  {"instance": instance_id})
        pid, stream = hello.result()
        if isinstance(process, ZygoteChild) and process.namespaced:
            process.bind_pid(pid)
        elif pid != process.pid and not sandboxed:
            stream[1].close()
            raise InstanceCrashed(f"instance {instance_id} said hello from pid {pid}, "
                                  f"not {process.pid}", {"instance": instance_id})
        return pid, stream

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A new connection: it must say hello with the id of a launch waiting for it."""
        # Until a launch takes it, the connection is ours to close (on close() too).
        self._unclaimed.add(writer)
        try:
            message = await asyncio.wait_for(read_frame_async(reader), _HELLO_TIMEOUT_S)
        except (TimeoutError, ConnectionError, OSError, protocol.ProtocolError):
            message = None
        except BaseException:
            # Cancelled before the hello (the loop is closing): nobody else will close it.
            self._unclaimed.discard(writer)
            writer.close()
            raise
        waiting = None
        if message is not None and message["t"] == protocol.HELLO:
            waiting = self._hellos.get(str(message.get("id")))
        if waiting is None or waiting.done() or message is None:
            self._unclaimed.discard(writer)
            writer.close()  # a stranger, or a launch that gave up: the instance exits
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        # The kernel's word for the pid, not the message's: in a PID namespace the
        # instance does not know its pid out here.
        waiting.set_result((_peer_pid(writer) or int(message["pid"]), (reader, writer)))

    def _forget(self, instance: Instance) -> None:
        self._instances.pop(instance.id, None)
        shutil.rmtree(self.work_dir / "secrets" / instance.id, ignore_errors=True)
        self._uids_in_use.pop(instance.id, None)
        self._revoke(instance.id)

    # -- preloaders ----------------------------------------------------------------------

    def _plan(self, spec: InstanceSpec, view: View) -> PreloadPlan | None:
        """What ``view``'s preloader imports, and under which environment and limits
        (``spec``'s), or None: nothing to preload, or preloading is impossible here (said
        once in the log). The latest plan of each view is kept for its spares."""
        modules = self._modules.get(view)
        if modules is None:
            modules = preload_modules(spec.layer_dirs) if self.preload and self.use_zygote \
                else ()
            self._modules[view] = modules
        plan = None
        if modules and (self.isolation is None or not self.isolation.privileged):
            if not self._preload_unsupported_said:
                self._preload_unsupported_said = True
                logger.info(
                    "dependency preloading is off: it needs the bubblewrap sandbox and a "
                    "server running as root (its imports run as a user id of the version's, "
                    "never with the zygote's capabilities); instances import their "
                    "dependencies themselves")
        elif modules:
            plan = PreloadPlan(
                modules=modules,
                path=tuple(str(inside) for _, inside in view.mounts()),
                env=spec.to_runtime(self.instance_environment).env,
                cwd=str(CODE_MOUNT),
                memory_mb=spec.memory_mb,
                tmp_mb=spec.tmp_mb,
                timeout_s=min(PRELOAD_TIMEOUT_S, spec.initializer_timeout_s),
            )
        self._plans[view] = plan
        return plan

    async def _preloader(self, view: View, plan: PreloadPlan | None) -> _Preloader | None:
        """``view``'s preloader of ``plan``, started if needed; None where there is none
        (nothing to preload, preloading failed for this version — said in the log, once —
        or ``plan`` is no longer the view's latest: its launch forks from the zygote).

        The environment is part of the plan, as modules read it when imported: a view's
        ``latest`` whose environment changed gets a new preloader; the old one is retired,
        closed once its instances are gone."""
        if plan is None or view in self._preload_off or self._closed:
            return None
        lock = self._preload_locks.setdefault(view, asyncio.Lock())
        async with lock:
            found = self._preloaders.get(view)
            if found is not None and found.zygote.alive and found.plan == plan:
                return found
            if plan != self._plans.get(view):
                return None  # an older plan: not worth a preloader of its own
            if found is not None:
                self._preloaders.pop(view)
                if found.zygote.alive:
                    self._retired.append(found)
                    found.last_used = 0.0  # closed as soon as nothing forked from it lives
                    self._arm_idle(found)
                else:
                    logger.warning("the preloader of %s:%s (pid %s) exited; starting a new "
                                   "one", view.function, view.version, found.info.pid)
                    await self._close(found)
            if view in self._preload_off or self._closed:
                return None
            try:
                preloader = await self._start_preloader(view, plan)
            except PreloadFailed as exc:
                self._preload_off[view] = str(exc)
                logger.warning("dependency preloading is off for %s:%s: %s; its instances "
                               "import their dependencies themselves", view.function,
                               view.version, exc)
                return None
            self._preloaders[view] = preloader
            info = preloader.info
            logger.info("preloaded %s of %s:%s in %.0f ms (pid %s, user %s, %d threads; "
                        "RSS %s, PSS %s)", ", ".join(info.modules), view.function,
                        view.version, info.import_ms, info.pid, info.uid, info.threads,
                        _mib(info.rss_bytes), _mib(info.pss_bytes))
            for name, error in info.failed.items():
                logger.warning("could not preload %s for %s:%s (%s): its instances import "
                               "it themselves", name, view.function, view.version, error)
            # A spare of this version forked before the preloader lacks its imports.
            spare = self._spare
            if spare is not None and spare.view == view:
                self._spare = None
                self._discard(spare)
                self._refill_spares()
            self._arm_idle(preloader)
            return preloader

    async def _start_preloader(self, view: View, plan: PreloadPlan) -> _Preloader:
        """Fork ``view``'s preloader from its zygote, sandbox it, have it import ``plan``'s
        modules. Raises PreloadFailed."""
        assert self.sandboxes is not None
        try:
            zygote = await self._view_zygote(view)
        except (ZygoteDied, OSError) as exc:
            raise PreloadFailed(f"the zygote did not start: {exc}") from exc
        directory = self._view_dirs[view]
        socket_path = directory / "instances.sock"
        if len(str(socket_path)) > _MAX_SOCKET_PATH + 7:
            raise PreloadFailed(f"the socket path {socket_path} is too long")
        preloader_id = "preload-" + secrets.token_hex(8)
        try:
            confinement = self._confinement(preloader_id, plan.tmp_mb)
        except ServiceUnavailable as exc:
            raise PreloadFailed(exc.message) from exc
        if confinement is None:
            raise PreloadFailed("no user id of its own can be given")
        loop = asyncio.get_running_loop()
        hello: asyncio.Future[tuple[int, Stream]] = loop.create_future()
        self._hellos[preloader_id] = hello
        server: asyncio.Server | None = None
        sandbox: Sandbox | None = None
        child: ZygoteChild | None = None
        writer: asyncio.StreamWriter | None = None
        importing: list[str] = []
        started = False
        try:
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            server = await listen_unix(self._on_connect, socket_path)
            # Only the version's user (its preloader's instances) may connect.
            os.chown(socket_path, confinement.uid, confinement.uid)
            os.chmod(socket_path, 0o600)
            sandbox = self.sandboxes.create(
                preloader_id, Limits(memory_mb=plan.memory_mb, cpu=float(os.cpu_count() or 1))
            )
            child = await zygote.spawn(preloader_id, str(SOCKETS_DIR / "instances.sock"),
                                       self.spawn_timeout_s, confinement.to_message(),
                                       preload=True)
            # From here close() kills it; before, it may have come and gone (and a
            # cancellation arriving with the answer is lost in wait_for on Python 3.11).
            self._starting.add(child)
            if self._closed:
                raise PreloadFailed("the launcher closed")
            pid, (reader, writer) = await self._await_hello(preloader_id, hello, child,
                                                            sandboxed=True)
            self._unclaimed.discard(writer)
            # Its limits hold before any dependency code runs (the imports wait for this).
            await asyncio.to_thread(sandbox.attach, pid)
            write_frame_async(writer, plan.message())
            await writer.drain()
            done = await asyncio.wait_for(_preloaded(reader, importing), plan.timeout_s)
            started = True
        except BaseException as exc:
            if child is not None:
                child.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(child.wait(), self.spawn_timeout_s)
            if sandbox is not None:
                _close_sandbox(sandbox)
            if server is not None:
                server.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            self._uids_in_use.pop(preloader_id, None)
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, TimeoutError):
                where = f" (importing {importing[-1]})" if importing else ""
                raise PreloadFailed(f"its imports took longer than {plan.timeout_s:g} s"
                                    f"{where}") from exc
            if isinstance(exc, PreloadFailed):
                raise
            where = f" while importing {importing[-1]}" if importing else ""
            raise PreloadFailed(f"the preloader failed{where}: {exc}") from exc
        finally:
            # After every wait of the failure path: the process may say hello during any
            # of them (before it dies), and from here no hello can find this start.
            self._hellos.pop(preloader_id, None)
            if hello.done() and not hello.cancelled():
                connection = hello.result()[1][1]
                self._unclaimed.discard(connection)
                if not started:
                    # Connected, then given up on: out of ``_unclaimed``, so nothing else
                    # would close it.
                    connection.close()
            if child is not None:
                self._starting.discard(child)
        info = ZygoteInfo("preloader", view.function, view.version, pid, confinement.uid,
                           tuple(done.get("modules") or ()), dict(done.get("failed") or {}),
                           float(done.get("import_ms") or 0.0), int(done.get("threads") or 1))
        if not info.modules:
            writer.close()
            child.kill()
            _close_sandbox(sandbox)
            server.close()
            self._uids_in_use.pop(preloader_id, None)
            raise PreloadFailed("no module could be imported: " + "; ".join(
                f"{name}: {error}" for name, error in info.failed.items()))
        info.rss_bytes, info.pss_bytes = memory_of(pid)
        return _Preloader(preloader_id, view, plan,
                          Zygote(child, reader, writer, namespaced=True), child, sandbox,
                          server, socket_path, info, last_used=loop.time())

    def _used(self, preloader: _Preloader) -> None:
        preloader.last_used = asyncio.get_running_loop().time()

    def _arm_idle(self, preloader: _Preloader) -> None:
        """Close ``preloader`` once no instance forked from it has lived for
        ``preload_idle_s`` (checked when it starts and when each of its instances
        exits)."""
        if self._closed:
            return
        if preloader.idle is not None:
            preloader.idle.cancel()  # armed again: its due time may have moved
        loop = asyncio.get_running_loop()
        due = max(0.0, preloader.last_used + self.preload_idle_s - loop.time())
        preloader.idle = loop.call_later(due, self._idle_check, preloader)

    def _idle(self, preloader: _Preloader) -> bool:
        kept = (self._preloaders.get(preloader.view) is preloader
                or preloader in self._retired)
        return kept and not preloader.zygote.children and not preloader.spawning

    def _idle_check(self, preloader: _Preloader) -> None:
        preloader.idle = None
        if not self._idle(preloader):
            return  # gone already, or serving: armed again when its instances go
        loop = asyncio.get_running_loop()
        if loop.time() < preloader.last_used + self.preload_idle_s:
            self._arm_idle(preloader)
            return
        task = loop.create_task(self._close_idle(preloader))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _close_idle(self, preloader: _Preloader) -> None:
        if self._idle(preloader):  # still: a fork may have been asked since the check
            logger.info("closing the idle preloader of %s:%s", preloader.view.function,
                        preloader.view.version)
            await self._close(preloader)

    async def _close_preloader(self, view: View) -> None:
        """Close ``view``'s preloaders, retired ones included (their instances die with
        them)."""
        found = [p for p in self._retired if p.view == view]
        if view in self._preloaders:
            found.append(self._preloaders[view])
        await asyncio.gather(*(self._close(p) for p in found))

    async def _close(self, preloader: _Preloader) -> None:
        """Close ``preloader`` (its instances die with it) and release what it holds."""
        if self._preloaders.get(preloader.view) is preloader:
            del self._preloaders[preloader.view]
        elif preloader in self._retired:
            self._retired.remove(preloader)
        else:
            return  # closed already
        if preloader.idle is not None:
            preloader.idle.cancel()
        # Before any wait: a new preloader of the view may take the path meanwhile.
        preloader.server.close()
        with contextlib.suppress(FileNotFoundError):
            preloader.socket_path.unlink()
        await preloader.zygote.close()
        _close_sandbox(preloader.sandbox)
        self._uids_in_use.pop(preloader.id, None)

    def _forget_view(self, view: View) -> None:
        """``view``'s zygote is gone for good: what was kept for it goes too."""
        self._plans.pop(view, None)
        self._modules.pop(view, None)
        self._preload_off.pop(view, None)
        self._preload_locks.pop(view, None)
        directory = self._view_dirs.pop(view, None)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def zygotes(self) -> list[ZygoteInfo]:
        """The sandboxed zygotes of function versions and their preloaders running now,
        with their memory read now: RSS, PSS (what each costs, the pages it shares with
        its instances divided among them) and, for a preloader, what its cgroup counts."""
        found = []
        for view, zygote in self._view_zygotes.items():
            if not zygote.alive:
                continue
            # The zygote's process is bwrap's: the interpreter runs below it.
            pid = next((p for p in process_tree(zygote.pid) if _is_zygote(p)), zygote.pid)
            info = ZygoteInfo("zygote", view.function, view.version, pid,
                              children=zygote.children)
            info.rss_bytes, info.pss_bytes = memory_of(pid)
            found.append(info)
        for preloader in [*self._preloaders.values(), *self._retired]:
            info = preloader.info
            info.rss_bytes, info.pss_bytes = memory_of(info.pid)
            info.cgroup_bytes = preloader.sandbox.memory_used()
            info.children = preloader.zygote.children
            found.append(info)
        return found


def _is_zygote(pid: int) -> bool:
    """Whether ``pid`` runs the zygote module (bwrap's own processes only name it)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return not argv[0].endswith(b"bwrap") and b"ember.runtime.zygote" in argv

async def _preloaded(reader: asyncio.StreamReader, importing: list[str]) -> dict[str, Any]:
    """Read a preloader's frames up to ``preloaded``; ``importing`` gets each module
    it says it imports. Raises ConnectionError when it ends first."""
    while True:
        message = await read_frame_async(reader)
        if message is None:
            raise ConnectionError("it exited")
        if message["t"] == PRELOADING:
            importing.append(str(message.get("module")))
        elif message["t"] == PRELOADED:
            return message


def _mib(value: int | None) -> str:
    return "?" if value is None else f"{value / 1048576:.1f} MiB"


def _close_sandbox(sandbox: Sandbox) -> None:
    try:
        sandbox.close()
    except OSError as exc:
        logger.warning("cannot release a sandbox: %s", exc)


def _peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The pid of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        struct.calcsize("3i")))
    except OSError:
        return None
    return pid or None


def _init_limits(spec: InstanceSpec) -> Limits:
    """The limits while an instance loads its code: the function's, with every core."""
    return dataclasses.replace(spec.limits(), cpu=float(os.cpu_count() or 1))


def _tmp_of(prepared: _Prepared, default: int) -> int:
    """The /tmp size ``prepared`` took (``default`` when it took none of its own)."""
    return prepared.confinement.tmp_mb if prepared.confinement is not None else default
