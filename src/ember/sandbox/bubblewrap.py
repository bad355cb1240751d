"""Isolation by bubblewrap: what an instance sees of the host.

Limits (``cgroups.py``, ``process.py``) bound what an instance may use; isolation decides
what it may see and touch. Every instance process runs under ``bwrap`` (the Debian
package ``bubblewrap``) in namespaces of its own:

- mounts: a fresh root holding, read-only, the system directories Python needs (``/usr``
  and its links, a short list of files from ``/etc`` — never ``shadow``), the runtime
  (the interpreter, its prefix and virtual environment, the ``ember`` package), the
  function version's code and layers (at ``/var/task`` and ``/var/layers/N``, as the
  instance is told); a private ``/proc``, a minimal ``/dev``, and a
  writable ``/tmp``. Nothing else of the host: not ``<home>`` (database, keys, other
  functions' code and artifacts, logs), not the users' home directories;
- PIDs: processes outside the sandbox cannot be seen, signalled or traced;
- IPC and host name; the network too when the function says ``network: none`` (an empty
  namespace with only a loopback of its own).

The cost of ``bwrap`` (a few milliseconds) is paid once per function version, not per
instance: the launcher runs one zygote per version inside its sandbox and forks instances
from it (see ``ember.pool.launcher``). What must differ between two instances of the same
version — their ``/tmp`` and their user id — is taken by the forked child itself
(``ember.runtime.confine``) before any user code runs, with the capabilities the zygote
keeps for that (``ZYGOTE_CAPABILITIES``; only when the server runs as root).

A version whose dependencies were built (installed distributions on its import path) has,
as root, a preloader between its zygote and its instances (``ember.pool.preload``,
``ember.runtime.preload``): a child of the zygote that takes its own ``/tmp`` and a user
id of the version's, drops every capability, and only then imports the dependencies, so
that their code never runs with the zygote's capabilities. Instances forked from it have
nothing left to take: the instances of such a version share its user id and its ``/tmp``
(never another version's). They connect to a socket of that user's, in a directory the
sandbox sees at ``SOCKETS_DIR/version``.

Dependency builds run under ``bwrap`` too (``build_command``): pip and the build scripts of
the packages it builds see the system, the runtime, the code and their own install directory
(not ``<home>``), with the network but no capability; as ``BUILD_UID`` when the server is
root (see ``ember.control.builds``).

Without root, bubblewrap runs in a user namespace: instances are isolated from the host
as above, but the instances of one version share the zygote's ``/tmp`` and user id. Where
bubblewrap is missing or cannot start, ``probe`` says why and the server falls back to the
``process`` sandbox with a warning (``choose_isolation``).
"""

from __future__ import annotations

import logging
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Files of /etc that programs read to resolve names, find certificates and tell the time.
ETC_FILES = (
    "resolv.conf", "hosts", "host.conf", "nsswitch.conf", "gai.conf", "services",
    "protocols", "localtime", "timezone", "passwd", "group", "mime.types", "ld.so.cache",
    "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates", "ca-certificates.conf", "pki",
    "crypto-policies", "alternatives", "os-release", "debian_version", "locale.alias",
)
# Top-level system directories: bound read-only, or recreated as the links they are
# (merged /usr).
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "opt")
# Kept by a root zygote for ``confine`` in its children: mounts (private /tmp), user
# switch, emptying the bounding set, and killing a child whose pid only the zygote knows.
# The children drop every set (bounding, permitted, effective, inheritable, ambient)
# before user code.
ZYGOTE_CAPABILITIES = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_KILL",
                       "CAP_SETPCAP")
# The user ids given to instances, one per live instance (a range no distribution uses
# for real users).
FIRST_INSTANCE_UID = 2_000_000
INSTANCE_UIDS = 100_000
# Where a sandbox sees the server's sockets it connects to.
SOCKETS_DIR = Path("/run/ember")
# Where instances find the secrets they are given as files.
SECRETS_DIR = "/run/secrets"
# Where instances find their function's code and layers.
CODE_MOUNT = Path("/var/task")
LAYERS_MOUNT = Path("/var/layers")
# Where a dependency build sees the function's code (its working directory) and writes its
# install; the user id it runs as when the server is root (past the instances' range: no
# instance shares it), and what bwrap keeps for ``setpriv`` to switch to it and drop them all.
BUILD_CODE = Path("/var/build/code")
BUILD_TARGET = Path("/var/build/target")
BUILD_UID = FIRST_INSTANCE_UID + INSTANCE_UIDS
BUILDER_CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")
# The ember package's root (``.../site-packages`` or an editable checkout's ``src``).
_EMBER_ROOT = Path(__file__).resolve().parents[2]


