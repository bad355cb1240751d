"""Dependency builds: a code's ``requirements.txt`` installed by pip, for the server's Python,
into ``<root>/<key>/``, which goes on the import path of the code's instances.

A build runs ``python -m pip install --target <staging dir>`` with the server's own
interpreter and environment (so the machine's pip configuration, indexes and find-links,
keeps working), in the unpacked code directory (so the requirements may name files beside
them). Its output is recorded as it comes. Only a finished install is renamed to its key,
so a directory at a key is always complete; builds of one key run one at a time, and the
second finds the first's directory: a cache hit.

Nodes sharing a metadata database share their builds (``shared``, the database artifact
store): a finished install is zipped and stored as an artifact, recorded against its key, and
another node missing the key's directory fetches that artifact (once, checked) instead of
running pip. An install over the limits of code archives stays on its node: the others
build it themselves.

With isolation (the ``sandbox`` setting: bubblewrap), pip runs in a bubblewrap sandbox
(``Bubblewrap.build_command``), since building a source distribution runs its author's code:
it sees the system and runtime, the code and its own staging directory, pip's configuration
and the local indexes it names, a private ``/tmp`` and the network — not ``<home>``
(database, keys, other functions). A root server runs it as ``BUILD_UID``, owner of the
staging directory only for the build: the install is handed back to the server (owner,
modes 0644/0755) before it is placed. There is no pip cache: a cache shared between builds
would let one build plant what another installs.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import logging
import os
import selectors
import shlex
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from configparser import ConfigParser
from configparser import Error as ConfigError
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ember.artifacts import ArtifactLimits, ArtifactStore, open_archive, zip_directory
from ember.artifacts.filesystem import place_tree, remove_tree
from ember.clock import Clock, utcnow
from ember.control.functions import checked_name
from ember.errors import EmberError, InvalidCode, NotFound, ServiceUnavailable
from ember.model.build import (
    FAILED,
    REQUIREMENTS,
    RUNNING,
    SUCCEEDED,
    Build,
    build_failed,
    dependency_key,
    python_tag,
)
from ember.sandbox.bubblewrap import (
    BUILD_TARGET,
    BUILD_UID,
    Bubblewrap,
    IsolationUnavailable,
    choose_isolation,
)
from ember.store.builds import SqlBuildStore

log = logging.getLogger(__name__)

_BUILDS_UNSANDBOXED = (
    "BUILD SANDBOX OFF: {reason}. pip, and the build scripts of the packages it builds, run "
    "as the server's user and can read what it can read (its database and keys included)."
)

LOG_LIMIT = 256 * 1024
"""Characters of a build's log kept: the start of a longer one is dropped."""

FLUSH_S = 0.5
"""How often the log of a running build is written for pollers to read."""

_STAGING = (".build-", ".code-")
_STOPPED = "the server stopped during the build: start it again"


