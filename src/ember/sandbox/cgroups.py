"""The memory, processes and CPU of each instance bounded by cgroups of its own (v1 or v2).

Layout: under the server's own cgroup of each controller (read from ``/proc/self/cgroup``
and ``/proc/self/mountinfo``), one directory per server, ``ember-<pid>-<token>``, holding
one directory per instance. On cgroup v1 each controller is a hierarchy of its own, so an
instance has one directory of the same name in each; on v2 they are one directory, with the
controllers enabled for its children in the server directory's ``cgroup.subtree_control``.
Nothing outside the server's own subtrees is touched, so this works wherever the server may
create child cgroups: as root on cgroup v1, or on cgroup v2 where the controllers are
already delegated to the server's cgroup (v2 forbids enabling one for children while the
server's own cgroup holds processes, so it is not forced).

Limits:

- memory (required: without it the probe raises ``CgroupUnavailable``): ``memory_mb`` plus
  ``CGROUP_HEADROOM_MB`` (see ``base.py``), swap included where the kernel accounts it.
  When the instance goes over, the kernel's OOM killer sends it SIGKILL inside its cgroup;
  the ``oom_kill`` counter (v1 ``memory.oom_control``, v2 ``memory.events``) tells the
  launcher that the death was out of memory.
- pids: ``pids.max`` = ``limits.pids``, processes and threads together; a fork or a thread
  start past it fails with EAGAIN, so a fork bomb stops there.
- cpu: a CFS quota of ``limits.cpu_share`` cores per ``CPU_PERIOD_US`` (v1
  ``cpu.cfs_quota_us``, v2 ``cpu.max``), at least the kernel's 1 ms, and no more than the
  server's own cgroups allow: v1 refuses a child quota above an ancestor's (v2 would apply
  the lower one anyway).

- freezer: no limit; stops every process of an idle instance (idle mode,
  ``ember.sandbox.freezer``): v1 ``freezer.state``, v2 ``cgroup.freeze`` (in every v2
  cgroup, nothing to delegate).

pids, cpu and freezer are optional: one that is not mounted, not delegated or not writable
is left out with one WARNING at probe time, and ``CgroupSandboxFactory.enforced`` says what
is (without a freezer, instances are frozen by SIGSTOP).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path

from ember.sandbox.base import CGROUP_HEADROOM_MB, Limits
from ember.sandbox.freezer import CgroupFreezer
from ember.sandbox.process import limit_open_files

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024
MEMORY, PIDS, CPU, FREEZER = "memory", "pids", "cpu", "freezer"
OPTIONAL_CONTROLLERS = (PIDS, CPU, FREEZER)
# The CFS period: an instance that spends its quota waits for the next period, so the
# period bounds the pause a throttled request sees. At the kernel's default 100 ms, an
# instance of 256 MB (0.145 cores) answering warm requests back to back stalled 25-40 ms
# ten times a second; at 20 ms the stall is at most 17 ms, the smallest share (0.05 cores)
# still gets the kernel's 1 ms minimum quota, and the average share is the same.
CPU_PERIOD_US = 20_000
MIN_CPU_QUOTA_US = 1_000  # the kernel refuses a shorter quota


class CgroupUnavailable(Exception):
    """Cgroups cannot bound memory here (or, for one probed controller, it); the message
    says why."""


@dataclass(frozen=True)
class Hierarchy:
    """A cgroup directory of one controller and the cgroup version it belongs to."""

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


def find_hierarchy(controller: str) -> Hierarchy:
    """This process's cgroup directory of ``controller`` (``"memory"``, ``"pids"``,
    ``"cpu"``, ``"freezer"``); raises ``CgroupUnavailable``."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = _mountinfo()
    except OSError as exc:
        raise CgroupUnavailable(f"cannot read the process's cgroups: {exc}") from exc
    v1_path = v2_path = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            v1_path = path
        elif controllers == "":
            v2_path = path
    if v1_path is not None:
        for root, point, fstype, options in mounts:
            if fstype == "cgroup" and controller in options.split(","):
                found = _under(point, root, v1_path)
                if found is not None and found.is_dir():
                    return Hierarchy(found, 1)
        raise CgroupUnavailable(f"the cgroup v1 {controller} hierarchy is not mounted")
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
                # v2's freezer is no controller: every cgroup but the root has one.
                if controller not in delegated and controller != FREEZER:
                    raise CgroupUnavailable(
                        f"cgroup v2: the {controller} controller is not delegated to {found}"
                    )
                return Hierarchy(found, 2)
    raise CgroupUnavailable(f"no {controller} cgroup for this process")


def cpu_ceiling(hierarchy: Hierarchy) -> float | None:
    """The fewest cores a quota of the cgroup ``hierarchy`` or of its ancestors allows
    (``None``: none has a quota), read up to the top of the mount."""
    ceiling: float | None = None
    path = hierarchy.path
    while True:
        cores = _cpu_quota_cores(path, hierarchy.version)
        if cores is not None:
            ceiling = cores if ceiling is None else min(ceiling, cores)
        parent = path.parent
        name = "cpu.cfs_quota_us" if hierarchy.version == 1 else "cgroup.procs"
        if parent == path or not (parent / name).exists():
            return ceiling
        path = parent