class IsolationUnavailable(Exception):
    """bubblewrap cannot isolate instances here (the message says why)."""


@dataclass(frozen=True)
class View:
    """What the instances of one function version see of the host, besides the runtime.

    Two specs with the same view share a sandboxed zygote.
    """

    function: str
    version: str
    code_dir: Path
    layer_dirs: tuple[Path, ...] = ()
    network: str = "outbound"
    # (device, inode) of each directory: a tree removed and unpacked again at the same
    # path (a function deleted and created again) is another view — a zygote's bind
    # mounts hold the directories they were made from.
    identity: tuple[tuple[int, int], ...] = ()

    def mounts(self) -> list[tuple[Path, Path]]:
        """(host directory, where instances see it): the code at ``CODE_MOUNT``, layers
        under ``LAYERS_MOUNT`` in order — never under ``/tmp``, which each instance
        replaces with its own, and never at a host path, which tells about the host."""
        found = [(self.code_dir, CODE_MOUNT)]
        found += [(path, LAYERS_MOUNT / str(i)) for i, path in enumerate(self.layer_dirs)]
        return found


class Bubblewrap:
    """Builds the ``bwrap`` command of a function version's sandbox.

    Args:
        executable: the ``bwrap`` binary.
        private: directories never shown to instances, even when a runtime path lies in
            them or contains them (the server's home).
        runtime_paths: extra directories the runtime needs (read-only); by default the
            interpreter's prefixes, the ``ember`` package root and the import path.
        privileged: the server is root: the zygote keeps ``ZYGOTE_CAPABILITIES`` so that
            each child can take its own ``/tmp`` and user id. Defaults to ``euid == 0``.
    """

    name = "bubblewrap"

    def __init__(self, executable: str, *, private: Sequence[Path] = (),
                 runtime_paths: Sequence[Path] | None = None,
                 privileged: bool | None = None) -> None:
        self.executable = executable
        self.private = tuple(p.resolve() for p in private)
        self.privileged = os.geteuid() == 0 if privileged is None else privileged
        paths = runtime_paths if runtime_paths is not None else default_runtime_paths()
        self.runtime_paths = self._visible(paths)

    @classmethod
    def probe(cls, *, private: Sequence[Path] = ()) -> Bubblewrap:
        """A ``Bubblewrap`` if ``bwrap`` is installed and can start a sandbox here.

        Raises:
            IsolationUnavailable: it is not installed, or it cannot create namespaces
                (e.g. user namespaces are disabled and it is not setuid).
        """
        if not sys.platform.startswith("linux"):
            raise IsolationUnavailable("bubblewrap needs Linux")
        executable = shutil.which("bwrap")
        if executable is None:
            raise IsolationUnavailable(
                "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
            )
        isolation = cls(executable, private=private)
        trial = isolation.command([sys.executable, "-c", "import ember"],
                                  View("probe", "0", Path(__file__).parent), binds=())
        try:
            done = subprocess.run(trial, capture_output=True, timeout=30, check=False,
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise IsolationUnavailable(f"bwrap cannot start: {exc}") from exc
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            raise IsolationUnavailable(
                f"bwrap cannot start a sandbox here: {said[-1] if said else done.returncode}"
            )
        return isolation

    def _visible(self, paths: Iterable[Path]) -> tuple[Path, ...]:
        """``paths`` resolved, existing, deduplicated (a path inside another is dropped),
        without system directories (bound anyway) and without anything private."""
        found: list[Path] = []
        for raw in paths:
            try:
                path = Path(raw).resolve()
            except OSError:
                continue
            if not path.is_dir() or path == Path("/"):
                continue
            if path.parts[1:2] and path.parts[1] in SYSTEM_DIRS:
                continue
            if any(_within(path, p) or _within(p, path) for p in self.private):
                continue
            found.append(path)
        found.sort(key=lambda p: len(p.parts))
        kept: list[Path] = []
        for path in found:
            if not any(_within(path, k) for k in kept):
                kept.append(path)
        return tuple(kept)

    def command(self, argv: Sequence[str], view: View, *,
                binds: Sequence[tuple[Path, Path]]) -> list[str]:
        """``argv`` run inside the sandbox of ``view``.

        Args:
            argv: the program and its arguments (paths as seen inside: the runtime's are
                the host's, bound at the same places).
            view: what to show of the function version.
            binds: (host file, where it is seen) to bind writable: the server's Unix
                sockets the process connects to (``connect`` needs write permission,
                nothing more), best under ``SOCKETS_DIR``, which tells nothing of the host.
        """
        args = [self.executable, "--die-with-parent", "--new-session",
                "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "ember"]
        if view.network == "none":
            args.append("--unshare-net")
        if not self.privileged:
            args.append("--unshare-user")
        # The private directories first: a runtime path under /tmp (a checkout there, its
        # virtual environment) is then bound inside the tmpfs, not hidden by it.
        args += _private_dirs()
        args += self._system([Path(SECRETS_DIR), *self.runtime_paths,
                              *(inside for _, inside in view.mounts()),
                              *(inside for _, inside in binds)])
        # Secrets given as files; each instance mounts its own (``confine``).
        args += ["--perms", "0700", "--tmpfs", SECRETS_DIR]
        for path in self.runtime_paths:
            args += ["--ro-bind", str(path), str(path)]
        for host, inside in view.mounts():
            args += ["--ro-bind", str(host), str(inside)]
        for host, inside in binds:
            args += ["--bind", str(host), str(inside)]
        args += ["--cap-drop", "ALL"]
        if self.privileged:
            for capability in ZYGOTE_CAPABILITIES:
                args += ["--cap-add", capability]
        args += ["--chdir", "/", "--", *argv]
        return args

    def build_command(self, argv: Sequence[str], *, code_dir: Path, target: Path,
                      extra_ro: Sequence[Path] = ()) -> list[str]:
        """``argv`` (pip) run to build a function's dependencies, whose build backends run
        code of whoever published the packages.

        Inside: the system and runtime read-only, ``code_dir`` read-only at ``BUILD_CODE``
        (the working directory), ``target`` writable at ``BUILD_TARGET``, ``extra_ro``
        (pip's configuration and the local indexes it names) read-only at their host paths
        unless private, a private ``/tmp``; the host's network (pip downloads). Own mount,
        PID, IPC namespaces, no capabilities. Root (``privileged``) runs ``argv`` as
        ``BUILD_UID`` through ``setpriv`` (util-linux): bwrap keeps only what that switch
        needs, and the switch drops it all (``target`` must be ``BUILD_UID``'s); otherwise
        ``argv`` runs as the server's user in a user namespace.

        Raises:
            IsolationUnavailable: the server is root and ``setpriv`` is not installed.
        """
        args = [self.executable, "--die-with-parent", "--new-session",
                "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "ember"]
        if not self.privileged:
            args.append("--unshare-user")
        shown = self._shown(extra_ro)
        args += _private_dirs()
        args += self._system([*self.runtime_paths, BUILD_CODE, BUILD_TARGET, *shown])
        for path in (*self.runtime_paths, *shown):
            args += ["--ro-bind", str(path), str(path)]
        args += ["--ro-bind", str(code_dir), str(BUILD_CODE),
                 "--bind", str(target), str(BUILD_TARGET), "--cap-drop", "ALL"]
        if self.privileged:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                raise IsolationUnavailable(
                    "setpriv is not installed (Debian/Ubuntu: util-linux): builds cannot "
                    "leave root"
                )
            for capability in BUILDER_CAPABILITIES:
                args += ["--cap-add", capability]
            argv = [setpriv, f"--reuid={BUILD_UID}", f"--regid={BUILD_UID}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--", *argv]
        args += ["--chdir", str(BUILD_CODE), "--", *argv]
        return args

    def _system(self, targets: Iterable[Path]) -> list[str]:
        """The read-only system (``SYSTEM_DIRS``, ``ETC_FILES``) and the directories on the
        way to ``targets``, the mount points to come."""
        args: list[str] = []
        for name in SYSTEM_DIRS:
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                args += ["--ro-bind", str(host), str(host)]
        # The directories bwrap creates on the way to a mount point follow its umask,
        # which may leave them unreadable to the sandbox's user: made explicitly.
        parents = {p for t in targets for p in t.parents if p not in _MOUNTED}
        for directory in sorted(parents, key=lambda p: len(p.parts)):
            args += ["--perms", "0755", "--dir", str(directory)]
        args += ["--perms", "0755", "--dir", "/etc"]
        for name in ETC_FILES:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        return args

    def _shown(self, paths: Iterable[Path]) -> list[Path]:
        """``paths`` that exist, absolute, without those in a system directory (bound
        anyway), private, or in place of what the sandbox has of its own (``/proc``,
        ``/dev``, ``/tmp``; ``/sys``): where a build sees them, parents first."""
        found: list[Path] = []
        for raw in paths:
            path = Path(os.path.abspath(raw))  # where pip looks: symlinks kept
            try:
                real = path.resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if path.parts[1:2] and path.parts[1] in (*SYSTEM_DIRS, "proc", "dev", "sys"):
                continue
            if path == Path("/tmp") or real in (Path("/"), Path("/tmp")):
                continue
            if any(_within(real, p) or _within(p, real) for p in self.private):
                continue
            if path not in found:
                found.append(path)
        return sorted(found, key=lambda p: len(p.parts))

    def describe(self) -> str:
        """One line for the server's start: what instances see."""
        mode = ("a user id and /tmp per instance" if self.privileged
                else "a user namespace; instances of one version share /tmp and a user id")
        return (f"bubblewrap ({self.executable}): own mount, PID, IPC namespaces, read-only "
                f"system and runtime, {mode}")


# Made by ``_private_dirs`` (or the root): never made again as plain directories.
_MOUNTED = {Path("/"), Path("/proc"), Path("/dev"), Path("/tmp"), Path("/dev/shm")}


def _private_dirs() -> list[str]:
    """A private ``/proc``, minimal ``/dev``, and writable ``/tmp`` and ``/dev/shm``."""
    return ["--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--tmpfs", "/tmp",
            "--perms", "1777", "--tmpfs", "/dev/shm"]


def default_runtime_paths() -> list[Path]:
    """What the runtime needs to run: the interpreter's prefixes, its site directories,
    ``PYTHONPATH`` and the ``ember`` package — not the server's working directory, which
    the runtime (started with ``-P``) never imports from."""
    paths = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
             Path(sys.base_exec_prefix), _EMBER_ROOT, Path(sys.executable).resolve().parent]
    paths += [Path(entry) for entry in site.getsitepackages()]
    paths += [Path(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
              if entry and os.path.isabs(entry)]
    return paths


def _within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


INSTANCES_UNSANDBOXED = (
    "SANDBOX OFF: {reason}. Instances run as plain processes with resource limits only: "
    "function code can read what the server's user can read (its database and keys "
    "included). Install bubblewrap, or set EMBER_SANDBOX=process to say this is meant."
)


def choose_isolation(mode: str, *, private: Sequence[Path] = (),
                     unsandboxed: str = INSTANCES_UNSANDBOXED) -> Bubblewrap | None:
    """The isolation for ``mode``: ``bubblewrap`` (required), ``process`` (none), or
    ``auto`` (bubblewrap where it works, else none with a loud warning: ``unsandboxed``,
    where ``{reason}`` says why).

    Raises:
        IsolationUnavailable: ``mode`` is ``bubblewrap`` and it cannot be used here.
    """
    if mode == "process":
        return None
    try:
        return Bubblewrap.probe(private=private)
    except IsolationUnavailable as exc:
        if mode == "bubblewrap":
            raise
        logger.warning(unsandboxed.format(reason=exc))
        return None
