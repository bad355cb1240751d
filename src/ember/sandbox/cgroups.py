"""The memory of each instance bounded by a cgroup of its own (v1 or v2).

Layout: under the server's own memory cgroup (read from ``/proc/self/cgroup`` and
``/proc/self/mountinfo``), one directory per server, ``ember-<pid>-<token>``, holding one
directory per instance. Nothing outside the server's own subtree is touched, so this works
wherever the server may create child cgroups: as root on cgroup v1, or on cgroup v2 where
the ``memory`` controller is already delegated to the server's cgroup (v2 forbids enabling
it for children while the server's own cgroup holds processes, so it is not forced).

Limit: ``memory_mb`` plus ``CGROUP_HEADROOM_MB`` (see ``base.py``), swap included where the
kernel accounts it. When the instance goes over, the kernel's OOM killer sends it SIGKILL
inside its cgroup; the ``oom_kill`` counter (v1 ``memory.oom_control``, v2
``memory.events``) tells the launcher that the death was out of memory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path

from ember.sandbox.base import CGROUP_HEADROOM_MB, Limits
from ember.sandbox.process import limit_open_files

_MIB = 1024 * 1024


class CgroupUnavailable(Exception):
    """Cgroups cannot bound memory here; the message says why."""


@dataclass(frozen=True)
class MemoryHierarchy:
    """Where this process's memory cgroup lives: its directory and the cgroup version."""

    path: Path
    version: int


def _mountinfo() -> list[tuple[str, Path, str, str]]:
    """(root, mount point, fstype, super options) of each mount."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 3:
            mounts.append((fields[3], Path(fields[4]), tail[0], tail[2]))
    return mounts


def _under(mount_point: Path, mount_root: str, own: str) -> Path | None:
    root = mount_root.rstrip("/")
    if root and not (own == root or own.startswith(root + "/")):
        return None
    return mount_point / own[len(root) :].lstrip("/")


def find_memory_hierarchy() -> MemoryHierarchy:
    """This process's memory cgroup directory; raises ``CgroupUnavailable``."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = _mountinfo()
    except OSError as exc:
        raise CgroupUnavailable(f"cannot read the process's cgroups: {exc}") from exc
    v1_path = v2_path = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            v1_path = path
        elif controllers == "":
            v2_path = path
    if v1_path is not None:
        for root, point, fstype, options in mounts:
            if fstype == "cgroup" and "memory" in options.split(","):
                found = _under(point, root, v1_path)
                if found is not None and found.is_dir():
                    return MemoryHierarchy(found, 1)
        raise CgroupUnavailable("the cgroup v1 memory hierarchy is not mounted")
    if v2_path is not None:
        for root, point, fstype, _ in mounts:
            if fstype == "cgroup2":
                found = _under(point, root, v2_path)
                if found is None or not found.is_dir():
                    continue
                try:
                    delegated = (found / "cgroup.subtree_control").read_text().split()
                except OSError:
                    delegated = []
                if "memory" not in delegated:
                    raise CgroupUnavailable(
                        f"cgroup v2: the memory controller is not delegated to {found}"
                    )
                return MemoryHierarchy(found, 2)
    raise CgroupUnavailable("no memory cgroup for this process")


def _counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True


