"""Preloading a version's dependencies: which modules, and what a preloader holds.

A cold start of a handler whose dependencies import numpy spends almost all its time in
that import (~100 ms; pandas ~300 ms). With the bubblewrap sandbox as root, the launcher
starts for each function version with built dependencies a *preloader*
(``ember.runtime.preload``): a child of the version's zygote that confines itself as an
instance would — its own ``/tmp``, a user id of the version's, every capability dropped,
its own cgroup with the version's memory limit — and only then imports the top-level
modules of the installed distributions. Instances of the version are forked from it, the
imports done: they share its user id and ``/tmp``.

Which modules: those of the distributions installed in the version's dependency
directories (a ``pip install --target``: ``*.dist-info``), from each distribution's
``top_level.txt``, else the first components of its ``RECORD``. The function's own code
is never preloaded, nor private names (``_x``), packaging tools and test packages.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ember.runtime.protocol import PRELOAD

# Installed beside what a function needs without being what it imports.
_NEVER = frozenset({
    "pip", "setuptools", "pkg_resources", "wheel", "distutils", "easy_install", "test",
    "tests", "testing", "doc", "docs", "example", "examples", "benchmarks", "bin",
})
# Seconds a preloader may take to import everything, at most (and at most the
# function's initializer timeout): past it, it is killed and the version runs without.
PRELOAD_TIMEOUT_S = 30.0
# An idle preloader (no instance forked from it alive) is closed after this long.
PRELOAD_IDLE_S = 120.0


def preload_modules(directories: Iterable[Path]) -> tuple[str, ...]:
    """The top-level import names of the distributions installed in ``directories``,
    sorted; empty when none holds an installed distribution."""
    found: set[str] = set()
    for directory in directories:
        try:
            entries = [e for e in os.scandir(directory)
                       if e.name.endswith(".dist-info") and e.is_dir()]
        except OSError:
            continue
        for entry in entries:
            found.update(_top_level(Path(entry.path), Path(directory)))
    return tuple(sorted(name for name in found
                        if name.isidentifier() and not name.startswith("_")
                        and name not in _NEVER))


def _top_level(dist_info: Path, directory: Path) -> set[str]:
    with contextlib.suppress(OSError):
        named = {line.strip().split("/")[0]
                 for line in (dist_info / "top_level.txt").read_text().splitlines()}
        return {name for name in named if name}
    names: set[str] = set()
    with contextlib.suppress(OSError):
        for line in (dist_info / "RECORD").read_text().splitlines():
            first = line.split(",", 1)[0].split("/", 1)
            if len(first) == 2:  # a directory: a package (or namespace package)
                if (directory / first[0]).is_dir():
                    names.add(first[0])
            elif first[0].endswith(".py"):
                names.add(first[0][:-3])
            elif first[0].endswith(".so"):
                names.add(first[0].split(".", 1)[0])
    return names


@dataclass(frozen=True)
class PreloadPlan:
    """What a version's preloader imports, and under what (from its ``InstanceSpec``)."""

    modules: tuple[str, ...]
    path: tuple[str, ...]  # as the instances see it: code, then dependencies and layers
    env: Mapping[str, str]
    cwd: str
    memory_mb: int
    tmp_mb: int
    timeout_s: float

    def message(self) -> dict[str, Any]:
        """The ``preload`` frame."""
        return {"t": PRELOAD, "modules": list(self.modules), "path": list(self.path),
                "env": dict(self.env), "cwd": self.cwd}


@dataclass
class ZygoteInfo:
    """A version's zygote or preloader as the server sees it, for operators
    (``Launcher.zygotes``): ``kind`` is ``zygote`` or ``preloader``; ``pid`` as the server
    sees it; ``modules``, ``failed``, ``import_ms``, ``threads``: what a preloader imported
    (after ``import_ms``), what it could not import and why, its threads after importing
    (native ones included: a fork copies only the calling one)."""

    kind: str
    function: str
    version: str
    pid: int
    uid: int = 0
    modules: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)
    import_ms: float = 0.0
    threads: int = 1
    children: int = 0
    rss_bytes: int | None = None
    pss_bytes: int | None = None
    cgroup_bytes: int | None = None


def memory_of(pid: int) -> tuple[int | None, int | None]:
    """(RSS, PSS) of ``pid`` in bytes (``/proc/PID/smaps_rollup``); None when unknown.
    PSS divides each shared page among the processes sharing it: what the preloader
    costs once its instances share its imports."""
    rss = pss = None
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None, None
    for line in text.splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("Pss:"):
            pss = int(line.split()[1]) * 1024
    return rss, pss
