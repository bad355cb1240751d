"""What a sandbox is: the limits put around one instance process, and who makes them.

The launcher asks a ``SandboxFactory`` for a ``Sandbox`` per instance, attaches the
instance's pid to it *before* sending the ``init`` message (so no user code ever runs
outside its limits), asks it after a death whether memory was the cause, and closes it
once the process is gone.

Implementations: ``process.py`` (resource limits on the process; memory by RLIMIT_AS) and
``cgroups.py`` (memory by a cgroup of its own, v1 or v2).

Headroom: ``memory_mb`` is what the function may use, but the interpreter and the runtime
need memory of their own before the first line of user code runs. Each implementation
adds a documented allowance on top of ``memory_mb`` rather than starving small functions:

- cgroups count resident pages the instance itself touches. A zygote-forked instance
  shares the zygote's pages (charged to the zygote), and starts by touching a few MiB;
  a fresh interpreter's boot is charged before it joins. ``CGROUP_HEADROOM_MB`` (32 MiB)
  covers the runtime's own buffers, log threads and the frames of a 6 MiB payload.
- RLIMIT_AS counts virtual address space, which a Python process has far more of than
  resident memory (shared libraries, thread stacks, allocator arenas). The limit is set to
  the address space the instance has already mapped when it is attached, plus
  ``memory_mb``: what the interpreter needed is free, every byte the function maps counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ember.sandbox.freezer import Freezer

CGROUP_HEADROOM_MB = 32
DEFAULT_OPEN_FILES = 1024
DEFAULT_PIDS = 512
# One whole core per this much memory when a function names no ``cpu`` (as AWS Lambda).
MEMORY_MB_PER_CPU = 1769


@dataclass(frozen=True)
class Limits:
    """The limits of one instance.

    Attributes:
        memory_mb: the function's configured memory; the sandbox adds its headroom.
        open_files: the RLIMIT_NOFILE of the instance (soft and hard).
        pids: the most processes and threads the instance may have at once (``pids.max``).
        cpu: CPU time per second of wall time (1.0: one core); ``None``: proportional to
            ``memory_mb`` (``MEMORY_MB_PER_CPU``).
    """

    memory_mb: int
    open_files: int = DEFAULT_OPEN_FILES
    pids: int = DEFAULT_PIDS
    cpu: float | None = None

    @property
    def cpu_share(self) -> float:
        """The CPU the instance may use, in cores: ``cpu`` or the memory-proportional one."""
        return self.cpu if self.cpu is not None else self.memory_mb / MEMORY_MB_PER_CPU

    def __post_init__(self) -> None:
        if self.memory_mb <= 0:
            raise ValueError(f"memory_mb must be positive, not {self.memory_mb}")
        if self.open_files <= 0:
            raise ValueError(f"open_files must be positive, not {self.open_files}")
        if self.pids <= 0:
            raise ValueError(f"pids must be positive, not {self.pids}")
        if self.cpu is not None and self.cpu <= 0:
            raise ValueError(f"cpu must be positive, not {self.cpu}")


class Sandbox(Protocol):
    """The limits around one instance process."""

    def attach(self, pid: int) -> None:
        """Put the process ``pid`` under the limits; raises ``OSError`` when it cannot."""
        ...

    def set_limits(self, limits: Limits) -> None:
        """Change the limits of the attached process (a spare taken for a function);
        raises ``OSError`` when it cannot."""
        ...

    def kill_all(self) -> int:
        """SIGKILL every process of the instance that this sandbox can name (its children
        included, where it knows them), with the CPU limit lifted so that they can die
        quickly; how many were signalled (0: none is left)."""
        ...

    def out_of_memory(self) -> bool:
        """Whether the limit was hit hard enough to kill the process (ask after its death)."""
        ...

    def memory_used(self) -> int | None:
        """The memory the instance uses now, in bytes, as this sandbox counts it; ``None``
        when unknown (not attached yet, or the count cannot be read)."""
        ...

    def freezer(self) -> Freezer | None:
        """What stops the instance's processes in idle mode, where this sandbox has it (a
        cgroup freezer); ``None``: the instance stops them by signal (``SignalFreezer``)."""
        ...

    def close(self) -> None:
        """Release what the sandbox holds; call once the process is gone. Idempotent."""
        ...


class SandboxFactory(Protocol):
    """Makes the sandbox of each new instance."""

    @property
    def name(self) -> str:
        """A short word for logs and diagnostics: ``"cgroup-v1"``, ``"rlimit"``…"""
        ...

    def create(self, instance_id: str, limits: Limits) -> Sandbox:
        """A sandbox for the instance ``instance_id``; raises ``OSError`` when it cannot."""
        ...

    def close(self) -> None:
        """Release what the factory holds, once every sandbox it made is closed."""
        ...