def _cpu_quota_cores(path: Path, version: int) -> float | None:
    try:
        if version == 1:
            quota = (path / "cpu.cfs_quota_us").read_text().strip()
            period = (path / "cpu.cfs_period_us").read_text().strip()
        else:
            quota, _, period = (path / "cpu.max").read_text().strip().partition(" ")
        if quota in ("-1", "max"):
            return None
        return int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def cpu_quota_us(limits: Limits, ceiling: float | None = None) -> int:
    """The CFS quota per ``CPU_PERIOD_US`` for ``limits.cpu_share`` cores, at most ``ceiling``."""
    share = limits.cpu_share if ceiling is None else min(limits.cpu_share, ceiling)
    return max(MIN_CPU_QUOTA_US, int(share * CPU_PERIOD_US))


def _write_limit(
    controller: str, place: Hierarchy, limits: Limits, *, raising: bool,
    ceiling: float | None,
) -> None:
    """Write the limit of ``controller`` into the instance directory ``place``."""
    path = place.path
    if controller == MEMORY:
        limit = str((limits.memory_mb + CGROUP_HEADROOM_MB) * _MIB)
        if place.version == 1:
            # memory.memsw.limit_in_bytes (present only with swap accounting; without it a
            # hog would just swap) may never be below memory.limit_in_bytes: raise it
            # first, lower it last.
            memsw = path / "memory.memsw.limit_in_bytes"
            names = ["memory.limit_in_bytes"] + (
                ["memory.memsw.limit_in_bytes"] if memsw.exists() else []
            )
            for name in reversed(names) if raising else names:
                (path / name).write_text(limit)
        else:
            (path / "memory.max").write_text(limit)
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")
    elif controller == PIDS:
        # Below pids.current is accepted: only new processes and threads are refused.
        (path / "pids.max").write_text(str(limits.pids))
    elif controller == CPU:
        quota = cpu_quota_us(limits, ceiling)
        if place.version == 1:
            (path / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (path / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
    else:
        raise ValueError(f"no limit for the {controller} controller")


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
    """One instance's cgroups: memory, plus pids, cpu and freezer where the factory has
    them.

    ``path`` and ``version`` are those of the memory cgroup; ``places`` holds the directory
    of each controller (on v2 all the same one).
    """

    def __init__(
        self, places: dict[str, Hierarchy], limits: Limits, cpu_ceiling: float | None = None
    ) -> None:
        self.places = places
        self.path = places[MEMORY].path
        self.version = places[MEMORY].version
        self.limits = limits
        self.closed = False
        self._pid: int | None = None
        self._cpu_lifted = False
        self._cpu_ceiling = cpu_ceiling
        self._directories = list(dict.fromkeys(place.path for place in places.values()))
        self._made: list[Path] = []  # created and not yet removed

    def configure(self) -> None:
        """Create the directories and write the limits; raises ``OSError`` having removed
        what it created."""
        try:
            for directory in self._directories:
                directory.mkdir()
                self._made.append(directory)
            self._write_limits(self.limits, raising=False)  # from unlimited
        except OSError:
            self.close()
            raise

    def set_limits(self, limits: Limits) -> None:
        raising = limits.memory_mb >= self.limits.memory_mb
        files_changed = limits.open_files != self.limits.open_files
        self.limits = limits
        self._write_limits(limits, raising)
        # Only when they change: an instance that took a user of its own (the bubblewrap
        # sandbox) no longer lets the server set its rlimits.
        if self._pid is not None and files_changed:
            limit_open_files(self._pid, limits.open_files)

    def _write_limits(self, limits: Limits, raising: bool) -> None:
        for controller, place in self.places.items():
            if controller != FREEZER:  # no limit: only idle mode writes its state
                _write_limit(controller, place, limits, raising=raising,
                             ceiling=self._cpu_ceiling)

    def freezer(self) -> CgroupFreezer | None:
        """The freezer of the instance's cgroup, where the factory has one."""
        place = self.places.get(FREEZER)
        return None if place is None else CgroupFreezer(place.path, place.version)

    def attach(self, pid: int) -> None:
        """Move ``pid`` into the cgroups (memory first) and cap its open files."""
        for directory in self._directories:
            (directory / "cgroup.procs").write_text(str(pid))
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

    def memory_used(self) -> int | None:
        """The memory charged to the instance's memory cgroup (v1 ``memory.usage_in_bytes``,
        v2 ``memory.current``)."""
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        try:
            return int((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        """Kill what the instance left running in its cgroups (a custom runtime's server,
        a stray child), then remove the directories; one still busy is left for the next
        call or the factory's ``close``."""
        if self.closed:
            return
        self._remove()
        if self._made:
            self.kill_all()
            self._remove()
        self.closed = not self._made

    def _remove(self) -> None:
        self._made = [directory for directory in self._made if not _rmdir(directory)]

    def kill_all(self) -> int:
        """SIGKILL every process still in the cgroups, the CPU quota lifted first (a
        process with SIGKILL pending still needs CPU time to exit) and the freezer thawed
        after (a frozen one does not exit on cgroup v1); how many."""
        place = self.places.get(CPU)
        if place is not None and not self._cpu_lifted:
            with contextlib.suppress(OSError):
                if place.version == 1:
                    (place.path / "cpu.cfs_quota_us").write_text("-1")
                else:
                    (place.path / "cpu.max").write_text(f"max {CPU_PERIOD_US}")
                self._cpu_lifted = True
        pids: set[str] = set()
        for directory in self._directories:
            with contextlib.suppress(OSError):
                pids.update((directory / "cgroup.procs").read_text().split())
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        freezer = self.freezer()
        if pids and freezer is not None:
            with contextlib.suppress(OSError):
                freezer.thaw()
        return len(pids)


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
    """Makes the cgroups of each instance under directories of this server's own.

    ``directories`` holds this server's directory of each controller in use, memory first;
    ``directory`` is the memory one.
    """

    def __init__(self, memory: Hierarchy) -> None:
        self.directories: dict[str, Hierarchy] = {MEMORY: memory}
        self.directory = memory.path
        self.name = f"cgroup-v{memory.version}"
        self.cpu_ceiling: float | None = None
        self._sandboxes: list[CgroupSandbox] = []

    @property
    def enforced(self) -> str:
        """What the cgroups bound, for logs: ``"memory, pids, cpu"``."""
        return ", ".join(self.directories)

    @classmethod
    def probe(cls) -> CgroupSandboxFactory:
        """A factory if cgroups can bound memory here; raises ``CgroupUnavailable`` saying
        why. pids, cpu and freezer are added where they work too; one WARNING names those
        that cannot.

        Also removes the directories of earlier servers that died without cleaning up.
        """
        hierarchy = find_hierarchy(MEMORY)
        _sweep_stale(hierarchy.path)
        directory = hierarchy.path / f"ember-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            directory.mkdir()
            if hierarchy.version == 2:
                (directory / "cgroup.subtree_control").write_text(f"+{MEMORY}")
        except OSError as exc:
            _rmdir(directory)
            raise CgroupUnavailable(
                f"cannot create a cgroup under {hierarchy.path}: {exc}"
            ) from exc
        factory = cls(Hierarchy(directory, hierarchy.version))
        try:
            # A trial instance cgroup proves the limit files are writable, not only mkdir.
            factory.create("probe", Limits(memory_mb=64)).close()
        except OSError as exc:
            factory.close()
            raise CgroupUnavailable(f"cannot set a memory limit in {directory}: {exc}") from exc
        missing = []
        for controller in OPTIONAL_CONTROLLERS:
            try:
                factory._add(controller, find_hierarchy(controller))
            except (CgroupUnavailable, OSError) as exc:
                missing.append((controller, str(exc)))
        if missing:
            logger.warning(
                "cgroups do not bound %s here (%s): instances are bounded in %s only",
                ", ".join(controller for controller, _ in missing),
                "; ".join(f"{controller}: {reason}" for controller, reason in missing),
                factory.enforced,
            )
        return factory

    def _add(self, controller: str, hierarchy: Hierarchy) -> None:
        """Use ``controller`` too, from this server's directory in ``hierarchy`` (the memory
        one on v2), once a trial instance directory proves its limit writable."""
        directory = hierarchy.path / self.directory.name
        made = False
        try:
            if directory not in {place.path for place in self.directories.values()}:
                _sweep_stale(hierarchy.path)
                directory.mkdir()
                made = True
            if hierarchy.version == 2 and controller != FREEZER:
                (directory / "cgroup.subtree_control").write_text(f"+{controller}")
            ceiling = cpu_ceiling(hierarchy) if controller == CPU else None
            trial = Hierarchy(directory / f"probe-{controller}", hierarchy.version)
            trial.path.mkdir()
            try:
                if controller == FREEZER:  # no limit: its state must be writable
                    CgroupFreezer(trial.path, trial.version).thaw()
                else:
                    _write_limit(controller, trial, Limits(memory_mb=64), raising=False,
                                 ceiling=ceiling)
            finally:
                _rmdir(trial.path)
        except OSError:
            if made:
                _rmdir(directory)
            raise
        self.directories[controller] = Hierarchy(directory, hierarchy.version)
        if controller == CPU:
            self.cpu_ceiling = ceiling

    def create(self, instance_id: str, limits: Limits) -> CgroupSandbox:
        """The configured cgroups of ``instance_id``; raises ``OSError`` when it cannot."""
        places = {
            controller: Hierarchy(directory.path / instance_id, directory.version)
            for controller, directory in self.directories.items()
        }
        sandbox = CgroupSandbox(places, limits, self.cpu_ceiling)
        sandbox.configure()
        self._sandboxes = [s for s in self._sandboxes if not s.closed]
        self._sandboxes.append(sandbox)
        return sandbox

    def close(self) -> None:
        """Remove every instance cgroup left and the server's directories (best effort)."""
        for sandbox in self._sandboxes:
            sandbox.close()
        self._sandboxes = [s for s in self._sandboxes if not s.closed]
        for directory in dict.fromkeys(place.path for place in self.directories.values()):
            _rmdir(directory)


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
