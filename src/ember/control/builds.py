"""Dependency builds: a code's ``requirements.txt`` installed by pip, for the server's Python,
into ``<root>/<key>/``, which goes on the import path of the code's instances.

A build runs ``python -m pip install --target <staging dir>`` with the server's own
interpreter and environment (so the machine's pip configuration, indexes and find-links,
keeps working), in the unpacked code directory (so the requirements may name files beside
them). Its output is recorded as it comes. Only a finished install is renamed to its key,
so a directory at a key is always complete; builds of one key run one at a time, and the
second finds the first's directory: a cache hit.
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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from ember.artifacts import ArtifactLimits, open_archive
from ember.artifacts.filesystem import place_tree, remove_tree
from ember.clock import Clock, utcnow
from ember.control.functions import checked_name
from ember.errors import InvalidCode, ServiceUnavailable
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
from ember.store.builds import SqlBuildStore

log = logging.getLogger(__name__)

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
    """

    def __init__(
        self, store: SqlBuildStore, root: Path, clock: Clock, *, timeout_s: float = 600.0,
        limits: ArtifactLimits | None = None, python: str | None = None,
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
        final = self.path(key)
        if final.is_dir():
            return final
        with self._lock(key):
            if final.is_dir():  # built by whoever held the lock: nothing to record
                return final
            build = self._install(self._record(function, key, requirements), code_dir)
        if build.status != SUCCEEDED:
            raise build_failed(build.id, build.error, build.log)
        return final

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
                archive.extract_to(code_dir)
                requirements = (code_dir / REQUIREMENTS).read_bytes()
            except BaseException:
                remove_tree(code_dir)
                raise
        key = dependency_key(requirements, self._python)
        if self.path(key).is_dir():
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
            if self.path(build.key).is_dir():
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

    def _pip(self, target: Path, code_dir: Path, output: _Log) -> str | None:
        """Run pip into ``target``, its output into ``output``; the error, or None."""
        args = [
            "-m", "pip", "install", "--target", str(target), "--no-input",
            "--disable-pip-version-check", "--no-warn-script-location",
            "--progress-bar", "off", "-r", REQUIREMENTS,
        ]
        output.write(f"$ python {shlex.join(args)}\n")
        if self._closing.is_set():
            return _STOPPED
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
        try:
            process = subprocess.Popen(
                [sys.executable, *args], cwd=code_dir, env=env, stdin=subprocess.DEVNULL,
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
        return None

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


def _requirements(code_dir: Path) -> bytes | None:
    try:
        return (code_dir / REQUIREMENTS).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


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
