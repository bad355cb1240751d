"""The preloader: a zygote of one function version that has imported its dependencies.

A version's zygote (``ember.runtime.zygote``) holds the capabilities its children need to
take their own ``/tmp`` and user id, so it must never run the version's code, nor the code
of its dependencies: importing a package runs it. The preloader is the place where that
code may run. It is forked by the version's zygote on a ``spawn`` with ``"preload": true``
and, before any dependency code runs, confines itself exactly as an instance would:

1. it sets PDEATHSIG against the zygote, connects to the server's instance socket (as
   root still: the socket is not the version user's to open), takes its own mounts
   (``confine.enter``: a private ``/tmp`` of ``tmp_mb``) and says ``hello`` as its id;
2. the server puts it in a sandbox of its own (cgroup: the version's memory limit) and
   sends ``preload``; the preloader then drops to the version's user id for good
   (``confine.drop``: no capability left, ``no_new_privs``);
3. only then it imports the modules named, each under the version's environment, import
   path and working directory; an import that fails is undone (the modules it added are
   removed) and reported, the others are kept; ``preloading`` frames say which module is
   being imported, so that the server, which bounds the whole step in time and kills a
   preloader that hangs, can say which one hung; ``preloaded`` ends the step;
4. it serves ``spawn`` requests as a zygote (``ember.runtime.zygote.Zygote``) over the same
   connection. Its children are instances with nothing left to take: they share its user
   id and its ``/tmp`` (the instances of one version, not those of others).

Fork safety: unlike the zygote, a preloader may hold threads its imports started (OpenBLAS
starts its pool when numpy loads); a fork copies only the calling thread. The libraries
that do so re-create their threads in the child (``pthread_atfork``), as they do under
``multiprocessing``'s fork; ``preloaded`` reports the count, and the server logs it.

Conversation (server ⇄ preloader), after the ``spawn`` the version's zygote answered:

    preloader → server   hello       {"id": preloader_id, "pid": int}
    server → preloader   preload     {"modules": [str], "path": [str], "env": {str: str},
                                      "cwd": str}
    preloader → server   preloading* {"module": str}
    preloader → server   preloaded   {"modules": [str], "failed": {str: str},
                                      "import_ms": float, "threads": int}
    then the zygote conversation (``ember.runtime.protocol``): hello, spawn, spawned…

Standard library and msgpack only, like the rest of the runtime.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import time
from collections.abc import Callable

from ember.runtime import confine
from ember.runtime.process import set_parent_death_signal
from ember.runtime.protocol import (
    HELLO,
    PRELOAD,
    PRELOADED,
    PRELOADING,
    FrameSocket,
    Message,
    ProtocolError,
)
from ember.runtime.spec import Confinement


def import_modules(modules: list[str],
                   progress: object = None) -> tuple[list[str], dict[str, str]]:
    """Import ``modules`` in order; those imported, and why each other one failed.

    A failed import is undone: every module it added to ``sys.modules`` is removed, so an
    instance that imports it again starts from where a fresh interpreter would (its side
    effects outside the interpreter excepted). ``progress``: called with each name first.
    """
    imported: list[str] = []
    failed: dict[str, str] = {}
    for name in modules:
        if callable(progress):
            progress(name)
        before = set(sys.modules)
        try:
            importlib.import_module(name)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt too: not ours
            for added in set(sys.modules) - before:
                sys.modules.pop(added, None)
            failed[name] = f"{type(exc).__name__}: {exc}"[:500]
        else:
            imported.append(name)
    return imported, failed


def _threads() -> int:
    """The threads of this process (native ones included, which a fork does not copy)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def prepare(conn: FrameSocket, message: Message) -> None:
    """Step 3: the version's environment, path and directory, then the imports; sends
    ``preloaded``. The path and directory are put back afterwards (an instance sets its
    own); the environment stays, as modules read it when imported."""
    path = [str(p) for p in message.get("path") or []]
    saved_path = list(sys.path)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in (message.get("env") or {}).items()})
    if "TZ" in os.environ:
        time.tzset()
    cwd = message.get("cwd")
    if cwd:
        os.chdir(str(cwd))
    sys.path[:0] = path
    importlib.invalidate_caches()
    started = time.perf_counter()
    try:
        imported, failed = import_modules(
            [str(m) for m in message.get("modules") or []],
            lambda name: conn.send({"t": PRELOADING, "module": name}),
        )
    finally:
        sys.path[:] = saved_path
        os.chdir("/")
    conn.send({"t": PRELOADED, "modules": imported, "failed": failed,
               "import_ms": (time.perf_counter() - started) * 1000, "threads": _threads()})


def run(connect_path: str, preloader_id: str, zygote_pid: int,
        confinement: Confinement | None, serve: Callable[[FrameSocket], None]) -> int:
    """Be the preloader (steps 1-4); the exit status to use. ``serve``: step 4, the
    zygote's loop on the connection (given by ``ember.runtime.zygote``, which imports
    this module)."""
    set_parent_death_signal(zygote_pid)
    if confinement is None:
        # Without a user id of its own, dependency code would run with the zygote's
        # capabilities: never.
        print(f"ember preloader {preloader_id}: no confinement given: refusing to preload",
              file=sys.stderr)
        return 3
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(connect_path)
        confine.enter(confinement)
    except OSError as exc:
        print(f"ember preloader {preloader_id}: cannot start: {exc}", file=sys.stderr)
        return 3
    conn = FrameSocket(sock)
    try:
        conn.send({"t": HELLO, "id": preloader_id, "pid": os.getpid()})
        message = conn.recv()
        if message is None or message["t"] != PRELOAD:
            return 0
        try:
            confine.drop(confinement)
        except OSError as exc:
            print(f"ember preloader {preloader_id}: cannot take its user id: {exc}",
                  file=sys.stderr)
            return 3
        prepare(conn, message)
        serve(conn)
        return 0
    except (OSError, ProtocolError):
        return 0  # the server went away
    finally:
        conn.close()