class BuildService:
    """Every rule of dependency builds. Thread-safe.

    Args:
        store: build rows and their logs.
        root: where dependency directories live, one per key (``<home>/deps``).
        clock: timestamps of builds.
        timeout_s: the longest pip may run (``EMBER_BUILD_TIMEOUT_S``); it is stopped then.
        limits: what a code archive given to ``start`` may weigh (those of function code).
        python: the tag builds are made for; the running interpreter's by default.
        isolation: ``bubblewrap`` (required), ``process`` (pip runs as the server) or
            ``auto`` (bubblewrap where it works), as for instances; probed at the first
            build.
        private: directories pip must never see (the server's home).
        shared: where finished installs are stored for the other nodes, and fetched from
            when this node lacks them (the database artifact store); None on one node.
    """

    def __init__(
        self, store: SqlBuildStore, root: Path, clock: Clock, *, timeout_s: float = 600.0,
        limits: ArtifactLimits | None = None, python: str | None = None,
        isolation: str = "process", private: Sequence[Path] = (),
        shared: ArtifactStore | None = None,
    ) -> None:
        self._store = store
        self._root = Path(root)
        self._clock = clock
        self._timeout_s = timeout_s
        self._limits = limits or ArtifactLimits()
        self._python = python or python_tag()
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._processes: set[subprocess.Popen[bytes]] = set()
        self._threads: set[threading.Thread] = set()
        self._closing = threading.Event()
        self._isolation = isolation
        self._private = tuple(private)
        self._sandbox: Bubblewrap | None = None
        self._probed = False
        self._probing = threading.Lock()
        self._shared = shared

    def recover(self) -> None:
        """Mark builds a stopped server left running as failed, and remove the staging
        directories it left (only those older than any build may run)."""
        horizon = self._timeout_s + 60
        now = utcnow(self._clock)
        self._store.fail_running(now - timedelta(seconds=horizon), _STOPPED, now)
        if not self._root.is_dir():
            return
        for entry in self._root.iterdir():
            with contextlib.suppress(OSError):
                old = time.time() - entry.stat().st_mtime > horizon
                if entry.name.startswith(_STAGING) and entry.is_dir() and old:
                    remove_tree(entry)

    def path(self, key: str) -> Path:
        """The dependency directory of ``key`` (which may not exist yet)."""
        return self._root / key

    # what functions use ------------------------------------------------------------------

    def ensure(self, code_dir: Path, function: str | None) -> Path | None:
        """The dependency directory of the code in ``code_dir``; built here first (blocking,
        recorded against ``function``) when missing. None when the code holds no
        requirements.txt.

        Raises:
            BuildFailed: pip failed, ran past the timeout, or the server is stopping.
        """
        requirements = _requirements(code_dir)
        if requirements is None:
            return None
        key = dependency_key(requirements, self._python)
        found = self._built(key)
        if found is not None:
            return found
        with self._lock(key):
            found = self._built(key)
            if found is not None:  # built by whoever held the lock: nothing to record
                return found
            build = self._install(self._record(function, key, requirements), code_dir)
        if build.status != SUCCEEDED:
            raise build_failed(build.id, build.error, build.log)
        return self.path(key)

    # builds on their own -----------------------------------------------------------------

    def start(self, code_zip: bytes, function: str | None = None) -> Build:
        """Start building the requirements.txt of a code zip in the background; the build
        is returned running, or succeeded and ``cached`` when its directory exists.

        Raises:
            InvalidSpec: a bad function name. InvalidCode: an unreadable or unsafe archive,
            or one without requirements.txt at its top. PayloadTooLarge.
            ServiceUnavailable: the server is stopping.
        """
        if function is not None:
            checked_name("function", function, "function")
        if self._closing.is_set():
            raise ServiceUnavailable("the server is stopping: start the build again later")
        with open_archive(code_zip, self._limits) as archive:
            if not any(e.name == REQUIREMENTS and e.kind == "file" for e in archive.entries):
                raise InvalidCode(
                    f"the code holds no {REQUIREMENTS} at its top level: there is nothing "
                    "to build", {"field": "zip"},
                )
            self._root.mkdir(parents=True, exist_ok=True)
            code_dir = Path(tempfile.mkdtemp(prefix=".code-", dir=self._root))
            try:
                os.chmod(code_dir, 0o755)  # for a sandboxed build's user
                archive.extract_to(code_dir)
                requirements = (code_dir / REQUIREMENTS).read_bytes()
            except BaseException:
                remove_tree(code_dir)
                raise
        key = dependency_key(requirements, self._python)
        if self._built(key) is not None:
            remove_tree(code_dir)
            return self._cache_hit(self._record(function, key, requirements))
        build = self._record(function, key, requirements)
        thread = threading.Thread(
            target=self._background, args=(build, code_dir), name=f"build-{build.id[:8]}",
            daemon=True,
        )
        with self._guard:
            # Registered under the lock close() reads them with: none starts unwaited for.
            if not self._closing.is_set():
                self._threads.add(thread)
                thread.start()
                return build
        remove_tree(code_dir)
        return self._store.finish(
            build.id, status=FAILED, cached=False, log="", log_size=0, error=_STOPPED,
            finished_at=utcnow(self._clock),
        )

    def get(self, build_id: str) -> Build:
        return self._store.get(build_id)

    def list_for(self, function: str) -> list[Build]:
        """The builds recorded against ``function``, newest first, without their logs
        (a create that failed on its build leaves them though the function is not there)."""
        return self._store.list_for(function)

    def delete_function(self, function: str) -> None:
        self._store.delete_function(function)

    def close(self) -> None:
        """Stop every running pip (their builds fail) and wait for the background ones."""
        self._closing.set()
        with self._guard:
            processes, threads = list(self._processes), list(self._threads)
        for process in processes:
            _kill(process)
        for thread in threads:
            thread.join(timeout=10)

    # running ----------------------------------------------------------------------------

    def _record(self, function: str | None, key: str, requirements: bytes) -> Build:
        return self._store.create(Build(
            # Short enough to type after `ember build logs`, random enough never to repeat.
            id=os.urandom(8).hex(), function=function, key=key, status=RUNNING, cached=False,
            requirements_sha256=hashlib.sha256(requirements).hexdigest(),
            python=self._python, log="", log_size=0, error=None,
            created_at=utcnow(self._clock),
        ))

    def _cache_hit(self, build: Build) -> Build:
        text = f"{REQUIREMENTS} was already built for {self._python} (key {build.key})\n"
        return self._store.finish(
            build.id, status=SUCCEEDED, cached=True, log=text, log_size=len(text), error=None,
            finished_at=utcnow(self._clock),
        )

    def _background(self, build: Build, code_dir: Path) -> None:
        try:
            self._run(build, code_dir)
        except Exception:
            log.exception("build %s failed unexpectedly", build.id)
            with contextlib.suppress(Exception):
                self._store.finish(
                    build.id, status=FAILED, cached=False, log="", log_size=0,
                    error="internal error: see the server's log", finished_at=utcnow(self._clock),
                )
        finally:
            remove_tree(code_dir)
            with self._guard:
                self._threads.discard(threading.current_thread())

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _run(self, build: Build, code_dir: Path) -> Build:
        with self._lock(build.key):
            if self._built(build.key) is not None:
                return self._cache_hit(build)
            return self._install(build, code_dir)

    def _install(self, build: Build, code_dir: Path) -> Build:
        self._root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=self._root))
        output = _Log(lambda text, size: self._store.update_log(build.id, text, size))
        started = time.monotonic()
        try:
            try:
                error = self._pip(staging, code_dir, output)
                if error is None:
                    place_tree(staging, self.path(build.key))
            except OSError as exc:  # the disk, not the requirements: say so, never hang
                log.exception("build %s could not run or place its install", build.id)
                error = f"the server could not install the dependencies: {exc}"
            if error is None:
                output.write(f"installed in {time.monotonic() - started:.2f} s\n")
                self._share(build.key, output)
            else:
                output.write(f"build failed: {error}\n")
        finally:
            if staging.exists():
                remove_tree(staging)
        return self._store.finish(
            build.id, status=SUCCEEDED if error is None else FAILED, cached=False,
            log=output.text, log_size=output.size, error=error,
            finished_at=utcnow(self._clock),
        )

    def _built(self, key: str) -> Path | None:
        """The dependency directory of ``key``: this node's, else the one another node
        stored (fetched now, once); None when it must be built here."""
        final = self.path(key)
        if final.is_dir() or self._shared is None:
            return final if final.is_dir() else None
        sha256 = self._store.shared(key)
        if sha256 is None:
            return None
        try:
            return self._shared.path(sha256)
        except NotFound:
            self._store.unshare(key)  # gone: the build here records its own
        except EmberError as exc:  # corrupt, or over this node's limits
            log.warning("the dependencies shared for key %s cannot be used here (%s): "
                        "building them on this node", key, exc)
        return None

    def _share(self, key: str, output: _Log) -> None:
        """Store the install of ``key`` for the other nodes; one that cannot be stored (too
        big for an artifact) stays here, and the others build it themselves."""
        if self._shared is None:
            return
        try:
            too_big = _over_limits(self.path(key), self._limits)
            if too_big is not None:
                output.write(f"kept on this node only (other nodes build it again): {too_big}\n")
                return
            ref = self._shared.put(zip_directory(self.path(key)))
        except (EmberError, ValueError, OSError) as exc:
            output.write(f"kept on this node only (other nodes build it again): {exc}\n")
            return
        self._store.share(key, ref.sha256, utcnow(self._clock))
        output.write(f"stored for the other nodes as artifact {ref.sha256}\n")

    def _pip(self, target: Path, code_dir: Path, output: _Log) -> str | None:
        """Run pip into ``target``, its output into ``output``; the error, or None."""
        try:
            sandbox = self._choose_sandbox()
        except IsolationUnavailable as exc:
            return f"the build sandbox cannot start: {exc}"
        args = [
            "-m", "pip", "install", "--target", str(target if sandbox is None else BUILD_TARGET),
            "--no-input", "--disable-pip-version-check", "--no-warn-script-location",
            "--progress-bar", "off", "-r", REQUIREMENTS,
        ]
        output.write(f"$ python {shlex.join(args)}\n")
        if self._closing.is_set():
            return _STOPPED
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        argv = [sys.executable, *args]
        if sandbox is not None:
            try:
                argv = sandbox.build_command(argv, code_dir=code_dir, target=target,
                                             extra_ro=_pip_paths(env, code_dir))
            except IsolationUnavailable as exc:
                return f"the build sandbox cannot start: {exc}"
            # The host's TMPDIR is not there; no cache (see the module's docstring).
            env.update(TMPDIR="/tmp", PIP_NO_CACHE_DIR="1")
            if sandbox.privileged:
                os.chown(target, BUILD_UID, BUILD_UID)
        try:
            process = subprocess.Popen(
                argv, cwd=code_dir, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            return f"pip could not be started: {exc}"
        with self._guard:
            self._processes.add(process)
        try:
            stopped = self._follow(process, output)
        finally:
            with self._guard:
                self._processes.discard(process)
        if stopped is not None:
            return stopped
        if process.returncode != 0:
            return f"pip exited with status {process.returncode}: {_last_error(output.text)}"
        if sandbox is not None and sandbox.privileged:
            _hand_back(target)
        return None

    def _choose_sandbox(self) -> Bubblewrap | None:
        """The sandbox of builds, chosen once as for instances (``choose_isolation``).

        Raises:
            IsolationUnavailable: ``bubblewrap`` is required and cannot be used here.
        """
        with self._probing:
            if not self._probed:
                self._sandbox = choose_isolation(self._isolation, private=self._private,
                                                 unsandboxed=_BUILDS_UNSANDBOXED)
                self._probed = True
            return self._sandbox

    def _follow(self, process: subprocess.Popen[bytes], output: _Log) -> str | None:
        """Copy the process's output until it ends; the reason it was stopped, if it was."""
        assert process.stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        deadline = time.monotonic() + self._timeout_s
        stopped = None
        with process.stdout, selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    stopped = (f"the build ran past {self._timeout_s:g} s "
                               "(EMBER_BUILD_TIMEOUT_S) and was stopped")
                elif self._closing.is_set():
                    stopped = _STOPPED
                if stopped is not None:
                    _kill(process)
                    break
                if selector.select(min(FLUSH_S, left)):
                    chunk = os.read(process.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    output.write(decoder.decode(chunk))
                output.flush()
        output.write(decoder.decode(b"", final=True))
        process.wait()
        if stopped is None and process.returncode != 0 and self._closing.is_set():
            stopped = _STOPPED  # close() killed it before this loop saw the flag
        return stopped


class _Log:
    """A build's log as it grows: its end kept under ``LOG_LIMIT`` characters, handed to
    ``save`` at most every ``FLUSH_S`` while it changes."""

    def __init__(self, save: Callable[[str, int], None]) -> None:
        self._save = save
        self.text = ""
        self.size = 0
        self._dirty = False
        self._saved_at = time.monotonic()

    def write(self, text: str) -> None:
        if not text:
            return
        self.text += text
        self.size += len(text)
        self._dirty = True
        if len(self.text) > LOG_LIMIT:
            kept = self.text[-LOG_LIMIT:]
            newline = kept.find("\n")
            # Start at a whole line when there is one to start at.
            self.text = kept[newline + 1 :] if 0 <= newline < len(kept) - 1 else kept

    def flush(self) -> None:
        if self._dirty and time.monotonic() - self._saved_at >= FLUSH_S:
            self._save(self.text, self.size)
            self._dirty = False
            self._saved_at = time.monotonic()


def _over_limits(root: Path, limits: ArtifactLimits) -> str | None:
    """Why the install in ``root`` cannot be an artifact (checked before it is zipped in
    memory), or None; an empty install is not worth sharing either."""
    entries = size = 0
    for directory, dirs, files in os.walk(root):
        entries += len(dirs) + len(files)
        size += sum(os.lstat(os.path.join(directory, name)).st_size for name in files)
        if entries > limits.max_entries:
            return f"more than {limits.max_entries} files"
        if size > limits.max_unpacked_bytes:
            return f"more than {limits.max_unpacked_bytes} bytes"
    return "nothing was installed" if entries == 0 else None


def _requirements(code_dir: Path) -> bytes | None:
    try:
        return (code_dir / REQUIREMENTS).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _hand_back(target: Path) -> None:
    """Give a sandboxed install to the server: owned by it, modes 0644 or 0755 (set-id and
    sticky bits gone), readable by instances. Links are never followed, not even one put in
    place of a file while this runs (every process of the build is gone by then anyway)."""
    uid, gid = os.geteuid(), os.getegid()
    for _, dirs, files, dir_fd in os.fwalk(target, follow_symlinks=False):
        for name in (*dirs, *files):
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY,
                             dir_fd=dir_fd)
            except OSError:  # a symlink, a socket: no mode to give
                continue
            try:
                mode = os.fstat(fd).st_mode
                if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
                    os.fchmod(fd, 0o755 if stat.S_ISDIR(mode) or mode & 0o111 else 0o644)
            finally:
                os.close(fd)
    os.chown(target, uid, gid)
    os.chmod(target, 0o755)


def _pip_paths(env: Mapping[str, str], code_dir: Path) -> list[Path]:
    """What pip reads outside the code: its configuration files, and the local paths they,
    the ``PIP_*`` variables and the requirements name (find-links, indexes, constraints,
    certificates, packages). A path only the requirements name is kept when anyone on the
    host may read it: whoever deploys writes them."""
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    user = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    files = [Path(d) / "pip" / "pip.conf"
             for d in (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(os.pathsep) if d]
    files += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf", user / "pip" / "pip.conf",
              Path(sys.prefix) / "pip.conf"]
    if env.get("PIP_CONFIG_FILE", os.devnull) != os.devnull:
        files.append(Path(env["PIP_CONFIG_FILE"]))
    files = [f for f in files if f.is_file()]
    values = [value for name, value in env.items() if name.startswith("PIP_")]
    for file in files:
        parser = ConfigParser(interpolation=None)
        with contextlib.suppress(OSError, ConfigError, UnicodeDecodeError):
            parser.read(file, encoding="utf-8")
        values += [value for section in parser.values() for value in section.values()]
    found = files + [path for value in values for path in _local_paths(value)]
    named = (_requirements(code_dir) or b"").decode(errors="replace")
    return found + [path for path in _local_paths(named) if _public(path)]


def _local_paths(text: str) -> Iterator[Path]:
    """The absolute paths and ``file:`` URLs in ``text`` (``--option=value`` too)."""
    for word in text.split():
        word = word.split("=", 1)[-1] if word.startswith("-") else word
        if word.startswith("file:"):
            word = unquote(urlsplit(word).path)
        if os.path.isabs(word):
            yield Path(word)


def _public(path: Path) -> bool:
    """Anyone on the host may read ``path``: every directory on the way searchable by
    others, ``path`` readable (and searchable, a directory) by them."""
    try:
        real = path.resolve(strict=True)
        if any(not os.stat(p).st_mode & stat.S_IXOTH for p in real.parents):
            return False
        mode = os.stat(real).st_mode
    except (OSError, RuntimeError):
        return False
    wanted = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
    return mode & wanted == wanted


def _kill(process: subprocess.Popen[bytes]) -> None:
    # pip runs in a session of its own: the whole group goes, build backends included.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _last_error(text: str) -> str:
    """The line that says why pip failed: its last ``ERROR:`` line, else its last line."""
    lines = [line.strip() for line in text.splitlines()[1:] if line.strip()]  # not the "$ …"
    errors = [line for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[-1]
    return lines[-1] if lines else "no output"