class CgroupSandbox:
    """One instance's memory cgroup."""

    def __init__(self, path: Path, version: int, limits: Limits) -> None:
        self.path = path
        self.version = version
        self.limits = limits
        self.closed = False
        self._pid: int | None = None

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def configure(self) -> None:
        """Create the directory and write the memory limit (swap included where counted)."""
        self.path.mkdir()
        self._write_limits(self.limits, raising=False)  # from unlimited

    def set_limits(self, limits: Limits) -> None:
        raising = limits.memory_mb >= self.limits.memory_mb
        self.limits = limits
        self._write_limits(limits, raising)
        if self._pid is not None:
            limit_open_files(self._pid, limits.open_files)

    def _write_limits(self, limits: Limits, raising: bool) -> None:
        limit = str((limits.memory_mb + CGROUP_HEADROOM_MB) * _MIB)
        if self.version == 1:
            # memory.memsw.limit_in_bytes (present only with swap accounting; without it a
            # hog would just swap) may never be below memory.limit_in_bytes: raise it
            # first, lower it last.
            memsw = self.path / "memory.memsw.limit_in_bytes"
            names = ["memory.limit_in_bytes"] + (
                ["memory.memsw.limit_in_bytes"] if memsw.exists() else []
            )
            for name in reversed(names) if raising else names:
                self._write(name, limit)
        else:
            self._write("memory.max", limit)
            if (self.path / "memory.swap.max").exists():
                self._write("memory.swap.max", "0")

    def attach(self, pid: int) -> None:
        """Move ``pid`` into the cgroup and cap its open files."""
        self._write("cgroup.procs", str(pid))
        self._pid = pid
        limit_open_files(pid, self.limits.open_files)

    def oom_kills(self) -> int:
        """How many processes the OOM killer took in this cgroup."""
        if self.version == 1:
            return _counter(self.path / "memory.oom_control", "oom_kill")
        return _counter(self.path / "memory.events", "oom_kill")

    def out_of_memory(self) -> bool:
        """Whether the OOM killer acted here (or, on kernels without the counter, the
        limit was hit at all — the caller only asks after a SIGKILL)."""
        if self.oom_kills() > 0:
            return True
        if self.version == 1 and not _has_key(self.path / "memory.oom_control", "oom_kill"):
            return _counter_file(self.path / "memory.failcnt") > 0
        return False

    def close(self) -> None:
        """Kill what the instance left running in its cgroup (a custom runtime's server,
        a stray child), then remove the directory; one still busy is left for the
        factory's ``close``."""
        if self.closed:
            return
        self.closed = _rmdir(self.path)
        if not self.closed:
            self.kill_all()
            self.closed = _rmdir(self.path)

    def kill_all(self) -> None:
        """SIGKILL every process still in the cgroup."""
        try:
            pids = (self.path / "cgroup.procs").read_text().split()
        except OSError:
            return
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


def _has_key(path: Path, key: str) -> bool:
    try:
        return any(line.startswith(key + " ") for line in path.read_text().splitlines())
    except OSError:
        return False


def _counter_file(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


class CgroupSandboxFactory:
    """Makes one memory cgroup per instance under a directory of this server's own."""

    def __init__(self, hierarchy: MemoryHierarchy, directory: Path) -> None:
        self.hierarchy = hierarchy
        self.directory = directory
        self.name = f"cgroup-v{hierarchy.version}"
        self._sandboxes: list[CgroupSandbox] = []

    @classmethod
    def probe(cls) -> CgroupSandboxFactory:
        """A factory if cgroups can bound memory here; raises ``CgroupUnavailable`` saying why.

        Also removes the directories of earlier servers that died without cleaning up.
        """
        hierarchy = find_memory_hierarchy()
        _sweep_stale(hierarchy.path)
        directory = hierarchy.path / f"ember-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            directory.mkdir()
        except OSError as exc:
            raise CgroupUnavailable(
                f"cannot create a cgroup under {hierarchy.path}: {exc}"
            ) from exc
        factory = cls(hierarchy, directory)
        try:
            # A trial instance cgroup proves the limit files are writable, not only mkdir.
            factory.create("probe", Limits(memory_mb=64)).close()
        except OSError as exc:
            factory.close()
            raise CgroupUnavailable(f"cannot set a memory limit in {directory}: {exc}") from exc
        return factory

    def create(self, instance_id: str, limits: Limits) -> CgroupSandbox:
        """A configured cgroup for ``instance_id``; raises ``OSError`` when it cannot."""
        sandbox = CgroupSandbox(self.directory / instance_id, self.hierarchy.version, limits)
        sandbox.configure()
        self._sandboxes = [s for s in self._sandboxes if not s.closed]
        self._sandboxes.append(sandbox)
        return sandbox

    def close(self) -> None:
        """Remove every instance cgroup left and the server's directory (best effort)."""
        for sandbox in self._sandboxes:
            sandbox.close()
        self._sandboxes = [s for s in self._sandboxes if not s.closed]
        _rmdir(self.directory)


def _sweep_stale(parent: Path) -> None:
    """Remove ``ember-<pid>-*`` directories whose server process is gone."""
    try:
        entries = list(parent.glob("ember-*-*"))
    except OSError:
        return
    for entry in entries:
        try:
            pid = int(entry.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            continue
        try:
            for child in entry.iterdir():
                if child.is_dir():
                    _rmdir(child)
            _rmdir(entry)
        except OSError:
            pass
